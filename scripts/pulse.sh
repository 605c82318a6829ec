#!/usr/bin/env bash
# Deterministic PulseAudio server for the live-audio tests (no default.pa, no autospawn, no real card).
#
#   scripts/pulse.sh start [DIR]   start (or reuse) the server in DIR, print the client env as `export` lines
#   scripts/pulse.sh env   [DIR]   print the client env only
#   scripts/pulse.sh stop  [DIR]   stop it and remove DIR's runtime files
#
# Topology (all 48 kHz), so a test can record the engine's input and output on ONE clock:
#   meter   stereo null sink; its monitor is what the test records
#   vc_in   mono remap sink -> meter front-left.  The test plays into it; the engine captures vc_in.monitor
#   vc_out  mono remap sink -> meter front-right. The engine plays into it (the "virtual cable")
#   vc_mon  mono null sink, the engine's optional monitor output
# ALSA names for PortAudio (Debian's PortAudio only has the ALSA host API and reaches PulseAudio through
# the ALSA `pulse` plugin): pcm.vc_in (capture), pcm.vc_out, pcm.vc_mon (playback), pcm.meter (capture),
# defined in DIR/asound.conf, which ALSA_CONFIG_PATH points at (it includes the system alsa.conf first).
# Real-time scheduling: a desktop's sound server runs its I/O threads SCHED_FIFO (through rtkit); this one
# runs under `chrt -f $rt_priority` where the machine allows it (root / CAP_SYS_NICE), and so do its
# keepers. Without it, on a loaded 2-core VM, the server and the test's recorder were starved for tens of ms:
# output underflows every few seconds and samples missing from the meter recording.
set -euo pipefail

cmd="${1:-}"
dir="${2:-${COMO_PULSE_DIR:-/tmp/como-pulse}}"
rate=48000
rt_priority=10
rt=""
if chrt -f "$rt_priority" true 2>/dev/null; then rt="chrt -f $rt_priority"; fi

client_env() {
    echo "export PULSE_SERVER=unix:$dir/run/pulse/native"
    echo "export PULSE_CLIENTCONFIG=$dir/client.conf"
    echo "export ALSA_CONFIG_PATH=$dir/asound.conf"
    echo "export COMO_PULSE_DIR=$dir"
    echo "export COMO_PULSE_RT=\"$rt\""
}

write_configs() {
    mkdir -p "$dir/run" "$dir/config" "$dir/state"
    chmod 700 "$dir/run"
    # Clients must never autospawn a desktop-style daemon behind the test's back.
    printf 'autospawn = no\n' > "$dir/client.conf"
    cat > "$dir/asound.conf" <<EOF
</usr/share/alsa/alsa.conf>
pcm.vc_in { type pulse; device "vc_in.monitor"; hint { show on; description "vc_in (test virtual mic)" } }
pcm.vc_out { type pulse; device "vc_out"; hint { show on; description "vc_out (test virtual cable)" } }
pcm.vc_mon { type pulse; device "vc_mon"; hint { show on; description "vc_mon (test monitor)" } }
pcm.meter { type pulse; device "meter.monitor"; hint { show on; description "meter (test recorder)" } }
EOF
}

running() {
    PULSE_SERVER="unix:$dir/run/pulse/native" PULSE_CLIENTCONFIG="$dir/client.conf" \
        timeout 5 pactl info >/dev/null 2>&1
}

start() {
    command -v pulseaudio >/dev/null || { echo "pulse.sh: pulseaudio is not installed (apt-get install pulseaudio pulseaudio-utils)" >&2; exit 2; }
    command -v pactl >/dev/null || { echo "pulse.sh: pactl is not installed (apt-get install pulseaudio-utils)" >&2; exit 2; }
    write_configs
    if ! running; then
        # (PulseAudio drops its capabilities, then makes its I/O threads real-time itself only
        # within RLIMIT_RTPRIO, 0 by default outside a desktop session.)
        ulimit -r 20 2>/dev/null || true
        # -n: no default.pa; everything we need is loaded explicitly, so the set of devices is fixed.
        XDG_RUNTIME_DIR="$dir/run" XDG_CONFIG_HOME="$dir/config" XDG_STATE_HOME="$dir/state" HOME="$dir" \
        PULSE_CLIENTCONFIG="$dir/client.conf" \
        $rt pulseaudio --daemonize=yes -n --use-pid-file=yes --exit-idle-time=-1 --disallow-exit \
            --log-target=file:"$dir/pulse.log" --log-level=notice \
            -L "module-native-protocol-unix auth-anonymous=1" \
            -L "module-null-sink sink_name=meter format=float32le rate=$rate channels=2 channel_map=front-left,front-right sink_properties=device.description=meter" \
            -L "module-remap-sink sink_name=vc_in master=meter format=float32le rate=$rate channels=1 channel_map=mono master_channel_map=front-left remix=no sink_properties=device.description=vc_in" \
            -L "module-remap-sink sink_name=vc_out master=meter format=float32le rate=$rate channels=1 channel_map=mono master_channel_map=front-right remix=no sink_properties=device.description=vc_out" \
            -L "module-null-sink sink_name=vc_mon format=float32le rate=$rate channels=1 sink_properties=device.description=vc_mon"
        for _ in $(seq 1 100); do running && break; sleep 0.05; done
        running || { echo "pulse.sh: the server did not come up; see $dir/pulse.log" >&2; exit 1; }
        # Keepers: a null sink with no low-latency client renders ~2 s ahead, and a stream on it (or
        # on a remap sink over it) then starves until that drains (measured: a PortAudio stream on
        # vc_out got 3 callbacks, then none for ~2 s). One 10 ms recorder per null sink, for the
        # server's whole life, keeps them at 10 ms from the start.
        : > "$dir/keepers.pid"
        for src in meter.monitor vc_mon.monitor; do
            PULSE_SERVER="unix:$dir/run/pulse/native" PULSE_CLIENTCONFIG="$dir/client.conf" \
                nohup $rt parecord --device=$src --rate=$rate --format=float32le --raw --latency-msec=10 /dev/null \
                >/dev/null 2>&1 &
            echo $! >> "$dir/keepers.pid"
        done
        for _ in $(seq 1 100); do
            lat=$(PULSE_SERVER="unix:$dir/run/pulse/native" PULSE_CLIENTCONFIG="$dir/client.conf" pactl list sinks \
                  | sed -n 's/^[[:space:]]*Latency: \([0-9]*\) usec.*/\1/p' | sort -n | tail -1)
            [ -n "$lat" ] && [ "$lat" -lt 50000 ] && break
            sleep 0.05
        done
    fi
    client_env
}

stop() {
    if [ -f "$dir/keepers.pid" ]; then
        while read -r pid; do kill "$pid" 2>/dev/null || true; done < "$dir/keepers.pid"
        rm -f "$dir/keepers.pid"
    fi
    if [ -d "$dir/run" ]; then
        XDG_RUNTIME_DIR="$dir/run" XDG_CONFIG_HOME="$dir/config" HOME="$dir" pulseaudio --kill 2>/dev/null || true
        for _ in $(seq 1 50); do running || break; sleep 0.05; done
    fi
    rm -rf "$dir/run"
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    env) client_env ;;
    *) echo "usage: $0 start|stop|env [DIR]" >&2; exit 2 ;;
esac
