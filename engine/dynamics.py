"""Streaming level processors: `NoiseGate`, `Gain` and a brick-wall `Limiter` (numpy, vectorised).

All take float32 `[n]` (mono) or `[n, ch]` frames, any `n` per call, and keep their state across
calls, so the result does not depend on how the stream is cut (up to float rounding).
Every gain change is a per-sample linear ramp, never a step (no zipper noise).
"""
from __future__ import annotations

import math

import numpy as np

GATE_OFF_DB = -120.0


def db_to_gain(db: float) -> float:
    return 10.0 ** (float(db) / 20.0)


def _frames(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim not in (1, 2):
        raise ValueError(f"{what} expects [n] or [n, ch] audio, got shape {x.shape}")
    return x


def _power(x: np.ndarray) -> np.ndarray:
    """Per-frame mean square over channels, float64 [n]; NaN/inf count as silence."""
    sq = np.nan_to_num(x.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0) ** 2
    return sq if sq.ndim == 1 else sq.mean(axis=1)


def _apply(x: np.ndarray, gain: np.ndarray) -> np.ndarray:
    return x * (gain if x.ndim == 1 else gain[:, None])


def _slew(target: np.ndarray, g0: float, up: float, down: float) -> np.ndarray:
    """Gain that moves towards the 0/1 `target` at most `up`/`down` per sample, from `g0`.

    The target changes rarely (gate open/close), so this loops over runs of equal target and
    ramps each run with numpy.
    """
    out = np.empty(len(target), dtype=np.float64)
    edges = np.concatenate(([0], np.flatnonzero(np.diff(target)) + 1, [len(target)]))
    g = g0
    for a, b in zip(edges[:-1], edges[1:]):
        steps = np.arange(1, b - a + 1, dtype=np.float64)
        seg = np.minimum(1.0, g + up * steps) if target[a] else np.maximum(0.0, g - down * steps)
        out[a:b] = seg
        g = float(seg[-1])
    return out


class NoiseGate:
    """RMS gate with hold and release, safe for sustained sung notes.

    Detector: RMS over the last `window_ms` (default 20 ms, at least half a period of an 50 Hz
    note, so a steady tone's RMS ripples by < 2 dB). The gate opens as soon as the RMS reaches
    `threshold_db` (dBFS, RMS) and stays open until the RMS has been below it for `hold_ms`; only
    then it fades out over `release_ms`. Opening fades in over `attack_ms`. So a note above the
    threshold is never cut, and a note that dips below it for less than `hold_ms` is not cut
    either. `threshold_db <= -120` switches the gate off (gain exactly 1).
    It starts closed (gain 0) so start-up noise is gated too.
    """

    def __init__(self, threshold_db: float, hold_ms: float, release_ms: float, attack_ms: float = 2.0,
                 rate: int = 48_000, window_ms: float = 20.0) -> None:
        if rate <= 0 or window_ms <= 0:
            raise ValueError(f"rate and window_ms must be > 0, got {rate!r}, {window_ms!r}")
        self.rate = int(rate)
        self._win = max(1, round(window_ms * rate / 1000.0))
        self.update(threshold_db=threshold_db, hold_ms=hold_ms, release_ms=release_ms,
                    attack_ms=attack_ms)
        self.reset()

    def update(self, threshold_db: float | None = None, hold_ms: float | None = None,
               release_ms: float | None = None, attack_ms: float | None = None) -> None:
        """Change parameters between blocks (state is kept, so no click)."""
        if threshold_db is not None:
            if not -200.0 <= threshold_db <= 0.0:
                raise ValueError(f"gate threshold must be in [-200, 0] dB, got {threshold_db!r}")
            self.threshold_db = float(threshold_db)
        for name, value in (("hold_ms", hold_ms), ("release_ms", release_ms),
                            ("attack_ms", attack_ms)):
            if value is not None:
                if value < 0:
                    raise ValueError(f"{name} must be >= 0, got {value!r}")
                setattr(self, name, float(value))
        self._hold = round(self.hold_ms * self.rate / 1000.0)
        self._up = 1.0 / max(1.0, self.attack_ms * self.rate / 1000.0)
        self._down = 1.0 / max(1.0, self.release_ms * self.rate / 1000.0)

    @property
    def off(self) -> bool:
        return self.threshold_db <= GATE_OFF_DB

    def reset(self) -> None:
        self._pos = 0                                      # absolute frame index of the next input
        self._tail = np.zeros(self._win - 1)               # last win-1 powers (detector memory)
        self._last_open = -(1 << 62)                       # last frame whose RMS was >= threshold
        self._g = 0.0

    def gain(self, x: np.ndarray) -> np.ndarray:
        """Gain curve float32[n] for the next `n` frames of `x` (advances the state)."""
        x = _frames(x, "NoiseGate")
        n = len(x)
        power = _power(x)
        ext = np.concatenate((self._tail, power))
        csum = np.concatenate(([0.0], np.cumsum(ext)))
        mean_sq = (csum[self._win:] - csum[:-self._win]) / self._win          # [n]
        self._tail = ext[len(ext) - (self._win - 1):] if self._win > 1 else self._tail
        idx = self._pos + np.arange(n)
        self._pos += n
        if self.off:
            # Track "open" so switching the gate on later starts open and releases smoothly.
            self._last_open, self._g = self._pos - 1, 1.0
            return np.ones(n, dtype=np.float32)
        above = mean_sq >= db_to_gain(self.threshold_db) ** 2
        last = np.maximum.accumulate(np.where(above, idx, self._last_open))
        if n:
            self._last_open = int(last[-1])
        target = (idx - last) <= self._hold
        g = _slew(target, self._g, self._up, self._down)
        if n:
            self._g = float(g[-1])
        return g.astype(np.float32)

    def process(self, x: np.ndarray) -> np.ndarray:
        x = _frames(x, "NoiseGate")
        return _apply(x, self.gain(x))


class Gain:
    """A gain in dB; changes ramp linearly (in amplitude) over `ramp_ms`, so no zipper noise."""

    def __init__(self, db: float = 0.0, rate: int = 48_000, ramp_ms: float = 20.0) -> None:
        if rate <= 0 or ramp_ms < 0:
            raise ValueError(f"need rate > 0 and ramp_ms >= 0, got {rate!r}, {ramp_ms!r}")
        self._ramp = max(1, round(ramp_ms * rate / 1000.0))
        self.db = float(db)
        self._g = self._target = db_to_gain(db)
        self._step, self._left = 0.0, 0

    def set_db(self, db: float) -> None:
        if not math.isfinite(db):
            raise ValueError(f"gain must be finite dB, got {db!r}")
        self.db = float(db)
        self._target = db_to_gain(db)
        self._step = (self._target - self._g) / self._ramp
        self._left = self._ramp

    def gain(self, n: int) -> np.ndarray:
        """Gain curve float32[n] for the next `n` frames (advances the ramp)."""
        g = np.full(n, self._target, dtype=np.float64)
        k = min(n, self._left)
        if k:
            g[:k] = self._g + self._step * np.arange(1, k + 1)
            self._left -= k
            self._g = self._target if self._left == 0 else float(g[k - 1])
        return g.astype(np.float32)

    def process(self, x: np.ndarray) -> np.ndarray:
        x = _frames(x, "Gain")
        if self._left == 0 and self._g == 1.0:
            return x.copy()
        return _apply(x, self.gain(len(x)))


class Limiter:
    """Look-ahead brick-wall limiter: |output| <= 10**(ceiling_dbfs/20) for ANY input.

    The output is the input delayed by exactly `delay` = round(lookahead_ms * rate / 1000) frames,
    times a gain that never exceeds `ceiling / |x|` at any frame (so the bound holds by
    construction), ramps down linearly over the look-ahead before a peak (no clipping
    distortion) and recovers linearly at `1 / release` per frame. A final hard clip only guards
    float rounding. NaN and +-inf inputs are replaced by 0 first. Channels are linked (one gain).
    `lookahead_ms=0` gives a zero-latency limiter whose attack is instantaneous.
    """

    def __init__(self, ceiling_dbfs: float = -1.0, rate: int = 48_000, lookahead_ms: float = 1.5,
                 release_ms: float = 60.0, channels: int | None = None) -> None:
        if ceiling_dbfs > 0 or not math.isfinite(ceiling_dbfs):
            raise ValueError(f"ceiling must be a finite dBFS value <= 0, got {ceiling_dbfs!r}")
        if rate <= 0 or lookahead_ms < 0 or release_ms <= 0:
            raise ValueError("need rate > 0, lookahead_ms >= 0 and release_ms > 0")
        exact = db_to_gain(ceiling_dbfs)
        c = np.float32(exact)
        self.ceiling = np.nextafter(c, np.float32(0)) if float(c) > exact else c
        self.delay = round(lookahead_ms * rate / 1000.0)
        self._release_step = 1.0 / max(1.0, release_ms * rate / 1000.0)
        self.channels = channels
        self.reset()

    def reset(self) -> None:
        shape = (self.delay,) if self.channels is None else (self.delay, self.channels)
        self._pending = np.zeros(shape, dtype=np.float32)     # delayed audio not yet output
        self._pending_t = np.ones(self.delay)                 # its per-frame gain bounds
        self._g = 1.0

    def process(self, x: np.ndarray) -> np.ndarray:
        x = _frames(x, "Limiter")
        if x.shape[1:] != self._pending.shape[1:]:
            raise ValueError(f"Limiter set up for frames {self._pending.shape[1:] or 'mono [n]'}, "
                             f"got shape {x.shape}")
        n, L = len(x), self.delay
        x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        peak = np.abs(x) if x.ndim == 1 else np.abs(x).max(axis=1)
        t_new = np.minimum(1.0, float(self.ceiling) / np.maximum(peak.astype(np.float64), 1e-30))
        audio = np.concatenate((self._pending, x))
        t = np.concatenate((self._pending_t, t_new))               # [L + n]
        if L:
            # Attack: g[i] <= t[m] + (m - i) / L for every known m >= i (constraints with
            # m - i >= L are >= 1, i.e. never binding, so the finite look-ahead is exact).
            ramp = np.arange(len(t)) / L
            f = np.minimum.accumulate((t + ramp)[::-1])[::-1] - ramp
        else:
            f = t
        f = np.minimum(f[:n], 1.0)
        # Release: g[i] = min(f[i], g[i-1] + step), solved in closed form with a running min.
        s = self._release_step
        i = np.arange(n)
        g = np.minimum(np.minimum.accumulate(f - s * i) + s * i, self._g + s * (i + 1))
        if n:
            self._g = float(g[-1])
        out = _apply(audio[:n], g.astype(np.float32))
        np.clip(out, -self.ceiling, self.ceiling, out=out)
        self._pending = audio[n:].copy()
        self._pending_t = t[n:].copy()
        return out
