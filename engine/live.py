"""The live voice-changer CLI (the object it drives is `engine.session.LiveSession`).

    python -m engine.live --input "USB Mic" --output "CABLE Input" --voice builtin:dsp
    python -m engine.live --list-devices
    python -m engine.live --create-virtual-mic          # Linux: CoMo Live Cable + CoMo Live Mic
    python -m engine.live --input 3 --output pulse:como_live_sink --monitor 5 --voice ~/voices/alto --key 5

Prints one status line a second (latency, compute p50/p99 against the block budget, underruns =
late blocks, xruns = what the driver flagged, levels; a latency step with its cause). When a device
goes away the line says "waiting for <device>" and audio resumes by itself when it is back.
Ctrl-C stops cleanly ("[stopped] Stopped.", no traceback). Exit status: 0 after a clean stop
(Ctrl-C included), 1 when the session failed, 2 for bad arguments (a voice that cannot be opened included).
"""
from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
from typing import Iterator, Sequence

from engine import voices
from engine.audio import devices, virtual_cable
from engine.audio.pulse import PulseError
from engine.session import LiveSession, LiveStats, SessionConfig, SessionError
from engine.settings import AUTO_BUDGET, LATE_FILL_CHOICES, Settings, parse_budget
from engine.voices import VOICE_HELP, describe


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.live", description="CoMo Live: real-time voice conversion.")
    dev = p.add_argument_group("devices (index, name, or pulse:NAME on Linux; default: the system default)")
    dev.add_argument("--input", help="microphone")
    dev.add_argument("--output", help="main output, usually a virtual cable")
    dev.add_argument("--monitor", help="optional second output to hear yourself (its own gain)")
    dev.add_argument("--input-channel", type=int, default=1, help="which input channel, from 1 (default 1)")
    dev.add_argument("--sample-rate", type=int, help="device rate (default: the devices' own)")
    dev.add_argument("--exclusive", action="store_true", help="WASAPI exclusive mode (Windows)")
    voice = p.add_argument_group("voice")
    voice.add_argument("--voice", default=voices.DEFAULT_VOICE, help=VOICE_HELP)
    voice.add_argument("--key", type=float, default=0.0, help="pitch shift in semitones")
    voice.add_argument("--speaker", type=int, default=0, help="speaker id inside the voice")
    timing = p.add_argument_group("timing")
    timing.add_argument("--block-ms", type=float, default=Settings.block_ms)
    timing.add_argument("--lookahead-ms", type=float, default=Settings.lookahead_ms)
    timing.add_argument("--crossfade-ms", type=float, default=Settings.crossfade_ms)
    timing.add_argument("--compute-budget-ms", type=_budget_arg, default=AUTO_BUDGET, metavar="auto|N",
                        help="how late a block may be and still play on time: auto (default: measured, "
                             "raised when blocks come late) or a fixed number of ms")
    timing.add_argument("--late-fill", choices=LATE_FILL_CHOICES, default="silence",
                        help="what plays when a block is late")
    levels = p.add_argument_group("levels")
    levels.add_argument("--gate-db", type=float, default=Settings.gate_db)
    levels.add_argument("--monitor-gain-db", type=float, default=0.0)
    other = p.add_argument_group("other")
    other.add_argument("--record", metavar="DIR", help="write input and output WAVs into DIR")
    other.add_argument("--seconds", type=float, help="stop after N seconds (default: until Ctrl-C)")
    other.add_argument("--list-devices", action="store_true", help="list devices and virtual cables, then exit")
    other.add_argument("--create-virtual-mic", action="store_true", help="Linux: create the CoMo Live Mic, then exit")
    other.add_argument("--remove-virtual-mic", action="store_true", help="Linux: remove it, then exit")
    return p


