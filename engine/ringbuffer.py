"""Fixed-capacity float32 rings for audio: `RingBuffer` (FIFO, one thread), `SpscRing` (FIFO, two
threads) and `SampleRing` (one writer, many readers, addressed by absolute sample position: the
realtime runner's input and output rings).

Both hold frames of shape `[ch]` (or scalars for mono) in a preallocated `[capacity]` or
`[capacity, ch]` float32 array. Writing and reading copy into/out of that storage with at most two
slice assignments (the wrap), so the steady-state audio path allocates nothing when the caller
passes `out=` arrays.
"""
from __future__ import annotations

from typing import Literal

import numpy as np

OverflowPolicy = Literal["raise", "drop_oldest"]


class RingBufferOverflow(RuntimeError):
    """A write did not fit and the buffer's policy is "raise"."""


class RingBufferUnderflow(RuntimeError):
    """A read/peek/skip asked for more frames than are buffered."""


def _storage(capacity: int, channels: int | None) -> np.ndarray:
    if int(capacity) < 1:
        raise ValueError(f"capacity must be >= 1 frame, got {capacity!r}")
    if channels is not None and int(channels) < 1:
        raise ValueError(f"channels must be >= 1 or None (mono 1-D), got {channels!r}")
    shape = (int(capacity),) if channels is None else (int(capacity), int(channels))
    return np.zeros(shape, dtype=np.float32)


def _check_frames(x: np.ndarray, storage: np.ndarray, what: str) -> np.ndarray:
    """`x` as an array whose frame shape matches the storage (`[n]` or `[n, ch]`)."""
    x = np.asarray(x)
    if x.shape[1:] != storage.shape[1:]:
        want = "[n]" if storage.ndim == 1 else f"[n, {storage.shape[1]}]"
        raise ValueError(f"{what}: expected frames shaped {want}, got an array of shape {x.shape}")
    return x


def _out_array(out: np.ndarray | None, n: int, storage: np.ndarray) -> np.ndarray:
    """The first `n` frames of `out` (checked), or a fresh array when `out` is None."""
    if out is None:
        return np.empty((n,) + storage.shape[1:], dtype=np.float32)
    if out.shape[1:] != storage.shape[1:] or out.shape[0] < n:
        raise ValueError(
            f"out has shape {out.shape}; need at least {n} frames shaped {storage.shape[1:] or '()'}"
        )
    return out[:n]


def _copy_in(storage: np.ndarray, start: int, x: np.ndarray) -> None:
    """Copy `x` into the circular `storage` beginning at physical index `start`."""
    cap = storage.shape[0]
    first = min(len(x), cap - start)
    storage[start:start + first] = x[:first]
    if first < len(x):
        storage[: len(x) - first] = x[first:]


def _copy_out(storage: np.ndarray, start: int, out: np.ndarray) -> None:
    """Fill `out` from the circular `storage` beginning at physical index `start`."""
    cap = storage.shape[0]
    first = min(len(out), cap - start)
    out[:first] = storage[start:start + first]
    if first < len(out):
        out[first:] = storage[: len(out) - first]


class _Storage:
    """Preallocated float32 frames `[capacity]` or `[capacity, channels]` shared by both rings."""

    def __init__(self, capacity: int, channels: int | None) -> None:
        self._buf = _storage(capacity, channels)
        self._cap = self._buf.shape[0]

    @property
    def capacity(self) -> int:
        return self._cap

    @property
    def channels(self) -> int | None:
        return None if self._buf.ndim == 1 else self._buf.shape[1]


