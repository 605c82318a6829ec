#!/usr/bin/env bash
# Set up CoMo Live in ./.venv on Debian/Ubuntu with Python 3.11.
#   scripts/setup.sh runtime   the app and engine only (no torch: the runtime runs ONNX files)
#   scripts/setup.sh dev       + export/training (torch CPU wheel, onnx, librosa, torchfcpe) + test tools
# Safe to run again: it only installs what is missing.
set -euo pipefail
mode=${1:-runtime}
cd "$(dirname "$0")/.."

apt_packages=(
  libportaudio2                      # sounddevice does not bundle PortAudio on Linux
  pulseaudio pulseaudio-utils libasound2-plugins   # virtual cable (null sinks) and pactl
  libegl1 libgl1 libfontconfig1 libdbus-1-3 libxkbcommon-x11-0 fonts-dejavu-core
  libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-shape0
  libxcb-xinerama0 libxcb-xkb1       # Qt's xcb platform plugin
)
[ "$mode" = dev ] && apt_packages+=(xvfb)   # tests render the window on a virtual screen
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "Installing system packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python=${PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3.11 python3; do
    command -v "$candidate" >/dev/null && { python=$candidate; break; }
  done
fi
[ -d .venv ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
quiet_pip() {  # pip on some mirrors warns once per package about an unused local index: keep real errors
  "${pip[@]}" "$@" 2> >(grep -v "^WARNING: Location '" >&2)
}

stamp=".venv/.setup-$mode-$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  if [ "$mode" = dev ]; then
    # Pin the CPU wheel: an unpinned torch pulls a multi-GB CUDA build (users with a GPU may do that).
    quiet_pip torch==2.13.0
    quiet_pip -e '.[train,dev]'
    # torchfcpe asks for torchaudio, whose compiled part does not load with torch 2.13; FCPE itself
    # needs only einops + local-attention (in the export extra). models/_torchaudio_shim.py covers
    # the one import it makes.
    quiet_pip --no-deps torchfcpe==0.0.4
  else
    quiet_pip -e .
  fi
  touch "$stamp"
fi
