"""On-the-fly augmentation of training crops toward real recordings: speaking-rate / vocal-tract
resampling, room responses, EQ, band limits, noise and gain. Works on 16 kHz numpy crops and
returns the time map the labels need."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.signal as sps
import soundfile as sf
import soxr

from models.demo.corpus import SAMPLE_RATE


def load_room_responses(folder: Path, sample_rate: int = SAMPLE_RATE) -> list[np.ndarray]:
    """Impulse responses at `sample_rate`, mono, starting at their direct-path peak, unit energy."""
    out = []
    for path in sorted(folder.glob("*.wav")):
        ir, rate = sf.read(path, dtype="float32", always_2d=True)
        ir = soxr.resample(ir.mean(axis=1), rate, sample_rate)
        ir = ir[int(np.argmax(np.abs(ir))):][: sample_rate]  # at most 1 s of tail
        out.append((ir / (np.sqrt(np.sum(ir ** 2)) + 1e-9)).astype(np.float32))
    return out


class Augmenter:
    """`warp()` picks a resampling factor; `colour()` applies room, EQ, noise and gain to a crop."""

    def __init__(self, rng: np.random.Generator, room_responses: list[np.ndarray], sample_rate: int = SAMPLE_RATE):
        self.rng = rng
        self.rooms = room_responses  # at `sample_rate`
        self.sample_rate = sample_rate

    def warp_factor(self) -> float:
        """Source samples per output sample: > 1 speeds up and raises formants and pitch together
        (speaking rate jitter + a VTLP-like shift)."""
        return float(self.rng.uniform(0.88, 1.14)) if self.rng.random() < 0.6 else 1.0

    @staticmethod
    def resample(audio: np.ndarray, factor: float, n_out: int) -> np.ndarray:
        """audio read `factor` samples per output sample, linear interpolation -> float32 [n_out]."""
        if factor == 1.0:
            return audio[:n_out]
        pos = np.arange(n_out) * factor
        return np.interp(pos, np.arange(len(audio)), audio).astype(np.float32)

    def colour(self, x: np.ndarray) -> np.ndarray:
        rng = self.rng
        if self.rooms and rng.random() < 0.3:
            ir = self.rooms[rng.integers(len(self.rooms))]
            wet = sps.fftconvolve(x, ir)[: len(x)]
            mix = rng.uniform(0.3, 1.0)
            x = (mix * wet + (1 - mix) * x).astype(np.float32)
        if rng.random() < 0.5:  # EQ: a random peaking/shelving tilt as a first-order pre-/de-emphasis
            a = rng.uniform(-0.6, 0.9)
            x = sps.lfilter([1.0, -a], [1.0], x).astype(np.float32)
        if rng.random() < 0.2:  # band limit (telephone, cheap mics)
            low, high = rng.uniform(60, 300), rng.uniform(3400, 7600)
            sos = sps.butter(4, [low, high], btype="bandpass", fs=self.sample_rate, output="sos")
            x = sps.sosfilt(sos, x).astype(np.float32)
        power = float(np.mean(x ** 2)) + 1e-9
        if rng.random() < 0.5:
            snr = rng.uniform(5, 40)
            noise = rng.standard_normal(len(x)).astype(np.float32)
            if rng.random() < 0.5:  # pink-ish
                noise = sps.lfilter([1.0], [1.0, -0.95], noise).astype(np.float32)
            noise *= np.sqrt(power / (np.mean(noise ** 2) + 1e-9) / 10 ** (snr / 10))
            x = x + noise
        gain = 10 ** (rng.uniform(-15, 10) / 20)
        peak = np.max(np.abs(x)) * gain + 1e-9
        return (x * gain / max(1.0, peak)).astype(np.float32)