def _budget_arg(text: str) -> float:
    try:
        return parse_budget(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def status_line(st: LiveStats) -> str:
    """One line of readouts."""
    xruns = f"xruns {st.xruns.describe()}"
    if st.state == "waiting":
        return f"waiting for {st.waiting_for} | {xruns} | reconnects {st.reconnects}"
    lat = f"{st.latency.total_ms:.0f} ms" if st.latency is not None else "?"
    p50 = "-" if st.compute_p50_ms is None else f"{st.compute_p50_ms:.1f}"
    p99 = "-" if st.compute_p99_ms is None else f"{st.compute_p99_ms:.1f}"
    budget = "" if st.block_budget_ms is None else \
        f" / budget {st.block_budget_ms:.1f}{' auto' if st.budget_auto else ''}"
    step = f" | {st.latency_steps[-1]}" if st.latency_steps else ""
    early = f" (+{st.ran_ahead} early output callbacks after driver xruns)" if st.ran_ahead else ""
    return (f"latency {lat} | compute p50 {p50} p99 {p99} ms{budget} | underruns {st.underruns}{early} | {xruns} | "
            f"in {st.input_level_db:6.1f} dB  out {st.output_level_db:6.1f} dB{step}")


def list_everything() -> str:
    lines = [devices.format_devices(devices.host_apis())]
    found = devices.list_devices(include_pulse=True)
    pulse = [d for d in found if d.pulse_target]
    if pulse:
        lines.append("PulseAudio/PipeWire (use as pulse:NAME):")
        lines += [f"  {'out' if d.max_output_channels else 'in '} {d.name}" for d in pulse]
    cables = virtual_cable.find_virtual_devices(found)
    if cables:
        lines.append("Virtual cables: " + ", ".join(d.name for d in cables))
        best = virtual_cable.suggest_output(cables)
        if best is not None:
            lines.append(f"Suggested output: {best.name}")
    else:
        lines.append("No virtual cable found (Windows: VB-Audio Virtual Cable, macOS: BlackHole, "
                     "Linux: python -m engine.live --create-virtual-mic).")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.list_devices:
            print(list_everything())
            return 0
        if args.create_virtual_mic:
            print(virtual_cable.create_virtual_mic())
            return 0
        if args.remove_virtual_mic:
            print(virtual_cable.remove_virtual_mic())
            return 0
        settings = Settings(block_ms=args.block_ms, lookahead_ms=args.lookahead_ms, crossfade_ms=args.crossfade_ms,
                            pitch=args.key, speaker=args.speaker, gate_db=args.gate_db,
                            monitor_gain_db=args.monitor_gain_db, late_fill=args.late_fill)
        describe(args.voice)   # a voice that cannot open is bad input (VoicePackError), not a failed session
    except (ValueError, PulseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cfg = SessionConfig(input_device=args.input, output_device=args.output, monitor_device=args.monitor,
                        sample_rate=args.sample_rate, input_channel=args.input_channel - 1, voice=args.voice,
                        settings=settings, record_dir=args.record, compute_budget_ms=args.compute_budget_ms,
                        exclusive=args.exclusive)
    return run(cfg, args.seconds)


@contextlib.contextmanager
def ctrl_c_sets(event: threading.Event) -> Iterator[None]:
    """While inside: Ctrl-C (SIGINT) sets `event` instead of raising KeyboardInterrupt wherever
    the main thread happens to be (half-way through a stop, a print, a PortAudio call)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: event.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run(cfg: SessionConfig, seconds: float | None, session: LiveSession | None = None) -> int:
    """Start, print a status line a second until Ctrl-C / `seconds` / an error, stop."""
    session = session or LiveSession()
    failed, stop = threading.Event(), threading.Event()

    def on_state(state: str, message: str) -> None:
        if state == "error":
            failed.set()
            stop.set()
        if message:
            print(f"[{state}] {message}", file=sys.stderr, flush=True)

    session.on_state = on_state
    tty = sys.stdout.isatty()
    with ctrl_c_sets(stop):
        try:
            session.start(cfg)       # (Ctrl-C while the voice loads: stops right after)
        except SessionError:
            return 1
        end = None if seconds is None else time.monotonic() + seconds    # seconds of running audio
        said: set[str | None] = {None, *session.stats().notes}   # the plan's notes came with "running"
        try:
            while not stop.is_set() and (end is None or time.monotonic() < end):
                stop.wait(1.0 if end is None else max(0.0, min(1.0, end - time.monotonic())))
                if session.state in ("running", "waiting") and not stop.is_set():
                    st = session.stats()
                    for note in (st.budget_note, *st.notes):
                        if note not in said:           # a budget change or a resync: say why, once
                            said.add(note)
                            print(("\n" if tty else "") + f"[note] {note}", file=sys.stderr, flush=True)
                    line = status_line(st)
                    print(("\r" + line) if tty else line, end="" if tty else "\n", flush=True)
        finally:
            if tty:
                print()
            st = session.stats()
            session.stop()
            for path in st.recording_paths:
                print(f"recorded {path}")
    return 1 if failed.is_set() else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:        # Ctrl-C before the session's own handler was installed
        print("[stopped] Stopped.", file=sys.stderr)
        sys.exit(130)