class RingBuffer(_Storage):
    """Single-threaded FIFO of float32 frames with a fixed capacity.

    `write(x)` appends `x[n]` / `x[n, ch]`; when it does not fit, policy "raise" raises
    `RingBufferOverflow` (nothing is written) and "drop_oldest" discards the oldest frames to make
    room (if `x` alone exceeds the capacity only its newest `capacity` frames are kept).
    `read(n, out=None)` removes and returns the oldest `n` frames, `peek` returns them without
    removing, `skip(n)` drops them; asking for more than `available()` raises `RingBufferUnderflow`.
    """

    def __init__(self, capacity: int, channels: int | None = None,
                 overflow: OverflowPolicy = "raise") -> None:
        if overflow not in ("raise", "drop_oldest"):
            raise ValueError(f"overflow must be 'raise' or 'drop_oldest', got {overflow!r}")
        super().__init__(capacity, channels)
        self._overflow = overflow
        self._start = 0      # physical index of the oldest frame
        self._count = 0      # frames buffered
        self.dropped = 0     # frames discarded by "drop_oldest" since construction/clear()

    def available(self) -> int:
        """Frames that can be read now."""
        return self._count

    def free(self) -> int:
        """Frames that can be written now without overflow."""
        return self._cap - self._count

    def clear(self) -> None:
        self._start = 0
        self._count = 0
        self.dropped = 0

    def write(self, x: np.ndarray) -> None:
        x = _check_frames(x, self._buf, "RingBuffer.write")
        n = len(x)
        if n > self.free():
            if self._overflow == "raise":
                raise RingBufferOverflow(
                    f"RingBuffer.write of {n} frames does not fit: {self._count}/{self._cap} "
                    f"frames buffered, {self.free()} free"
                )
            if n >= self._cap:                     # only the newest `capacity` frames survive
                self.dropped += self._count + n - self._cap
                x = x[n - self._cap:]
                n = self._cap
                self._start, self._count = 0, 0
            else:
                drop = n - self.free()
                self._advance(drop)
                self.dropped += drop
        _copy_in(self._buf, (self._start + self._count) % self._cap, x)
        self._count += n

    def peek(self, n: int, out: np.ndarray | None = None) -> np.ndarray:
        n = self._check_take(n, "peek")
        dst = _out_array(out, n, self._buf)
        _copy_out(self._buf, self._start, dst)
        return dst

    def read(self, n: int, out: np.ndarray | None = None) -> np.ndarray:
        dst = self.peek(n, out)
        self.skip(n)
        return dst

    def skip(self, n: int) -> None:
        self._advance(self._check_take(n, "skip"))

    def _advance(self, n: int) -> None:
        self._start = (self._start + n) % self._cap
        self._count -= n

    def _check_take(self, n: int, what: str) -> int:
        n = int(n)
        if n < 0:
            raise ValueError(f"RingBuffer.{what}: n must be >= 0, got {n}")
        if n > self._count:
            raise RingBufferUnderflow(
                f"RingBuffer.{what}({n}) but only {self._count} frames are buffered"
            )
        return n


class SpscRing(_Storage):
    """Lock-free single-producer/single-consumer FIFO (one audio callback + one worker thread).

    The producer only calls `write`/`free`; the consumer only calls `read`/`read_into`/`peek`/
    `skip`/`available`. Two monotonic counters `_written` and `_read` (Python ints, never wrapped)
    are each advanced by exactly one thread, *after* that thread has finished copying samples; the
    other thread only reads the counter. So a slot is never read before it is written nor
    overwritten before it is read, and no lock is needed.

    Memory-model assumption: CPython with the GIL. A numpy slice assignment completes (its bytes
    are stored) before the next bytecode runs, a thread switch releases/acquires the GIL (a full
    memory barrier), and rebinding an attribute to a new int is atomic. Hence a counter value seen
    by the other thread always refers to samples that are already in the storage. On a
    free-threaded build (PEP 703, `python3.13t`) this still holds in practice because attribute
    stores are made atomic there too, but it is not guaranteed by a documented memory model; use a
    lock there if in doubt.

    Neither side ever blocks or raises on full/empty in the audio path: `write` stores as many
    frames as fit and returns that count, `read_into` fills as many as are available and returns
    that count. The caller decides what a short count means (drop, fill silence, count an xrun).
    """

    def __init__(self, capacity: int, channels: int | None = None) -> None:
        super().__init__(capacity, channels)
        self._written = 0    # advanced by the producer only
        self._read = 0       # advanced by the consumer only

    # -- either side (a snapshot: exact for the calling side's own purpose) --------------------
    def available(self) -> int:
        """Frames the consumer can read now (a lower bound seen from the producer)."""
        return self._written - self._read

    def free(self) -> int:
        """Frames the producer can write now (a lower bound seen from the consumer)."""
        return self._cap - (self._written - self._read)

    # -- producer ------------------------------------------------------------------------------
    def write(self, x: np.ndarray) -> int:
        """Append as many leading frames of `x` as fit; returns how many were written."""
        x = _check_frames(x, self._buf, "SpscRing.write")
        w = self._written
        n = min(len(x), self._cap - (w - self._read))
        if n > 0:
            _copy_in(self._buf, w % self._cap, x[:n])
            self._written = w + n        # publish only after the samples are stored
        return n

    # -- consumer ------------------------------------------------------------------------------
    def read_into(self, out: np.ndarray) -> int:
        """Fill the leading frames of `out` with the oldest frames; returns how many were read."""
        n = self.peek_into(out)
        self._read += n                  # release the slots only after copying them out
        return n

    def peek_into(self, out: np.ndarray) -> int:
        """Like `read_into` without consuming."""
        out = _check_frames(out, self._buf, "SpscRing.peek_into")
        r = self._read
        n = min(len(out), self._written - r)
        if n > 0:
            _copy_out(self._buf, r % self._cap, out[:n])
        return n

    def read(self, n: int, out: np.ndarray | None = None) -> np.ndarray:
        """Exactly `n` frames (raises `RingBufferUnderflow`, consuming nothing, if fewer)."""
        n = int(n)
        if n < 0:
            raise ValueError(f"SpscRing.read: n must be >= 0, got {n}")
        if n > self.available():
            raise RingBufferUnderflow(f"SpscRing.read({n}) but only {self.available()} are buffered")
        dst = _out_array(out, n, self._buf)
        self.read_into(dst)
        return dst

    def skip(self, n: int) -> int:
        """Drop up to `n` of the oldest frames (e.g. to jump to the newest audio); returns count."""
        n = max(0, min(int(n), self._written - self._read))
        self._read += n
        return n


