"""models.audio against an independent numpy/librosa implementation of spec §1 and §3."""
from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from models.audio import (HOP, N_MELS, SAMPLE_RATE, denormalize_mel, mel_spectrogram, normalize_mel,
                          rms_volume)


def reference_mel(wav: np.ndarray, keyshift: float = 0.0) -> np.ndarray:
    """Spec §1 in float64 numpy: reflect pad, framed periodic-Hann rFFT, slaney mel, log10 clamp. [T, 80]"""
    factor = 2 ** (keyshift / 12)
    n_fft, win = int(np.round(512 * factor)), int(np.round(512 * factor))
    left = (win - 128) // 2
    right = max((win - 128 + 1) // 2, win - len(wav) - left)
    mode = "reflect" if right < len(wav) else "constant"  # spec: zero pad for clips shorter than the pad
    y = np.pad(wav.astype(np.float64), (left, right), mode=mode)
    n = (len(y) - n_fft) // 128 + 1
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)  # periodic Hann
    frames = np.stack([y[128 * i: 128 * i + n_fft] * window for i in range(n)])
    spec = np.fft.rfft(frames, n=n_fft, axis=-1)
    mag = np.sqrt(spec.real ** 2 + spec.imag ** 2 + 1e-9)  # [T, n_fft//2+1]
    if keyshift != 0:
        if mag.shape[1] < 257:
            mag = np.pad(mag, ((0, 0), (0, 257 - mag.shape[1])))
        mag = mag[:, :257] * 512 / win
    basis = librosa.filters.mel(sr=24000, n_fft=512, n_mels=80, fmin=30, fmax=12000).astype(np.float64)
    return np.log10(np.maximum(mag @ basis.T, 1e-5))


@pytest.fixture(scope="module")
def wav() -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(0.5 * SAMPLE_RATE)) / SAMPLE_RATE
    x = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 3100 * t) + 0.05 * rng.standard_normal(len(t))
    return x.astype(np.float32)


def test_constants() -> None:
    assert (SAMPLE_RATE, HOP, N_MELS) == (24000, 128, 80)


def test_mel_matches_reference(wav: np.ndarray) -> None:
    ours = mel_spectrogram(torch.from_numpy(wav)[None])[0].numpy()
    ref = reference_mel(wav)
    assert ours.shape == ref.shape == (len(wav) // 128, 80)
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)


def test_mel_batch_is_per_item(wav: np.ndarray) -> None:
    batch = torch.stack([torch.from_numpy(wav), torch.from_numpy(wav[::-1].copy())])
    out = mel_spectrogram(batch)
    np.testing.assert_allclose(out[1].numpy(), reference_mel(wav[::-1].copy()), atol=1e-4, rtol=0)


@pytest.mark.parametrize("n", [128, 129, 255, 256, 257, 1000, 2047, 24000])
def test_frame_count(n: int) -> None:
    x = torch.randn(1, n) * 0.1
    assert mel_spectrogram(x).shape == (1, n // 128, 80)
    assert rms_volume(x).shape == (1, n // 128)


def test_short_clip_uses_constant_pad() -> None:
    x = np.random.default_rng(1).standard_normal(150).astype(np.float32) * 0.1
    np.testing.assert_allclose(mel_spectrogram(torch.from_numpy(x)[None])[0].numpy(), reference_mel(x), atol=1e-4)
    # shorter than the reflect pad: the official code zero-pads instead of failing
    y = x[:100]
    assert mel_spectrogram(torch.from_numpy(y)[None]).shape == (1, 1, 80)


def test_log_floor() -> None:
    mel = mel_spectrogram(torch.zeros(1, 1024))
    assert torch.allclose(mel, torch.full_like(mel, -5.0))


@pytest.mark.parametrize("k", [3.0, -4.0, 0.5])
def test_keyshift_matches_reference(wav: np.ndarray, k: float) -> None:
    ours = mel_spectrogram(torch.from_numpy(wav)[None], keyshift=k)[0].numpy()
    ref = reference_mel(wav, keyshift=k)
    assert ours.shape == (len(wav) // 128, 80)
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)


def test_keyshift_moves_a_tone_up() -> None:
    t = np.arange(12000) / 24000
    x = torch.from_numpy((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))[None]
    peak = lambda m: int(m[0, 10:-10].mean(0).argmax())  # noqa: E731
    # a longer window at the same sample rate reads the tone at a higher bin
    assert peak(mel_spectrogram(x, keyshift=5)) > peak(mel_spectrogram(x))
    assert peak(mel_spectrogram(x, keyshift=-5)) < peak(mel_spectrogram(x))


def test_rms_volume_matches_reference(wav: np.ndarray) -> None:
    sq = np.pad(wav.astype(np.float64) ** 2, (64, 64), mode="reflect")
    n = len(wav) // 128
    ref = np.sqrt(sq[: n * 128].reshape(n, 128).mean(-1))
    np.testing.assert_allclose(rms_volume(torch.from_numpy(wav)[None])[0].numpy(), ref, rtol=1e-5, atol=1e-7)


def test_rms_volume_of_sine() -> None:
    t = np.arange(24000) / 24000
    x = torch.from_numpy((0.8 * np.sin(2 * np.pi * 375 * t)).astype(np.float32))[None]  # 64 samples/period
    vol = rms_volume(x)[0]
    assert torch.allclose(vol, torch.full_like(vol, 0.8 / np.sqrt(2)), atol=1e-4)


def test_normalisation_round_trip() -> None:
    mel = torch.tensor([-6.0, 1.5, -5.0, 0.0])
    x = normalize_mel(mel)
    assert torch.allclose(x[:2], torch.tensor([-1.0, 1.0]))
    assert abs(x[2].item() - (-0.7333)) < 1e-4
    assert torch.allclose(denormalize_mel(x), mel, atol=1e-6)


def test_bad_input_shape() -> None:
    with pytest.raises(ValueError, match=r"\[B, N\]"):
        mel_spectrogram(torch.zeros(1000))
    with pytest.raises(ValueError, match=r"\[B, N\]"):
        rms_volume(torch.zeros(1, 1, 1000))
