#!/usr/bin/env bash
# Install what apachews' tests and main job need on a Debian/Ubuntu host (idempotent; run as root).
set -euo pipefail
need=()
# libpcre3: httpd 2.2 and early 2.4 built by `apachews build --with-httpd` link it; `verify --dist` runs them here.
# chromium, libgtk-3-bin (broadwayd), gtk-3-examples (gtk3-demo): tests/test_broadway.py kills a real browser.
# openssh-client: `--host` and its tests (ssh, ssh-keygen). No openssh-server here: the tests' sshd runs in the
# Debian 11 target image, and a host sshd would listen on the network.
for pkg in apache2 apache2-dev docker.io debootstrap libpcre3 curl ca-certificates patch openssl rpm openssh-client \
    chromium libgtk-3-bin gtk-3-examples; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The packaged apache2 service must not hold port 80 or run during tests; apachews starts its own httpd.
if command -v apache2ctl >/dev/null && pgrep -x apache2 >/dev/null; then apache2ctl stop || true; fi
