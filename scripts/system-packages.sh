#!/bin/sh
# What the tests need beyond Python: packages from Debian's archive, then one npm tool; installs only
# what is missing.
#   chromium, chromium-driver: the report page is checked in headless Chromium (tests/test_report.py)
#   nodejs, npm: run @playcanvas/splat-transform, a splat reader nobody here wrote
#   docker.io, debootstrap: a Docker daemon and a Debian root to build the worker image on, for
#     tests/test_docker_worker.py (docker/cpu-base.sh)
#   tools/splat-reader/node_modules: that reader at the version its package-lock.json pins; it reads
#     our .ply and .splat files in tests/test_splat_external.py (npm ci again when the lock is newer)
set -eu
cd "$(dirname "$0")/.."
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
missing=""
[ -x /usr/bin/chromium ] || missing="$missing chromium"
[ -x /usr/bin/chromedriver ] || missing="$missing chromium-driver"
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
[ -x /usr/sbin/dockerd ] || missing="$missing docker.io"
[ -x /usr/sbin/debootstrap ] || missing="$missing debootstrap"
if [ -n "$missing" ]; then
  echo "system-packages: installing$missing"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  # shellcheck disable=SC2086 # the list is meant to split
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
reader=tools/splat-reader
stamp="$reader/node_modules/.package-lock.json" # npm writes it when an install completes
if [ ! -f "$stamp" ] || [ "$reader/package-lock.json" -nt "$stamp" ]; then
  echo "system-packages: npm ci in $reader"
  npm ci --prefix "$reader" --no-audit --no-fund
fi
