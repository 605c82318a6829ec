"""HiFi-GAN / UnivNet discriminators for vocoder training: MPD, MRD, MSD.

Each discriminator maps audio [B, 1, N] to (score [B, L], feature maps list); channel widths scale
with `base` (32 = the published sizes) so small vocoders get small discriminators.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

LRELU = 0.1
PERIODS = (2, 3, 5, 7, 11)
RESOLUTIONS = ((512, 128, 512), (1024, 256, 1024), (256, 64, 256))  # (n_fft, hop, win) at 24 kHz

Output = tuple[torch.Tensor, list[torch.Tensor]]


def _conv_stack(convs: nn.ModuleList, post: nn.Module, x: torch.Tensor) -> Output:
    """LeakyReLU after every conv, then `post`: (score [B, L], every layer's output)."""
    fmaps = []
    for conv in convs:
        x = F.leaky_relu(conv(x), LRELU)
        fmaps.append(x)
    x = post(x)
    fmaps.append(x)
    return x.flatten(1), fmaps


class PeriodDiscriminator(nn.Module):
    """Audio folded into [B, 1, N/p, p] columns, 2-D convolutions along time."""

    def __init__(self, period: int, base: int) -> None:
        super().__init__()
        self.period = period
        chans = [1, base, 4 * base, 16 * base, 32 * base, 32 * base]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(a, b, (5, 1), (3 if i < 4 else 1, 1), padding=(2, 0)))
            for i, (a, b) in enumerate(zip(chans[:-1], chans[1:])))
        self.post = weight_norm(nn.Conv2d(chans[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> Output:
        b, c, n = x.shape
        if n % self.period:
            x = F.pad(x, (0, self.period - n % self.period), mode="reflect")
        x = x.view(b, c, -1, self.period)
        return _conv_stack(self.convs, self.post, x)


class ResolutionDiscriminator(nn.Module):
    """Linear STFT magnitude [B, 1, F, T] of one resolution, 2-D convolutions (UnivNet MRD)."""

    def __init__(self, resolution: tuple[int, int, int], base: int) -> None:
        super().__init__()
        self.n_fft, self.hop, self.win = resolution
        self.register_buffer("window", torch.hann_window(self.win), persistent=False)
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv2d(1, base, (3, 9), padding=(1, 4))),
            *[weight_norm(nn.Conv2d(base, base, (3, 9), stride=(1, 2), padding=(1, 4))) for _ in range(3)],
            weight_norm(nn.Conv2d(base, base, (3, 3), padding=(1, 1))),
        ])
        self.post = weight_norm(nn.Conv2d(base, 1, (3, 3), padding=(1, 1)))

    def forward(self, x: torch.Tensor) -> Output:
        spec = torch.stft(x.squeeze(1).float(), self.n_fft, self.hop, self.win, self.window, return_complex=True)
        x = spec.abs().unsqueeze(1)
        return _conv_stack(self.convs, self.post, x)


class ScaleDiscriminator(nn.Module):
    """1-D strided convolutions on audio average-pooled `downsample` times by 2 (HiFi-GAN MSD)."""

    def __init__(self, downsample: int, base: int) -> None:
        super().__init__()
        self.downsample = downsample
        chans = [1, base // 2 or 1, 2 * base, 8 * base, 8 * base]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv1d(a, b, 15 if i == 0 else 41, 1 if i == 0 else 4, padding=7 if i == 0 else 20))
            for i, (a, b) in enumerate(zip(chans[:-1], chans[1:])))
        self.post = weight_norm(nn.Conv1d(chans[-1], 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> Output:
        for _ in range(self.downsample):
            x = F.avg_pool1d(x, 4, 2, padding=2)
        return _conv_stack(self.convs, self.post, x)


class DiscriminatorSet(nn.Module):
    """Several discriminators as one module: audio [B, 1, N] -> [(score, feature maps)] per discriminator."""

    def __init__(self, nets: list[nn.Module]) -> None:
        super().__init__()
        self.nets = nn.ModuleList(nets)

    def forward(self, audio: torch.Tensor) -> list[Output]:
        return [net(audio) for net in self.nets]


def build_discriminators(kinds: list[str], base: int) -> DiscriminatorSet:
    """The discriminators named in `vocoder_train.discriminators` ('mpd', 'mrd', 'msd')."""
    nets: list[nn.Module] = []
    for kind in kinds:
        if kind == "mpd":
            nets += [PeriodDiscriminator(p, base) for p in PERIODS]
        elif kind == "mrd":
            nets += [ResolutionDiscriminator(r, base) for r in RESOLUTIONS]
        elif kind == "msd":
            nets += [ScaleDiscriminator(d, base) for d in range(3)]
        else:
            raise ValueError(f"unknown discriminator {kind!r}")
    return DiscriminatorSet(nets)
