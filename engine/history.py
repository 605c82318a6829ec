"""A growing stream kept by absolute index: the engine's memory of past samples and frames.

Streaming code asks for ranges in absolute positions (sample 123 456 since the start, frame 812),
which is what makes the converter's output independent of how the input was chunked. Positions
before 0 read as zeros (the stream is silent before it starts); positions older than `keep` are
forgotten so memory stays bounded over a session of hours. This lives in the worker thread, never
in the audio callback.
"""
from __future__ import annotations

import numpy as np


class History:
    """Absolute-indexed buffer of rows (`width=None`: scalars, else vectors of `width`).

    `write(start, values)` stores `values[k]` at position `start + k` (it may overwrite earlier
    provisional values and extend the end); `read(start, stop)` returns positions `[start, stop)`.
    """

    def __init__(self, keep: int, width: int | None = None, dtype: type = np.float32) -> None:
        if keep <= 0:
            raise ValueError("keep must be positive")
        self.keep = int(keep)
        self._row = () if width is None else (int(width),)
        self._data = np.zeros((2 * self.keep,) + self._row, dtype=dtype)
        self._origin = 0   # absolute position of _data[0]
        self.end = 0       # one past the last written position

    def reserve(self, keep: int) -> None:
        """Remember at least `keep` positions from now on (a whole file fed as one block needs
        all of it while it is being converted)."""
        self.keep = max(self.keep, int(keep))

    @property
    def start(self) -> int:
        """Oldest position still held."""
        return max(0, self._origin)

    def write(self, start: int, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=self._data.dtype)
        stop = start + len(values)
        if start > self.end:
            raise ValueError(f"gap in history: writing at {start} but the end is {self.end}")
        if start < self._origin:
            raise ValueError(f"position {start} was already forgotten (oldest kept: {self._origin})")
        if stop - self._origin > len(self._data):
            start, values = self._make_room(start, stop, values)
        self._data[start - self._origin: stop - self._origin] = values
        self.end = max(self.end, stop)

    def append(self, values: np.ndarray) -> None:
        self.write(self.end, values)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Positions `[start, stop)`: zeros before 0; an error past `end` or before `start`."""
        if stop > self.end:
            raise ValueError(f"reading up to {stop} but only {self.end} positions exist")
        out = np.zeros((max(0, stop - start),) + self._row, dtype=self._data.dtype)
        lo = max(start, 0)
        if lo < stop:
            if lo < self._origin:
                raise ValueError(f"position {lo} was already forgotten (oldest kept: {self._origin})")
            out[lo - start:] = self._data[lo - self._origin: stop - self._origin]
        return out

    def _make_room(self, start: int, stop: int, values: np.ndarray) -> tuple[int, np.ndarray]:
        """Forget everything older than `keep` before `stop` (moving the rest to the front)."""
        new_origin = max(self._origin, stop - self.keep)
        if new_origin > start:  # the write alone is longer than `keep`: its oldest part is forgotten
            values, start = values[new_origin - start:], new_origin
        live = max(0, min(self.end, start) - new_origin)   # kept samples before the write
        old = self._data[new_origin - self._origin: new_origin - self._origin + live]
        if stop - new_origin > len(self._data):
            grown = np.zeros((stop - new_origin,) + self._row, dtype=self._data.dtype)
            grown[:live] = old
            self._data = grown
        else:
            self._data[:live] = old.copy()
        self._origin = new_origin
        return start, values
