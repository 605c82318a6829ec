"""Test helpers for real audio devices: a private PulseAudio server and a one-clock recorder.

`PulseServer(dir).start()` runs scripts/pulse.sh (meter / vc_in / vc_out / vc_mon, see there),
points this process at it (PULSE_SERVER, ALSA_CONFIG_PATH, ...) and re-scans PortAudio so the
ALSA names vc_in, vc_out, vc_mon and meter appear. `MeterRecording` records the stereo `meter`
monitor with parecord: its left channel is what was played into vc_in (the engine's input), its
right channel what the engine played into vc_out, both on the meter sink's one clock. Everything
waits on sample counts, never on sleeps.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import termios
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "pulse.sh"
RATE = 48000
# The test player's buffer. At 20 ms its stream underran now and then on a 2-core VM: the sink
# rendered ~35 samples of silence for it, which vc_in.monitor delivered to the engine; PulseAudio
# then rewound the sink to play the late data, and the meter recorded the signal there instead.
# Its buffer adds no delay anyone measures (the engine's input is what vc_in renders).
PLAYER_LATENCY_MS = 200
ENV_KEYS = ("PULSE_SERVER", "PULSE_CLIENTCONFIG", "ALSA_CONFIG_PATH", "COMO_PULSE_DIR", "COMO_PULSE_RT")


class PulseUnavailable(RuntimeError):
    """The server cannot run here (the reason is the message)."""


class PulseServer:
    def __init__(self, folder: str | Path) -> None:
        self.dir = Path(folder)
        self.env: dict[str, str] = {}
        self._saved: dict[str, str | None] = {}

    def start(self, rescan: bool = True) -> "PulseServer":
        """Start the server; `rescan`: re-initialise this process's PortAudio to see it (not while a
        session in this process may hold a stream: Pa_Terminate then blocks for good)."""
        for tool in ("pulseaudio", "pactl", "parecord", "pacat"):
            if shutil.which(tool) is None:
                raise PulseUnavailable(f"{tool} is not installed (apt-get install pulseaudio pulseaudio-utils)")
        done = subprocess.run(["bash", str(SCRIPT), "start", str(self.dir)], capture_output=True, text=True,
                              timeout=30)
        if done.returncode != 0:
            raise PulseUnavailable(f"scripts/pulse.sh could not start a server: {done.stderr.strip()}")
        self.env = {k: v.strip('"') for k, v in (line[len("export "):].split("=", 1) for line in
                                                  done.stdout.splitlines() if line.startswith("export "))}
        if not self._saved:
            self._saved = {k: os.environ.get(k) for k in ENV_KEYS}
        os.environ.update(self.env)
        if rescan:
            rescan_portaudio()
        return self

    def stop(self, restore_env: bool = True) -> None:
        subprocess.run(["bash", str(SCRIPT), "stop", str(self.dir)], capture_output=True, timeout=30)
        if restore_env and self._saved:
            for k, v in self._saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            self._saved = {}
            rescan_portaudio()

    def pactl(self, *args: str) -> str:
        done = subprocess.run(["pactl", *args], capture_output=True, text=True, timeout=10)
        if done.returncode != 0:
            raise RuntimeError(f"pactl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def module_id(self, sink_name: str) -> str | None:
        for line in self.pactl("list", "short", "modules").splitlines():
            parts = line.split("\t")
            if len(parts) > 2 and f"sink_name={sink_name} " in parts[2] + " ":
                return parts[0]
        return None


def start_or_skip(folder: str | Path) -> PulseServer:
    """A running server with the test devices visible to PortAudio, or pytest.skip with the reason."""
    import pytest

    try:
        import sounddevice  # noqa: F401 - needs libportaudio2
    except OSError as exc:
        pytest.skip(f"PortAudio is not installed (apt-get install libportaudio2): {exc}")
    server = PulseServer(folder)
    try:
        server.start()
    except PulseUnavailable as exc:
        pytest.skip(str(exc))
    from engine.audio.devices import list_devices

    if not any(d.name == "vc_in" for d in list_devices()):
        server.stop()
        pytest.skip("PortAudio does not see the ALSA 'pulse' devices (apt-get install libasound2-plugins)")
    return server


def rescan_portaudio() -> None:
    """PortAudio/ALSA read their device list at start-up: make them read it again."""
    from engine.audio.devices import refresh

    refresh()


def realtime() -> list[str]:
    """`chrt -f N` when scripts/pulse.sh runs the server real-time (see there), else nothing: the
    test's own player and recorder are clients of that server and must keep up as it does."""
    return os.environ.get("COMO_PULSE_RT", "").split()


