"""Recording the live input and the converted output to WAV files, off the audio thread.

The audio callbacks only `push_input` / `push_output` into two lock-free SPSC rings (a copy, no
allocation, no file I/O). A writer thread drains the rings into two WAV files every ~50 ms. If the
disk stalls for longer than the rings hold (`buffer_s`), the newest audio is dropped and counted
(`dropped`), never waited for.

Both files are written under hidden temporary names in the target folder and renamed into place
(after an fsync) by `stop()`, so a crash or a full disk never leaves a half-written WAV that looks
complete: when a write fails, the unfinished files are removed at once and `error` says why.

Each file starts at its stream's first callback (with one duplex stream: together, so the output
file shows the conversion with exactly the session's in-program latency; with split streams the
output file starts when the output stream does).
"""
from __future__ import annotations

import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import soundfile as sf

from engine.ringbuffer import SpscRing
from engine.safe_write import commit, describe_failure, discard, temp_beside


class Recorder:
    """`Recorder(folder, rate)`: `start()`, push from callbacks, `stop()`; `paths` are the two WAVs."""

    def __init__(self, folder: str | Path, rate: int, *, buffer_s: float = 10.0, stem: str | None = None) -> None:
        self.folder = Path(folder)
        self.rate = int(rate)
        stem = stem or datetime.now().strftime("como-live-%Y%m%d-%H%M%S")
        self.paths = self._free_paths(stem)
        capacity = max(1, round(buffer_s * rate))
        self._rings = (SpscRing(capacity), SpscRing(capacity))
        self.dropped = 0
        self.written = [0, 0]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._files: list[sf.SoundFile] = []
        self._temps: list[Path] = []
        self.error: str | None = None

    def _free_paths(self, stem: str) -> tuple[Path, Path]:
        """`<stem>-input.wav` / `-output.wav`, numbered when a recording of that name exists (never replaced)."""
        for n in range(1, 1000):
            tag = stem if n == 1 else f"{stem}-{n}"
            paths = (self.folder / f"{tag}-input.wav", self.folder / f"{tag}-output.wav")
            if not any(p.exists() for p in paths):
                return paths
        raise OSError(f"Cannot record into {self.folder}: too many recordings named {stem}")

    def start(self) -> None:
        """Create the folder and both (temporary) files (raises OSError with the path when that fails)."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for path in self.paths:
                self._temps.append(temp_beside(path))
                self._files.append(sf.SoundFile(str(self._temps[-1]), "w", samplerate=self.rate, channels=1,
                                                subtype="FLOAT", format="WAV"))
        except (OSError, RuntimeError) as exc:
            self._abandon()
            raise OSError(f"Cannot record into {self.folder}: {exc}") from exc
        self._thread = threading.Thread(target=self._run, name="como-recorder", daemon=True)
        self._thread.start()

    # -- audio callbacks ---------------------------------------------------------------------------------
    def push_input(self, x: np.ndarray) -> None:
        self.dropped += len(x) - self._rings[0].write(x)

    def push_output(self, y: np.ndarray) -> None:
        self.dropped += len(y) - self._rings[1].write(y)

    # -- writer thread -----------------------------------------------------------------------------------
    def _run(self) -> None:
        scratch = np.zeros(self.rate, np.float32)
        try:
            while not self._stop.is_set():
                self._drain(scratch)
                self._stop.wait(0.05)
            self._drain(scratch)
        except Exception as exc:  # noqa: BLE001 - a full disk must not take the session down
            self._abandon()
            self.error = f"Recording stopped: {describe_failure(exc, self.paths[0])}"

    def _drain(self, scratch: np.ndarray) -> None:
        for i, (ring, file) in enumerate(zip(self._rings, self._files)):
            while True:
                n = ring.read_into(scratch)
                if n == 0:
                    break
                file.write(scratch[:n])
                self.written[i] += n

    def stop(self, timeout: float = 5.0) -> tuple[Path, Path]:
        """Write what is left, close the files and move them into place; returns their paths."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if not self._files:
            return self.paths
        try:
            for file in self._files:
                file.close()
            for temp, path in zip(self._temps, self.paths):
                commit(temp, path)
        except Exception as exc:  # noqa: BLE001 - closing writes the WAV header; a full disk fails here too
            self._abandon()
            self.error = f"Recording stopped: {describe_failure(exc, self.paths[0])}"
        self._files, self._temps = [], []
        return self.paths

    def _abandon(self) -> None:
        """Close and remove the unfinished files (a WAV cut short would look complete)."""
        for file in self._files:
            try:
                file.close()
            except Exception:  # noqa: BLE001 - it is being thrown away
                pass
        for temp in self._temps:
            discard(temp)
        self._files, self._temps = [], []

    def wait_written(self, samples: int, timeout: float = 10.0) -> None:
        """Block until both files hold `samples` (for tests)."""
        end = time.monotonic() + timeout
        while min(self.written) < samples:
            if time.monotonic() > end:
                raise TimeoutError(f"recorder wrote {self.written}, waiting for {samples}")
            time.sleep(0.01)
