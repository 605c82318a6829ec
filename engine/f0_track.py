"""Streaming F0 and loudness per mel frame (24 kHz, hop 128), computed only for new frames.

F0: WORLD DIO + StoneMask through pyworld (the official CoMoSVC extractor, spec §3). DIO looks at
the signal around each frame (through low-pass filters whose tails are long but tiny), so a frame's
value is final only once `RIGHT_MARGIN` frames of audio after it exist; it then equals the
whole-file value. Measured on a gliding harmonic tone with a rest, every frame tested: with 32
frames of past audio, values matched whole-file DIO to 1e-10 cents in all cases, and voicing
decisions flipped at the onset after the rest in 3 frames with 16 future frames, 1 with 18, none
with 20–28. Hence 20.

Unvoiced frames: the official code interpolates linearly between voiced frames, which needs the
*next* voiced frame (unbounded lookahead). The engine instead holds the last voiced value (causal),
for streaming and whole-file conversion alike, so the two stay identical. Before the first voiced
frame F0 is 0 (the vocoder then plays its noise source).
"""
from __future__ import annotations

import numpy as np
import pyworld

from engine.model_audio import CONTENT_RATE, HOP, MODEL_RATE

LEFT_MARGIN = 32    # frames of past audio DIO sees
RIGHT_MARGIN = 20   # frames of future audio DIO needs before a frame's value is final
F0_FLOOR = 50.0
# FCPE (pitch.onnx): 10 ms frames at 16 kHz centred at 160 k + 80. Its GroupNorm sees the whole
# input, so no window is exact; measured on a synthetic voice: with 20 frames of right context the
# error was ≤ 1.6 cents and 0.6 % voicing flips vs the whole file.
FCPE_HOP = 160
FCPE_CONTEXT = 50          # pitch frames of past audio each call sees (0.5 s)
FCPE_RIGHT_MARGIN = 20     # mel frames (≈107 ms) of future audio before a frame counts as final
FCPE_MIN_SAMPLES = 433
F0_CEIL = 1100.0


def dio_frames(window: np.ndarray, n_frames: int, f0_floor: float = F0_FLOOR, f0_ceil: float = F0_CEIL) -> np.ndarray:
    """Raw DIO+StoneMask F0 (0 = unvoiced) of the first `n_frames` frames of `window`.

    `window` [N] must start exactly on a frame boundary (frame k sits at sample 128 k).
    """
    x = np.ascontiguousarray(window, dtype=np.float64)
    period_ms = 1000.0 * HOP / MODEL_RATE
    f0, times = pyworld.dio(x, MODEL_RATE, f0_floor=f0_floor, f0_ceil=f0_ceil, frame_period=period_ms)
    f0 = pyworld.stonemask(x, f0, times, MODEL_RATE)
    f0 = np.round(f0, 1)  # official 0.1 Hz rounding
    out = np.zeros(n_frames, dtype=np.float32)
    n = min(n_frames, len(f0))
    out[:n] = f0[:n]
    return out


def hold_unvoiced(raw: np.ndarray, last_voiced: float) -> tuple[np.ndarray, float]:
    """Replace unvoiced (0) frames by the last voiced value; returns (held f0, new last voiced)."""
    held = np.empty_like(raw)
    current = float(last_voiced)
    for i, value in enumerate(raw):
        if value > 0:
            current = float(value)
        held[i] = current
    return held, current


def rms_frames(audio: np.ndarray, n_frames: int) -> np.ndarray:
    """Frame RMS (spec §3): frame k = sqrt(mean(x²)) over samples [128k − 64, 128k + 64) of `audio`.

    `audio` [N] starts 64 samples before frame 0 and holds at least `128 n_frames` samples.
    """
    squared = np.square(audio[: n_frames * HOP].astype(np.float64))
    return np.sqrt(squared.reshape(n_frames, HOP).mean(axis=1)).astype(np.float32)


def pitch_frames_to_mel(f0p: np.ndarray, first_k: int, start: int, stop: int) -> np.ndarray:
    """Map FCPE frames (absolute index `first_k + j`, centred at 16 kHz sample 160 k + 80) onto
    mel frames [start, stop) (mel frame i at 16 kHz sample 128 i · 2/3)."""
    position = (np.arange(start, stop) * (HOP * CONTENT_RATE / MODEL_RATE) - FCPE_HOP // 2) / FCPE_HOP - first_k
    position = np.clip(position, 0, len(f0p) - 1)
    left = np.floor(position).astype(int)
    right = np.minimum(left + 1, len(f0p) - 1)
    weight = position - left
    a, b = f0p[left], f0p[right]
    both = (a > 0) & (b > 0)
    nearest = np.where(weight < 0.5, a, b)
    return np.where(both, a + (b - a) * weight, nearest).astype(np.float32)