class MeterRecording:
    """parecord of meter.monitor: stereo float32 at 48 kHz into a raw file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.proc = subprocess.Popen(
            [*realtime(), "parecord", "--device=meter.monitor", f"--rate={RATE}", "--channels=2", "--format=float32le", "--raw",
             "--latency-msec=10", str(self.path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def frames(self) -> int:
        return self.path.stat().st_size // 8 if self.path.exists() else 0

    def wait_frames(self, n: int, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while self.frames() < n:
            if self.proc.poll() is not None:
                raise RuntimeError(f"parecord exited: {self.proc.stderr.read().decode(errors='replace')}")
            if time.monotonic() > end:
                raise TimeoutError(f"meter recorded {self.frames()} of {n} frames")
            time.sleep(0.02)

    def stop(self) -> np.ndarray:
        """Stop; the recording as float32[n, 2] (left: engine input, right: engine output)."""
        self.proc.terminate()
        self.proc.wait(10)
        data = np.fromfile(self.path, dtype=np.float32)
        return data[: len(data) // 2 * 2].reshape(-1, 2)


def play(signal: np.ndarray, path: str | Path, sink: str = "vc_in") -> subprocess.Popen:
    """Play mono float32 `signal` into `sink` via a raw file at `path` (returns at once; `.wait()`
    returns once pacat has handed everything to the server)."""
    np.asarray(signal, np.float32).tofile(path)
    return subprocess.Popen([*realtime(), "pacat", "--playback", f"--device={sink}", f"--rate={RATE}", "--channels=1",
                             "--format=float32le", "--raw", f"--latency-msec={PLAYER_LATENCY_MS}", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class StreamingPlayer:
    """One pacat stream into `sink` for a whole run: silence, then `play(signal)`, then silence.

    Start it before the engine. A playback stream that connects to a sink makes PulseAudio rewind
    the sink to mix it in sooner; a monitor that had already delivered the rewound part cannot take
    it back, so the engine's capture and the meter then differed in tens of samples where the
    signal began (when pacat started after the engine). With one stream open from before the
    engine starts, nothing connects while the engine records. A thread keeps the pipe full
    (64 KiB, ~0.34 s of audio: room for the writer to be descheduled on a loaded machine).
    """

    CHUNK = 480

    def __init__(self, sink: str = "vc_in") -> None:
        self.proc = subprocess.Popen(
            [*realtime(), "pacat", "--playback", f"--device={sink}", f"--rate={RATE}", "--channels=1",
             "--format=float32le", "--raw", f"--latency-msec={PLAYER_LATENCY_MS}"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._pending: list[np.ndarray] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._written = 0                     # bytes handed to the pipe
        self._signal_end: int | None = None   # byte offset where the last signal ends
        self._thread = threading.Thread(target=self._feed, name="pacat-feeder", daemon=True)
        self._thread.start()

    def play(self, signal: np.ndarray) -> None:
        with self._lock:
            self._pending.append(np.asarray(signal, np.float32).copy())

    def wait_played(self, timeout: float = 60.0) -> None:
        """Until pacat has read the whole signal from the pipe (then it plays within its buffer)."""
        end = time.monotonic() + timeout
        while True:
            with self._lock:
                done = not self._pending and self._signal_end is not None
                target = self._signal_end
            if done and self._read_by_pacat() >= target:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"pacat exited: {self.proc.stderr.read().decode(errors='replace')}")
            if time.monotonic() > end:
                raise TimeoutError("pacat did not take the signal")
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        self.proc.kill()                       # a write blocked on the full pipe ends with it
        self._thread.join(5)
        self.proc.wait(10)

    def _read_by_pacat(self) -> int:
        with self._lock:
            written = self._written
            try:
                queued = int.from_bytes(fcntl.ioctl(self.proc.stdin.fileno(), termios.FIONREAD, b"\0" * 4), "little")
            except OSError:
                return 0
        return written - queued

    def _feed(self) -> None:
        silence = np.zeros(self.CHUNK, np.float32).tobytes()
        try:
            while not self._stop.is_set():
                with self._lock:
                    signal = self._pending.pop(0) if self._pending else None
                    if signal is not None:
                        self._signal_end = None        # until this one is written
                data = silence if signal is None else signal.tobytes()
                for k in range(0, len(data), 4 * self.CHUNK):
                    self.proc.stdin.write(data[k:k + 4 * self.CHUNK])
                    self.proc.stdin.flush()
                    with self._lock:
                        self._written += len(data[k:k + 4 * self.CHUNK])
                if signal is not None:
                    with self._lock:
                        self._signal_end = self._written
        except (BrokenPipeError, ValueError, OSError):
            pass                               # pacat was stopped
