"""Crossfades and a constant-latency SOLA splice for block-wise voice conversion.

A block-wise converter re-generates every block from a window of audio, so consecutive blocks
overlap and do not line up sample-exactly (different context, different vocoder phase). SOLA
(synchronised overlap-add) finds the small shift that best aligns the new block with the tail of
the previous one, then crossfades the two.

Constant-latency contract of `SolaSplicer(block=B, crossfade=C, search=W)` (all in samples):

* Every call gets `new`: float32[B + C + W] covering source times `[t_b, t_b + B + C + W)`, where
  `t_b = t_0 + b * B` advances by exactly B per call (the caller's time base, e.g. the model's
  output timeline). So the caller must produce `C + W` samples beyond the B it wants played.
* Every call returns exactly B samples. Call b chooses an offset `k_b` in `[0, W]` and returns
  source times `[t_b + k_b, t_b + k_b + B)`; its first C samples are crossfaded with the tail the
  previous call kept, `new_{b-1}[k_{b-1} + B : k_{b-1} + B + C]` (source times
  `[t_b + k_{b-1}, ... + C)`), so with `k_b = k_{b-1}` the crossfade joins identical times.
* `k_b` maximises the normalised cross-correlation between that kept tail and
  `new_b[k : k + C]` over the *absolute* window `[0, W]`; it is not relative to `k_{b-1}`, so the
  shift never accumulates: output sample `b*B + j` always carries source time `t_0 + b*B + j + k_b`.
* Delay added by the splice (lookahead the caller must have): `C + W - k_b` samples. On silence,
  on an exactly repeating/continuous input and before the first block, `k_b = W // 2`, so the
  nominal constant delay is `C + W - W // 2` (= `delay`) with a bounded content jitter of
  `-(W - W // 2) .. + W // 2` samples around it. The number of samples in flight is exactly
  constant; only the alignment of the content inside the crossfade moves, by at most W.
  With `W = 0` the splice is a plain crossfade with an exact content delay of C.
* The first call crossfades from silence (the initial tail is zeros): a fade-in, no start-up pop.
"""
from __future__ import annotations

from typing import Literal

import numpy as np

FadeKind = Literal["sin2", "linear"]

# Offsets whose NCC is within this of the best count as ties; ties go to the centre of the window
# so silence and flat correlations (DC, very low notes) keep the nominal delay.
_TIE = 1e-6
_EPS = 1e-12


def fade_in(n: int, kind: FadeKind = "sin2") -> np.ndarray:
    """Fade-in curve float32[n] rising from ~0 to ~1; the matching fade-out is `1 - curve`.

    "sin2" is `sin^2(pi/2 * (i + 0.5) / n)` (half a Hann window): smooth at both ends, and
    `curve + curve[::-1] == 1`, so constant-gain crossfades of equal signals are exact.
    """
    if int(n) < 0:
        raise ValueError(f"fade length must be >= 0, got {n!r}")
    pos = (np.arange(int(n), dtype=np.float64) + 0.5) / max(int(n), 1)
    if kind == "sin2":
        curve = np.sin(0.5 * np.pi * pos) ** 2
    elif kind == "linear":
        curve = pos
    else:
        raise ValueError(f"fade kind must be 'sin2' or 'linear', got {kind!r}")
    return curve.astype(np.float32)


def crossfade(a_tail: np.ndarray, b_head: np.ndarray, window: np.ndarray,
              out: np.ndarray | None = None) -> np.ndarray:
    """`a_tail * (1 - window) + b_head * window`, all float32[n] (constant-gain crossfade)."""
    a_tail, b_head, window = (np.asarray(v, dtype=np.float32) for v in (a_tail, b_head, window))
    if not (a_tail.shape == b_head.shape == window.shape) or a_tail.ndim != 1:
        raise ValueError(
            f"crossfade needs three 1-D arrays of one length, got {a_tail.shape}, {b_head.shape}, "
            f"{window.shape}"
        )
    if out is None:
        out = np.empty_like(a_tail)
    np.subtract(b_head, a_tail, out=out)   # a + (b - a) * w: one pass, exact when a == b
    out *= window
    out += a_tail
    return out


