"""WORLD resynthesis with an independent pitch shift and a vocal-tract-length warp of the spectral
envelope: a new voice on the same phone timings (augmentation for the PPG encoder)."""
from __future__ import annotations

import numpy as np
import pyworld

FRAME_MS = 5.0


def warp_envelope(sp: np.ndarray, alpha: float) -> np.ndarray:
    """Spectral envelope [T, F] with frequencies scaled by `alpha` (> 1: shorter vocal tract)."""
    bins = np.arange(sp.shape[1], dtype=np.float64)
    source = np.clip(bins / alpha, 0, sp.shape[1] - 1)
    return np.stack([np.interp(source, bins, row) for row in sp])


def world_voice(audio: np.ndarray, sample_rate: int, semitones: float, alpha: float) -> np.ndarray:
    """audio float [N] -> float32 [N] with F0 × 2^(semitones/12) and the envelope warped by `alpha`."""
    x = audio.astype(np.float64)
    f0, t = pyworld.dio(x, sample_rate, frame_period=FRAME_MS)
    f0 = pyworld.stonemask(x, f0, t, sample_rate)
    sp = pyworld.cheaptrick(x, f0, t, sample_rate)
    ap = pyworld.d4c(x, f0, t, sample_rate)
    y = pyworld.synthesize(f0 * 2.0 ** (semitones / 12.0), warp_envelope(sp, alpha), ap, sample_rate, FRAME_MS)
    y = np.pad(y, (0, max(0, len(x) - len(y))))[: len(x)]
    peak = np.max(np.abs(y)) + 1e-9
    return (y * min(1.0, 0.95 / peak)).astype(np.float32)
