#!/usr/bin/env bash
# Set up (first run only) and launch CoMo Live with its built-in voice. No download, no checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh runtime
exec .venv/bin/python -m app "$@"
