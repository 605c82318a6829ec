"""Crossfades for joining blocks of audio.

Why there is no SOLA time search here: engines that re-generate every block independently (RVC,
so-vits, DDSP-SVC) get blocks whose waveforms do not line up, and search for the shift that best
aligns them. CoMo Live's neural voice synthesises every sample at its absolute position (noise and
harmonic phase are position-locked), so the previous block's tail and the new block's head are
already aligned: a search could only add jitter and make the latency vary. The built-in DSP voice
synthesises one continuous stream and has no seams at all.
"""
from __future__ import annotations

from typing import Literal

import numpy as np

FadeKind = Literal["sin2", "linear"]


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
