#!/usr/bin/env bash
# Debian/Ubuntu packages rsatalker needs: a C++ toolchain and cmake to build msg/,
# PortAudio for the microphone node, real human speech recordings for the demo, and
# espeak-ng voices for the synthetic training corpus.
# Installs only what is missing (so a second run is instant), with sudo when not root.
set -euo pipefail
PKGS=(cmake g++ make python3-dev libportaudio2 libsndfile1 codec2-examples espeak-ng)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
