#!/usr/bin/env bash
# Set up (first run only) and run the whole test suite, with a private PulseAudio server whose null
# sinks are the test's microphone, virtual cable and meter.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
export QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-offscreen}
started_pulse=0
if [ -f scripts/pulse.sh ]; then
  # shellcheck disable=SC1091
  if source scripts/pulse.sh start; then started_pulse=1; else echo "PulseAudio did not start: audio tests will be skipped"; fi
fi
status=0
.venv/bin/python -m pytest "$@" || status=$?
[ "$started_pulse" = 1 ] && bash scripts/pulse.sh stop || true
exit $status
