"""Audio features of CoMoSVC (spec §1, §3): log10 mel spectrogram, RMS volume, mel normalisation.

All functions take batched torch tensors `wav [B, N]` at 24 kHz and return frame-rate features with
`T = N // 128` frames (for N >= 128). Mel frame `i` covers samples `[128 i - 192, 128 i + 320)`,
volume frame `i` covers `[128 i - 64, 128 i + 64)`.
"""
from __future__ import annotations

from functools import lru_cache

import librosa
import torch
import torch.nn.functional as F

SAMPLE_RATE = 24000
HOP = 128
N_FFT = 512
WIN = 512
N_MELS = 80
FMIN = 30.0
FMAX = 12000.0
MEL_CLAMP = 1e-5  # log10 floor -> -5.0
SPEC_MIN = -6.0   # diffusion-space normalisation range (spec §1)
SPEC_MAX = 1.5
FRAME_RATE = SAMPLE_RATE / HOP  # 187.5 frames/s


@lru_cache(maxsize=1)
def _mel_basis_cpu() -> torch.Tensor:
    """Slaney mel filterbank [80, 257] (librosa defaults: slaney scale, slaney area norm), float32."""
    basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX)
    return torch.from_numpy(basis).float()


def mel_basis(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The mel filterbank `[80, 257]` on `device`/`dtype` (built once with librosa, then cached)."""
    return _mel_basis_cpu().to(device=device, dtype=dtype)


@lru_cache(maxsize=32)
def _hann_cpu(win: int) -> torch.Tensor:
    return torch.hann_window(win, periodic=True)


def _check_wav(wav: torch.Tensor, name: str = "wav") -> None:
    if not isinstance(wav, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [B, N], got {type(wav).__name__}")
    if wav.dim() != 2:
        raise ValueError(f"{name} must have shape [B, N], got {tuple(wav.shape)}")
    if not wav.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {wav.dtype}")


def mel_spectrogram(wav: torch.Tensor, keyshift: float = 0.0) -> torch.Tensor:
    """Log10 mel spectrogram exactly as CoMoSVC's training data (spec §1).

    wav: [B, N] at 24 kHz. keyshift: semitones (augmentation; 0 at inference).
    Returns [B, T, 80] with T = N // 128 (N >= 128), values >= -5.
    """
    _check_wav(wav)
    factor = 2.0 ** (keyshift / 12.0)
    n_fft = int(round(N_FFT * factor))
    win = int(round(WIN * factor))
    n = wav.shape[-1]
    pad_left = (win - HOP) // 2
    pad_right = max((win - HOP + 1) // 2, win - n - pad_left)
    # reflect needs the pad to be shorter than the clip; very short clips are zero-padded instead
    mode = "reflect" if pad_right < n else "constant"
    y = F.pad(wav.unsqueeze(1), (pad_left, pad_right), mode=mode).squeeze(1)
    window = _hann_cpu(win).to(device=wav.device, dtype=wav.dtype)
    spec = torch.stft(y, n_fft, hop_length=HOP, win_length=win, window=window, center=False,
                      normalized=False, onesided=True, return_complex=True)
    mag = torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + 1e-9)  # [B, n_fft//2+1, T]
    if keyshift != 0:
        size = N_FFT // 2 + 1
        if mag.shape[1] < size:
            mag = F.pad(mag, (0, 0, 0, size - mag.shape[1]))
        mag = mag[:, :size, :] * (WIN / win)
    mel = torch.matmul(mel_basis(wav.device, wav.dtype), mag)  # [B, 80, T]
    return torch.log10(torch.clamp(mel, min=MEL_CLAMP)).transpose(1, 2)


def normalize_mel(mel: torch.Tensor) -> torch.Tensor:
    """log10 mel -> diffusion space: (mel + 6) / 7.5 * 2 - 1. Any shape."""
    return (mel - SPEC_MIN) / (SPEC_MAX - SPEC_MIN) * 2 - 1


def denormalize_mel(x: torch.Tensor) -> torch.Tensor:
    """Diffusion space -> log10 mel: (x + 1) / 2 * 7.5 - 6. Any shape."""
    return (x + 1) / 2 * (SPEC_MAX - SPEC_MIN) + SPEC_MIN


def rms_volume(wav: torch.Tensor) -> torch.Tensor:
    """Frame RMS (linear amplitude) of `wav [B, N]` -> `[B, N // 128]` (spec §3).

    Squares the signal, reflect-pads 64 | 64, averages non-overlapping 128-sample windows, sqrt.
    """
    _check_wav(wav)
    n_frames = wav.shape[-1] // HOP
    if n_frames == 0:
        return wav.new_zeros(wav.shape[0], 0)
    sq = F.pad((wav ** 2).unsqueeze(1), (HOP // 2, (HOP + 1) // 2), mode="reflect").squeeze(1)
    frames = sq[:, : n_frames * HOP].reshape(wav.shape[0], n_frames, HOP)
    return torch.sqrt(frames.mean(dim=-1))


def n_frames(n_samples: int) -> int:
    """Number of 128-hop frames for `n_samples` 24 kHz samples."""
    return n_samples // HOP
