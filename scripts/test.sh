#!/usr/bin/env bash
# Set up (first run only) and run the whole test suite, with a private PulseAudio server whose null
# sinks are the test's microphone, virtual cable and meter.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
export QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-offscreen}
started_pulse=0
if pulse_env=$(bash scripts/pulse.sh start); then
  eval "$pulse_env"
  started_pulse=1
else
  echo "PulseAudio did not start: the live-audio tests will be skipped (they say why)"
fi
status=0
.venv/bin/python -m pytest "$@" || status=$?
[ "$started_pulse" = 1 ] && bash scripts/pulse.sh stop || true
exit $status
