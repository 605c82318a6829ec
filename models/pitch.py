"""F0 extraction at the model's frame rate (spec §3).

Every extractor maps a 24 kHz mono waveform `wav [N]` (numpy) to `f0 [T]` in Hz, `T = N // 128`,
using the official CoMoSVC post-processing:

1. each native f0 value rounded to 0.1 Hz;
2. resampled to the 128-hop frames by linear interpolation in which values < 0.001 count as NaN
   (NaN results -> 0, i.e. unvoiced);
3. unvoiced frames filled by linear interpolation between voiced frames, edges held at the
   first/last voiced value; all unvoiced -> zeros; exactly one voiced frame -> every frame set to
   f0[0] (an official quirk: f0[0] is 0 unless frame 0 is the voiced one).

`raw()` returns the result of steps 1-2 plus the voiced mask; `__call__` adds step 3 (`fill`).

`YinPitch` ("yin", the low-latency voices) is not the official pipeline: its frames are already the
128-hop frames and it feeds the values the engine computes (`engine.yin_pitch.yin_frames`, no
rounding), and its `fill` holds the last voiced value through unvoiced frames, as the engine does.

Frame times: f0 frame `i` stands for time `128 i / 24000` s (DIO's analysis instants, which the
official resize stretches by (T+1)/T; the same instants are used when mapping FCPE's frames).
"""
from __future__ import annotations

import abc
import pathlib
from typing import Any

import numpy as np
import torch

from models.audio import HOP, SAMPLE_RATE

F0_MIN = 50.0
F0_MAX = 1100.0
FRAME_PERIOD_MS = 1000.0 * HOP / SAMPLE_RATE  # 5.333 ms

FCPE_SAMPLE_RATE = 16000
FCPE_HOP = 160
FCPE_WIN = 1024
FCPE_THRESHOLD = 0.006


# --------------------------------------------------------------------------------------------------
# Post-processing (pure numpy)
# --------------------------------------------------------------------------------------------------

def f0_agreement(f0_out: np.ndarray, f0_in: np.ndarray, voiced_in: np.ndarray) -> tuple[float, float]:
    """(RMSE in cents, Pearson correlation) over frames voiced in the input and in the output."""
    n = min(len(f0_out), len(f0_in))
    mask = (voiced_in[:n] > 0) & (f0_out[:n] > 0) & (f0_in[:n] > 0)
    if mask.sum() < 3:
        return float("nan"), float("nan")
    a, b = f0_out[:n][mask], f0_in[:n][mask]
    cents = 1200 * np.log2(a / b)
    corr = float(np.corrcoef(a, b)[0, 1]) if np.std(a) > 0 and np.std(b) > 0 else float("nan")
    return float(np.sqrt(np.mean(cents ** 2))), corr


def round_f0(f0: np.ndarray) -> np.ndarray:
    """Round every value to 0.1 Hz with Python's `round` (as the official loop does). [L] -> [L] f64."""
    return np.array([round(float(v), 1) for v in np.asarray(f0).ravel()], dtype=np.float64)


def _as_nan_source(f0: np.ndarray) -> np.ndarray:
    source = np.array(f0, dtype=np.float64)
    source[source < 0.001] = np.nan  # unvoiced must not be blended with voiced values
    return source


def resize_f0(f0: np.ndarray, target_len: int) -> np.ndarray:
    """Official NaN-aware linear resize of `f0 [L]` to `[target_len]` (index stretch by L/target_len)."""
    if target_len <= 0:
        return np.zeros(0, dtype=np.float64)
    if len(f0) == 0:
        return np.zeros(target_len, dtype=np.float64)
    source = _as_nan_source(f0)
    x = np.arange(0, len(source) * target_len, len(source)) / target_len
    return np.nan_to_num(np.interp(x, np.arange(0, len(source)), source))


def map_f0_to_times(f0: np.ndarray, src_times: np.ndarray, dst_times: np.ndarray) -> np.ndarray:
    """NaN-aware linear interpolation of `f0 [L]` sampled at `src_times [L]` onto `dst_times [T]` (s).

    Same rule as `resize_f0` (values < 0.001 are NaN, NaN results -> 0), but by time, for extractors
    whose native frames are not DIO's.
    """
    if len(dst_times) == 0:
        return np.zeros(0, dtype=np.float64)
    if len(f0) == 0:
        return np.zeros(len(dst_times), dtype=np.float64)
    return np.nan_to_num(np.interp(dst_times, src_times, _as_nan_source(f0)))