def sola_offset(ref: np.ndarray, region: np.ndarray, center: int | None = None) -> int:
    """Offset k in `[0, len(region) - len(ref)]` maximising the normalised cross-correlation
    `<ref, region[k:k+C]> / (|ref| |region[k:k+C]|)`. Ties (within 1e-6) go to the offset
    closest to `center` (default: the middle), so silence gives the centre.
    """
    ref = np.asarray(ref, dtype=np.float64)
    region = np.asarray(region, dtype=np.float64)
    c, w = len(ref), len(region) - len(ref)
    if w < 0:
        raise ValueError(f"search region ({len(region)}) is shorter than the reference ({c})")
    if center is None:
        center = w // 2
    if not 0 <= center <= w:
        raise ValueError(f"center {center} outside [0, {w}]")
    if c == 0 or w == 0:
        return center if c == 0 else 0
    num = np.correlate(region, ref, mode="valid")                  # [w + 1]
    sq = np.concatenate(([0.0], np.cumsum(region * region)))
    energy = sq[c:] - sq[:-c]                                       # |region[k:k+C]|^2, [w + 1]
    ncc = num / np.sqrt(np.dot(ref, ref) * np.maximum(energy, 0.0) + _EPS)
    ties = np.flatnonzero(ncc >= ncc.max() - _TIE)
    return int(ties[np.argmin(np.abs(ties - center))])


class SolaSplicer:
    """Streaming SOLA with a fixed B samples out per call; see the module docstring for the
    contract. `process(new: float32[B + C + W]) -> float32[B]`."""

    def __init__(self, block: int, crossfade: int, search: int, kind: FadeKind = "sin2") -> None:
        block, crossfade, search = int(block), int(crossfade), int(search)
        if block < 1:
            raise ValueError(f"block must be >= 1 sample, got {block}")
        if crossfade < 0 or search < 0:
            raise ValueError(f"crossfade and search must be >= 0, got {crossfade}, {search}")
        if crossfade > block:
            raise ValueError(f"crossfade ({crossfade}) must not exceed the block ({block})")
        self.block, self.crossfade, self.search = block, crossfade, search
        self._window = fade_in(crossfade, kind)
        self._tail = np.zeros(crossfade, dtype=np.float32)
        self.last_offset = search // 2

    @property
    def extra(self) -> int:
        """Samples the caller supplies beyond the block: `crossfade + search`."""
        return self.crossfade + self.search

    @property
    def input_length(self) -> int:
        return self.block + self.extra

    @property
    def delay(self) -> int:
        """Nominal added delay (offset at the centre): `crossfade + search - search // 2`."""
        return self.crossfade + self.search - self.search // 2

    def reset(self) -> None:
        self._tail[:] = 0.0
        self.last_offset = self.search // 2

    def process(self, new: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        new = np.asarray(new, dtype=np.float32)
        if new.shape != (self.input_length,):
            raise ValueError(
                f"SolaSplicer.process needs float32[{self.input_length}] (block {self.block} + "
                f"crossfade {self.crossfade} + search {self.search}), got shape {new.shape}"
            )
        b, c = self.block, self.crossfade
        k = sola_offset(self._tail, new[: c + self.search], center=self.search // 2)
        if out is None:
            out = np.empty(b, dtype=np.float32)
        elif out.shape != (b,):
            raise ValueError(f"out must have shape ({b},), got {out.shape}")
        out[:] = new[k: k + b]
        if c:
            crossfade(self._tail, new[k: k + c], self._window, out=out[:c])
            self._tail[:] = new[k + b: k + b + c]
        self.last_offset = k
        return out
