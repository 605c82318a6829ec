"""Frame-local F0 with no lookahead: YIN on the audio that ends where each mel frame's RMS window ends.

DIO (the official extractor, engine/f0_track.py) filters the whole signal, so a frame's value is
final only ~107 ms of audio later; that alone puts a low-latency voice out of reach. This
extractor decides every frame from one trailing window and nothing else:

    frame k  (mel frame at 24 kHz sample 128 k)  <-  samples [128 k + 64 - SPAN, 128 k + 64)

(zeros before the stream starts), the same end as the frame's loudness window, so a frame's F0 is
final as soon as its loudness is. Within the window YIN (de Cheveigné & Kawahara 2002) compares the
newest `INTEGRATION` samples with themselves `tau` samples earlier,

    d(tau) = sum_i (x[e - W + i] - x[e - W + i - tau])^2,   e = window end, W = INTEGRATION,

normalises it by its cumulative mean, takes the first dip below `TROUGH_THRESHOLD` (else the
deepest), refines it by a parabola, and calls the frame voiced when that dip is below
`VOICED_THRESHOLD` and the window is not silent. Looking backwards from the window's end (rather
than forwards from its start, as textbook YIN does) keeps the estimate about the newest audio: the
track trails the voice by about W/2 (≈ 11 ms), the same in training and at run time.

Training (models/pitch.py `YinPitch`) and the engine call `yin_frames` on the same samples; each
frame is computed on its own (one FFT per frame, never batched), so the result is bit-identical
however the audio is chunked. librosa.yin is the reference for the values (tests/test_yin_pitch.py);
it is not used here because it has no voicing decision and the runtime does not ship librosa.
"""
from __future__ import annotations

import numpy as np

from engine.model_audio import HOP, MODEL_RATE

F0_MIN = 50.0
F0_MAX = 1100.0
LAG_MIN = int(MODEL_RATE // F0_MAX)            # 21 samples
LAG_MAX = int(np.ceil(MODEL_RATE / F0_MIN))    # 480 samples
INTEGRATION = 512                              # W: samples compared per lag (21.3 ms)
SPAN = INTEGRATION + LAG_MAX                   # 992 samples (41.3 ms) of audio per frame
WINDOW_END = HOP // 2                          # frame k's window ends at 128 k + 64
TROUGH_THRESHOLD = 0.1                         # YIN's absolute threshold (librosa's default)
VOICED_THRESHOLD = 0.3                         # a dip above this is not a period
SILENCE_MEAN_SQUARE = 1e-8                     # −80 dBFS: no pitch in silence
_FFT = 1024                                    # ≥ SPAN: the lags used never wrap around


def lookahead_samples() -> int:
    """24 kHz samples after frame k's position (128 k) that its F0 needs."""
    return WINDOW_END


def yin_frames(audio: np.ndarray, n_frames: int) -> np.ndarray:
    """F0 in Hz (0 = unvoiced) of `n_frames` consecutive mel frames k0, k0 + 1, …, float32 [n_frames].

    `audio` [N] holds the 24 kHz samples from `128 k0 + 64 - SPAN` (the first frame's window
    start; a caller at the start of a stream passes zeros for the samples before it) up to at
    least `128 (k0 + n_frames - 1) + 64`.
    """
    x = np.asarray(audio, dtype=np.float64)
    need = HOP * (n_frames - 1) + SPAN if n_frames else 0
    if len(x) < need:
        raise ValueError(f"yin_frames needs {need} samples for {n_frames} frames, got {len(x)}")
    out = np.zeros(n_frames, dtype=np.float32)
    for j in range(n_frames):
        out[j] = _frame_f0(x[HOP * j: HOP * j + SPAN])
    return out


def _frame_f0(seg: np.ndarray) -> float:
    """YIN over one window [SPAN] (newest sample last) -> F0 Hz or 0."""
    now = seg[LAG_MAX:]                                    # the newest W samples
    energy_now = float(np.dot(now, now))
    if energy_now < SILENCE_MEAN_SQUARE * INTEGRATION:
        return 0.0
    # r(tau) = sum_i now[i] * seg[LAG_MAX + i - tau], for tau = 0..LAG_MAX
    spectrum = np.fft.rfft(seg[::-1], _FFT) * np.fft.rfft(now[::-1], _FFT).conj()
    corr = np.fft.irfft(spectrum, _FFT)[: LAG_MAX + 1]
    squares = np.concatenate([[0.0], np.cumsum(seg * seg)])
    # energy of seg[LAG_MAX - tau : LAG_MAX - tau + W]
    starts = LAG_MAX - np.arange(LAG_MAX + 1)
    energy_lag = squares[starts + INTEGRATION] - squares[starts]
    diff = np.maximum(energy_now + energy_lag - 2.0 * corr, 0.0)
    cumulative = np.cumsum(diff[1:])
    cmndf = np.ones(LAG_MAX + 1)
    cmndf[1:] = diff[1:] * np.arange(1, LAG_MAX + 1) / np.maximum(cumulative, 1e-30)
    search = cmndf[LAG_MIN: LAG_MAX + 1]
    below = np.flatnonzero(search < TROUGH_THRESHOLD)
    if len(below):
        i = int(below[0])
        while i + 1 < len(search) and search[i + 1] < search[i]:
            i += 1                                          # walk down to the dip's bottom
    else:
        i = int(np.argmin(search))
    tau = LAG_MIN + i
    if cmndf[tau] > VOICED_THRESHOLD:
        return 0.0
    shift = 0.0
    if LAG_MIN < tau < LAG_MAX:
        a, b, c = cmndf[tau - 1], cmndf[tau], cmndf[tau + 1]
        curvature = a - 2.0 * b + c
        if curvature > 0:
            shift = float(np.clip(0.5 * (a - c) / curvature, -0.5, 0.5))
    f0 = MODEL_RATE / (tau + shift)
    return float(f0) if F0_MIN <= f0 <= F0_MAX else 0.0
