"""Vocoder losses: log10-mel L1, multi-resolution STFT, LSGAN adversarial and feature matching."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from models.audio import mel_spectrogram
from models.train.discriminators import RESOLUTIONS


def mel_l1(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """fake, real [B, N] -> mean |mel(fake) - mel(real)| (log10 mels, the acoustic model's)."""
    return F.l1_loss(mel_spectrogram(fake.float()), mel_spectrogram(real.float()))


def multi_resolution_stft(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """fake, real [B, N] -> mean over RESOLUTIONS of spectral convergence + L1 of log magnitudes."""
    total = fake.new_zeros(())
    for n_fft, hop, win in RESOLUTIONS:
        window = torch.hann_window(win, device=fake.device)
        sf = torch.stft(fake.float(), n_fft, hop, win, window, return_complex=True).abs().clamp_min(1e-7)
        sr = torch.stft(real.float(), n_fft, hop, win, window, return_complex=True).abs().clamp_min(1e-7)
        convergence = torch.linalg.norm(sr - sf) / torch.linalg.norm(sr).clamp_min(1e-7)
        total = total + convergence + F.l1_loss(sf.log(), sr.log())
    return total / len(RESOLUTIONS)


def discriminator_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """LSGAN: sum over discriminators of mean (1 - D(real))^2 + mean D(fake)^2."""
    return sum(((1 - r) ** 2).mean() + (f ** 2).mean() for r, f in zip(real, fake))


def generator_adversarial_loss(fake: list[torch.Tensor]) -> torch.Tensor:
    """LSGAN: sum over discriminators of mean (1 - D(fake))^2."""
    return sum(((1 - f) ** 2).mean() for f in fake)


def feature_matching_loss(real_maps: list[list[torch.Tensor]], fake_maps: list[list[torch.Tensor]]) -> torch.Tensor:
    """Sum over discriminators and layers of L1 between feature maps (real ones detached)."""
    return sum(F.l1_loss(f, r.detach()) for rs, fs in zip(real_maps, fake_maps) for r, f in zip(rs, fs))