class SampleRing:
    """Single-writer ring of mono float32 samples addressed by absolute position.

    The writer never waits: writing position `p` overwrites position `p - capacity`. `end` (one past
    the newest sample) is published after the data is in place, so a reader that sees `end` also
    sees the samples below it. Readers do not consume; several may read (the main output, the
    monitor, the dry late-fill). Positions below 0 read as silence.
    """

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.capacity = int(capacity)
        self._data = np.zeros(self.capacity, dtype=np.float32)
        self._gap = (0, 0)        # the latest skipped range: zeros in memory, but never real audio
        self.end = 0

    @property
    def oldest(self) -> int:
        """The oldest position still held."""
        return max(0, self.end - self.capacity)

    def write(self, x: np.ndarray) -> None:
        """Append `x` at `end`."""
        self.write_at(self.end, x)

    def write_at(self, pos: int, x: np.ndarray) -> None:
        """Store `x` at positions `[pos, pos + len(x))`, `pos >= end`; a gap before `pos` reads as missing."""
        if pos < self.end:
            raise ValueError(f"cannot rewrite position {pos}: the ring already ends at {self.end}")
        if pos > self.end:
            gap_lo = max(self.end, pos - self.capacity)
            self._copy_in(gap_lo, None, pos - gap_lo)
            self._gap = (self.end, pos)
        n = len(x)
        if n > self.capacity:
            x, pos = x[n - self.capacity:], pos + n - self.capacity
            n = self.capacity
        self._copy_in(pos, x, n)
        self.end = pos + n

    def _copy_in(self, pos: int, x: np.ndarray | None, n: int) -> None:
        i = pos % self.capacity
        first = min(n, self.capacity - i)
        if x is None:
            self._data[i:i + first] = 0.0
            self._data[:n - first] = 0.0
        else:
            self._data[i:i + first] = x[:first]
            self._data[:n - first] = x[first:n]

    def available(self, pos: int, n: int) -> int:
        """How many of positions `[pos, pos + n)` can be read, counted from `pos` (a prefix)."""
        oldest = self.oldest
        if 0 <= pos < oldest:
            return 0                      # overwritten already
        if pos < 0 < oldest:
            return min(n, -pos)           # silence before the start, then overwritten positions
        stop = self.end
        gap_lo, gap_hi = self._gap
        if gap_lo < gap_hi and pos < gap_hi and pos + n > gap_lo:
            stop = gap_lo                 # a skipped range is missing audio, like a late block
        return int(min(n, max(0, stop - pos)))   # positions below 0 count as (silent) data

    def read_into(self, pos: int, out: np.ndarray) -> None:
        """Copy positions `[pos, pos + len(out))` into `out` (the caller checked `available`)."""
        n = len(out)
        lead = min(n, max(0, -pos))
        if lead:
            out[:lead] = 0.0
            pos, out, n = 0, out[lead:], n - lead
        if n:
            i = pos % self.capacity
            first = min(n, self.capacity - i)
            out[:first] = self._data[i:i + first]
            out[first:] = self._data[:n - first]