def interpolate_unvoiced(f0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill unvoiced (<= 0) frames of `f0 [T]` the official way. Returns (f0 float32 [T], uv float32 [T])."""
    f0 = np.asarray(f0, dtype=np.float64)
    uv = (f0 > 0.0).astype(np.float32)
    voiced_idx = np.nonzero(f0)[0]
    if len(voiced_idx) == 0:
        return np.zeros(len(f0), dtype=np.float32), uv
    if len(voiced_idx) == 1:  # official quirk: f0[0], not the voiced value
        return np.full(len(f0), f0[0], dtype=np.float32), uv
    values = f0[voiced_idx]
    filled = np.interp(np.arange(len(f0)), voiced_idx, values, left=values[0], right=values[-1])
    return filled.astype(np.float32), uv


def hold_unvoiced(f0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill unvoiced (<= 0) frames of `f0 [T]` with the last voiced value before them (what a stream,
    which cannot look ahead, does); frames before the first voiced one take that first value; all
    unvoiced -> zeros. Returns (f0 float32 [T], uv float32 [T])."""
    f0 = np.asarray(f0, dtype=np.float64)
    voiced = f0 > 0.0
    if not voiced.any():
        return np.zeros(len(f0), dtype=np.float32), voiced.astype(np.float32)
    last = np.maximum.accumulate(np.where(voiced, np.arange(len(f0)), -1))
    last[last < 0] = int(np.argmax(voiced))
    return f0[last].astype(np.float32), voiced.astype(np.float32)


def frame_times(n_frames: int) -> np.ndarray:
    """Time in seconds that f0 frame `i` stands for: `128 i / 24000`. [T] f64."""
    return np.arange(n_frames, dtype=np.float64) * HOP / SAMPLE_RATE


def fcpe_frame_times(n_frames: int) -> np.ndarray:
    """Centre (s) of FCPE frame `j` at 16 kHz: its window starts at `160 j - 432`, so `(160 j + 80) / 16000`."""
    return (np.arange(n_frames, dtype=np.float64) * FCPE_HOP + FCPE_HOP // 2) / FCPE_SAMPLE_RATE


def shift_f0(f0: Any, semitones: float) -> Any:
    """Pitch shift: f0 * 2^(semitones/12). Works on numpy arrays, torch tensors and floats."""
    return f0 * 2.0 ** (semitones / 12.0)


# --------------------------------------------------------------------------------------------------
# Extractors
# --------------------------------------------------------------------------------------------------

def _check_wav(wav_24k: np.ndarray) -> np.ndarray:
    wav = np.asarray(wav_24k)
    if wav.ndim != 1:
        raise ValueError(f"wav_24k must be a mono 1-D array [N], got shape {wav.shape}")
    if not np.issubdtype(wav.dtype, np.floating):
        raise TypeError(f"wav_24k must be floating point in [-1, 1], got {wav.dtype}")
    if not np.all(np.isfinite(wav)):
        raise ValueError("wav_24k contains NaN or inf")
    return wav


class PitchExtractor(abc.ABC):
    """`__call__(wav_24k [N]) -> f0 [N // 128]` Hz, float32, unvoiced frames interpolated (spec §3)."""

    name: str = "?"
    sample_rate: int = SAMPLE_RATE
    hop: int = HOP

    @abc.abstractmethod
    def raw(self, wav_24k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rounded, frame-mapped f0 before unvoiced filling: (f0 float32 [T] with 0 where unvoiced,
        voiced bool [T])."""

    def fill(self, f0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`raw`'s f0 [T] -> (f0 float32 [T] with unvoiced frames filled, uv float32 [T]): the
        official interpolation."""
        return interpolate_unvoiced(f0)

    def __call__(self, wav_24k: np.ndarray) -> np.ndarray:
        f0, _ = self.raw(wav_24k)
        return self.fill(f0)[0]


class DioPitch(PitchExtractor):
    """WORLD DIO + StoneMask, exactly the official extractor (f0 50-1100 Hz, 5.333 ms frames)."""

    name = "dio"

    def __init__(self, f0_min: float = F0_MIN, f0_max: float = F0_MAX) -> None:
        self.f0_min = f0_min
        self.f0_max = f0_max

    def native(self, wav_24k: np.ndarray) -> np.ndarray:
        """DIO + StoneMask f0 at DIO's own frames `[N / 128 + 1]` (Hz, 0 = unvoiced)."""
        import pyworld

        x = _check_wav(wav_24k).astype(np.float64)
        f0, t = pyworld.dio(x, fs=SAMPLE_RATE, f0_floor=self.f0_min, f0_ceil=self.f0_max,
                            frame_period=FRAME_PERIOD_MS)
        return pyworld.stonemask(x, f0, t, SAMPLE_RATE)

    def raw(self, wav_24k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        wav = _check_wav(wav_24k)
        p_len = len(wav) // HOP
        if p_len == 0:
            return np.zeros(0, np.float32), np.zeros(0, bool)
        f0 = resize_f0(round_f0(self.native(wav)), p_len)
        return f0.astype(np.float32), f0 > 0


class FcpePitch(PitchExtractor):
    """FCPE (torchfcpe's bundled model) on 16 kHz audio, mapped onto our 128-hop frames.

    `self.module` is torchfcpe's `InferCFNaiveMelPE` (16 kHz wav `[B, n, 1]` -> f0 `[B, n//160+1, 1]`
    Hz, 0 where unvoiced), for the ONNX exporter to wrap.
    """

    name = "fcpe"

    def __init__(self, device: str = "cpu", threshold: float = FCPE_THRESHOLD,
                 f0_min: float = F0_MIN, f0_max: float = F0_MAX) -> None:
        from models._torchaudio_shim import import_torchfcpe
        from models.checkpoints import safe_load

        torchfcpe = import_torchfcpe()
        from torchfcpe.models_infer import InferCFNaiveMelPE
        from torchfcpe.tools import DotDict

        asset = pathlib.Path(torchfcpe.__file__).parent / "assets" / "fcpe_c_v001.pt"
        ckpt = safe_load(asset)
        config = ckpt["config_dict"]
        # the bundled config has training dropouts; torchfcpe's own loader zeroes them as well
        config["model"]["conv_dropout"] = 0.0
        config["model"]["atten_dropout"] = 0.0
        config["model"].setdefault("use_harmonic_emb", False)
        self.module = InferCFNaiveMelPE(DotDict(config), ckpt["model"]).to(device).eval()
        self.device = device
        self.threshold = threshold
        self.f0_min = f0_min
        self.f0_max = f0_max

    def native(self, wav_24k: np.ndarray) -> np.ndarray:
        """FCPE f0 at its own 10 ms frames `[n16 // 160 + 1]` (Hz, 0 = unvoiced, clamped to f0_max)."""
        import soxr

        wav = _check_wav(wav_24k).astype(np.float32)
        wav16 = soxr.resample(wav, SAMPLE_RATE, FCPE_SAMPLE_RATE, quality="HQ")
        # No clipping: the engine's pitch.onnx sees the audio as it is, and the two must agree
        # (clipping a loud voice changed FCPE's voicing and octave decisions).
        wav16 = wav16.astype(np.float32)
        with torch.inference_mode():
            x = torch.from_numpy(wav16).to(self.device)[None, :, None]
            f0 = self.module(x, sr=FCPE_SAMPLE_RATE, decoder_mode="local_argmax", threshold=self.threshold)
        f0 = np.nan_to_num(f0[0, :, 0].float().cpu().numpy().astype(np.float64))
        f0[f0 < self.f0_min] = 0.0
        return np.minimum(f0, self.f0_max)

    def raw(self, wav_24k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        wav = _check_wav(wav_24k)
        p_len = len(wav) // HOP
        if p_len == 0:
            return np.zeros(0, np.float32), np.zeros(0, bool)
        native = round_f0(self.native(wav))
        f0 = map_f0_to_times(native, fcpe_frame_times(len(native)), frame_times(p_len))
        return f0.astype(np.float32), f0 > 0


class YinPitch(PitchExtractor):
    """Frame-local YIN with no lookahead (`engine.yin_pitch`): frame k reads only the audio up to 24 kHz
    sample 128 k + 64, so a stream knows it as soon as the frame's loudness. The values are the
    engine's own (`yin_frames` on the same samples, bit-identical however the audio is chunked):
    not rounded, and unvoiced frames hold the last voiced value (`fill`), as the engine feeds them."""

    name = "yin"

    def raw(self, wav_24k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from engine.yin_pitch import SPAN, WINDOW_END, yin_frames

        wav = _check_wav(wav_24k)
        p_len = len(wav) // HOP
        if p_len == 0:
            return np.zeros(0, np.float32), np.zeros(0, bool)
        # zeros before the stream's start, so that frame 0's window [64 - SPAN, 64) exists
        padded = np.concatenate([np.zeros(SPAN - WINDOW_END, dtype=wav.dtype), wav])
        f0 = yin_frames(padded, p_len)
        return f0, f0 > 0

    def fill(self, f0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return hold_unvoiced(f0)


EXTRACTORS: dict[str, type[PitchExtractor]] = {"dio": DioPitch, "fcpe": FcpePitch, "yin": YinPitch}


def make_pitch_extractor(name: str, **kwargs: Any) -> PitchExtractor:
    """`'dio'` (official, CPU), `'fcpe'` (neural, more robust on noisy input) or `'yin'` (frame-local,
    no lookahead: the low-latency voices)."""
    key = name.lower()
    if key not in EXTRACTORS:
        raise ValueError(f"unknown pitch extractor {name!r}; choose one of {sorted(EXTRACTORS)}")
    return EXTRACTORS[key](**kwargs)
