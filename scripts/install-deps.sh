#!/usr/bin/env bash
# Installs the system C libraries the package links against, and the tools its tests drive (Debian/Ubuntu):
# FAISS for the approximate gallery index, headless Chromium for the demo page's browser tests, wrk for the load test,
# mdb_dump (lmdb-utils) and strace for scripts/torture.sh (reading LMDB folders back; killing a command at a rename),
# iproute2 and iptables for scripts/two-hosts.sh (network namespaces; a slow, lossy link where tc netem is missing).
# usage: scripts/install-deps.sh
set -euo pipefail
packages=(libopenblas-dev liblmdb-dev lmdb-utils libturbojpeg0-dev libjpeg62-turbo-dev libpng-dev libwebp-dev pkg-config
          libopenmpi-dev openmpi-bin libfaiss-dev g++ chromium fonts-noto-cjk wrk strace iproute2 iptables)
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-deps: this script knows apt (Debian/Ubuntu) only." >&2
  echo "Install these libraries with your system's package manager: OpenBLAS, LMDB, libjpeg-turbo (TurboJPEG API), libpng, libwebp, Open MPI, FAISS; and Chromium, a CJK font and wrk for the tests." >&2
  exit 1
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "install-deps: installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
