#!/usr/bin/env bash
# Start a Docker engine if none answers (no bridge, no iptables: builds run with networking off).
set -euo pipefail
if docker info >/dev/null 2>&1; then exit 0; fi
if ! command -v dockerd >/dev/null; then echo "dockerd is not installed (apt-get install docker.io)" >&2; exit 1; fi
log=${DOCKERD_LOG:-/var/log/apachews-dockerd.log}
nohup dockerd --bridge=none --iptables=false >"$log" 2>&1 &
for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && exit 0
    sleep 1
done
echo "dockerd did not come up; see $log" >&2
exit 1
