#!/usr/bin/env bash
# The real applications tests/test_apps.py runs behind Apache (idempotent; run as root for apt):
# Debian's cockpit-ws and chromium, npm's node-red and socket.io (its browser client) in the apachews cache.
# PyPI's python-socketio, uvicorn and streamlit come with the test extra; Home Assistant (heavy) only with
# `--homeassistant`, in a venv of its own. A test whose application is missing skips and says which.
set -euo pipefail
apps="${APACHEWS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/apachews}/apps"
need=()
for pkg in cockpit-ws chromium; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
# node and npm: Debian's nodejs + npm, or a nodejs package that ships npm itself (NodeSource's).
command -v npm >/dev/null || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The packaged cockpit.socket must not hold port 9090: the tests start their own cockpit-ws.
if command -v systemctl >/dev/null && systemctl is-enabled cockpit.socket >/dev/null 2>&1; then
    systemctl disable --now cockpit.socket || true
fi
for pkg in node-red socket.io@4; do
    name="${pkg%@*}"
    if [ ! -d "$apps/$name/node_modules/$name" ]; then
        mkdir -p "$apps/$name"
        (cd "$apps/$name" && npm install --no-audit --no-fund --silent "$pkg")
    fi
done
if [ "${1:-}" = "--homeassistant" ] && [ ! -x "$apps/homeassistant/venv/bin/hass" ]; then
    python3 -m venv "$apps/homeassistant/venv"
    # josepy 2 dropped what the acme of Home Assistant 2024.3 (the last for Python 3.11) imports.
    "$apps/homeassistant/venv/bin/pip" install -q homeassistant "josepy<2"
fi
