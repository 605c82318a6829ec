"""Soak test: the live engine for N minutes; RSS, latency, underruns, xruns and compute p99 every 10 s.

    .venv/bin/python -m benchmarks.soak --minutes 10 --pulse-dir /tmp/como-pulse-soak   # PulseAudio null sinks
    .venv/bin/python -m benchmarks.soak --minutes 2 --simulated                          # no sound server

PulseAudio: `--pulse-dir` starts (or reuses) the private test server of scripts/pulse.sh in that
folder (vc_in, vc_out, meter); a speech-like buzz is played into vc_in for the whole run (pacat,
paced by the server), the engine converts vc_in.monitor into vc_out. `--simulated`: the simulated
sound card in real time (the same buzz on its microphone).

Prints one row per sample (elapsed s, RSS MB, reported latency ms, late blocks, driver xruns,
latency steps, reconnects, compute p50/p99 ms) and then the slope per hour of each column from a
least-squares line: a leak shows as RSS MB/h, a creeping delay as latency ms/h. The first sample
is taken after `--every` seconds, when the streams have settled.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks._table import print_table
from engine.session import LiveSession, LiveStats, SessionConfig
from engine.settings import Settings

RATE = 48000
ROOT = Path(__file__).resolve().parents[1]


def buzz(seconds: float, seed: int = 0) -> np.ndarray:
    """A gliding harmonic buzz with syllable envelopes: float32[seconds * RATE]."""
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 130 * 2 ** (0.3 * np.sin(2 * np.pi * 0.4 * t))
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    x = sum(np.sin(k * phase) * np.exp(-k / 10) for k in range(1, 25))
    env = np.clip(np.sin(2 * np.pi * 1.7 * t), 0, None) ** 0.5
    return (0.1 * x * env + 0.001 * np.random.default_rng(seed).standard_normal(len(t))).astype(np.float32)


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status")


class PulsePlayer:
    """pacat into vc_in, fed a looping buzz from a thread until `stop()`."""

    def __init__(self, sink: str = "vc_in") -> None:
        self.proc = subprocess.Popen(["pacat", "--playback", f"--device={sink}", f"--rate={RATE}", "--channels=1",
                                      "--format=float32le", "--raw", "--latency-msec=50"], stdin=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        self._stop = threading.Event()
        self._loop = buzz(10.0).tobytes()
        self._thread = threading.Thread(target=self._feed, name="soak-player", daemon=True)
        self._thread.start()

    def _feed(self) -> None:
        step = len(self._loop) // 100
        try:
            while not self._stop.is_set():
                for k in range(0, len(self._loop), step):
                    if self._stop.is_set():
                        return
                    self.proc.stdin.write(self._loop[k:k + step])     # blocks: paced by the server
        except (BrokenPipeError, ValueError):
            return

    def stop(self) -> None:
        self._stop.set()
        self.proc.kill()
        self.proc.wait(5)


def start_pulse(folder: str) -> None:
    """Start (or reuse) scripts/pulse.sh's server in `folder` and point this process at it."""
    done = subprocess.run(["bash", str(ROOT / "scripts" / "pulse.sh"), "start", folder], capture_output=True,
                          text=True, timeout=60, check=True)
    for line in done.stdout.splitlines():
        if line.startswith("export "):
            key, value = line[len("export "):].split("=", 1)
            os.environ[key] = value


def sample(t: float, st: LiveStats) -> dict[str, float | int | str]:
    return {"t_s": round(t), "state": st.state, "rss_mb": rss_mb(),
            "latency_ms": st.latency.total_ms if st.latency is not None else float("nan"),
            "late_blocks": st.underruns, "xruns": st.device_xruns, "steps": len(st.latency_steps),
            "reconnects": st.reconnects,
            "p50_ms": st.compute_p50_ms if st.compute_p50_ms is not None else float("nan"),
            "p99_ms": st.compute_p99_ms if st.compute_p99_ms is not None else float("nan")}


def slopes(rows: list[dict]) -> dict[str, float | str]:
    """Least-squares slope per hour of every numeric column against t_s."""
    t = np.array([r["t_s"] for r in rows], np.float64) / 3600.0
    out: dict[str, float | str] = {"t_s": "slope/h"}
    for key in rows[0]:
        if key in ("t_s", "state"):
            continue
        y = np.array([r[key] for r in rows], np.float64)
        ok = np.isfinite(y)
        out[key] = float(np.polyfit(t[ok], y[ok], 1)[0]) if ok.sum() >= 2 else float("nan")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--pulse-dir", help="private PulseAudio server folder (scripts/pulse.sh)")
    where.add_argument("--simulated", action="store_true", help="the simulated sound card, in real time")
    p.add_argument("--voice", default="builtin:dsp", help="builtin:dsp (default) or a voice-pack folder")
    p.add_argument("--block-ms", type=float, default=Settings.block_ms)
    args = p.parse_args()

    settings = Settings(gate_db=-120.0, block_ms=args.block_ms)
    player = None
    if args.simulated:
        from engine.audio.streams import SimulatedBackend

        minutes = args.minutes + 1.0
        loop = buzz(10.0)
        signal = np.tile(loop, int(np.ceil(minutes * 6)))
        session = LiveSession(SimulatedBackend(signal, seconds=1.0))
        cfg = SessionConfig(input_device="Sim Microphone", output_device="Sim Cable", voice=args.voice,
                            settings=settings)
        where = "simulated sound card (real time)"
    else:
        start_pulse(args.pulse_dir)
        from engine.audio.devices import refresh

        refresh()
        player = PulsePlayer()
        session = LiveSession()
        cfg = SessionConfig(input_device="vc_in", output_device="vc_out", sample_rate=RATE, voice=args.voice,
                            settings=settings)
        where = f"PulseAudio null sinks ({args.pulse_dir}): vc_in.monitor -> vc_out"
    events: list[str] = []
    session.on_state = lambda state, message: events.append(f"[{state}] {message}")
    rows: list[dict] = []
    session.start(cfg)
    t0 = time.monotonic()
    try:
        end = t0 + 60.0 * args.minutes
        next_at = t0 + args.every
        while next_at <= end + 1e-6:
            time.sleep(max(0.0, next_at - time.monotonic()))
            rows.append(sample(time.monotonic() - t0, session.stats()))
            print("  ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in rows[-1].items()),
                  flush=True)
            next_at += args.every
        final = session.stats()
    finally:
        session.stop()
        if player is not None:
            player.stop()
    notes = [f"{where}; voice {args.voice}, block {args.block_ms:g} ms, {args.minutes:g} min, sample every "
             f"{args.every:g} s", f"driver xruns by kind: {final.xruns.describe()}"]
    notes += [f"latency step: {s}" for s in final.latency_steps]
    notes += [e for e in events if not e.startswith(("[starting]", "[stopped]"))]
    print()
    print_table("soak: live engine, sampled", rows + [slopes(rows)], notes=notes)


if __name__ == "__main__":
    main()
