"""The CoMoSVC denoiser network F (spec §5.2), module `decoder.denoise_fn` in checkpoints.

Non-causal WaveNet: 1x1 input projection, sinusoidal noise-level embedding -> MLP, `n_layers` gated
residual blocks (kernel 3, dilation 1 everywhere), skip sum / sqrt(n_layers), two 1x1 projections.
Each block sees 1 frame on each side, so the receptive field is `n_layers` frames each way.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _kaiming_conv1d(c_in: int, c_out: int, kernel: int = 1) -> nn.Conv1d:
    conv = nn.Conv1d(c_in, c_out, kernel)
    nn.init.kaiming_normal_(conv.weight)
    return conv


class SinusoidalEmbedding(nn.Module):
    """c_noise [B] -> [B, dim]: [sin(c f_i), cos(c f_i)], f_i = exp(-ln(10000) i / (dim/2 - 1))."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        half = dim // 2
        freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000) / (half - 1)))
        self.register_buffer("freqs", freqs, persistent=False)  # not in official checkpoints

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        emb = c.unsqueeze(-1) * self.freqs.to(c.dtype)
        return torch.cat((emb.sin(), emb.cos()), dim=-1)


class Mish(nn.Module):
    """x * tanh(softplus(x)), written out so ONNX gets Softplus/Tanh/Mul (no Mish op needed)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.tanh(F.softplus(x))


class ResidualBlock(nn.Module):
    """x [B,C,T], cond [B,H,T], step [B,C] -> (x_next [B,C,T], skip [B,C,T])."""

    def __init__(self, n_hidden: int, n_chans: int) -> None:
        super().__init__()
        self.n_chans = n_chans
        self.dilated_conv = nn.Conv1d(n_chans, 2 * n_chans, 3, padding=1, dilation=1)
        self.diffusion_projection = nn.Linear(n_chans, n_chans)
        self.conditioner_projection = nn.Conv1d(n_hidden, 2 * n_chans, 1)
        self.output_projection = nn.Conv1d(n_chans, 2 * n_chans, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        y = x + self.diffusion_projection(step).unsqueeze(-1)
        y = self.dilated_conv(y) + self.conditioner_projection(cond)
        # split, not chunk: static slice sizes export cleanly to ONNX
        gate, filt = torch.split(y, [self.n_chans, self.n_chans], dim=1)
        y = self.output_projection(torch.sigmoid(gate) * torch.tanh(filt))
        residual, skip = torch.split(y, [self.n_chans, self.n_chans], dim=1)
        return (x + residual) / math.sqrt(2.0), skip


class WaveNet(nn.Module):
    """F(x, c_noise, cond): x [B,T,in_dims], c_noise [B], cond [B,T,n_hidden] -> [B,T,in_dims]."""

    def __init__(self, in_dims: int = 80, n_layers: int = 20, n_chans: int = 512, n_hidden: int = 256) -> None:
        super().__init__()
        self.in_dims = in_dims
        self.n_layers = n_layers
        self.n_chans = n_chans
        self.n_hidden = n_hidden
        self.input_projection = _kaiming_conv1d(in_dims, n_chans)
        self.diffusion_embedding = SinusoidalEmbedding(n_chans)
        self.mlp = nn.Sequential(nn.Linear(n_chans, n_chans * 4), Mish(), nn.Linear(n_chans * 4, n_chans))
        self.residual_layers = nn.ModuleList([ResidualBlock(n_hidden, n_chans) for _ in range(n_layers)])
        self.skip_projection = _kaiming_conv1d(n_chans, n_chans)
        self.output_projection = nn.Conv1d(n_chans, in_dims, 1)
        nn.init.zeros_(self.output_projection.weight)

    @property
    def receptive_field(self) -> tuple[int, int]:
        """(left, right) frames of context each output frame depends on."""
        return self.n_layers, self.n_layers

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.input_projection(x.transpose(1, 2)))
        cond = cond.transpose(1, 2)
        step = self.mlp(self.diffusion_embedding(c_noise))
        skip_sum = torch.zeros_like(h)
        for layer in self.residual_layers:
            h, skip = layer(h, cond, step)
            skip_sum = skip_sum + skip
        h = F.relu(self.skip_projection(skip_sum / math.sqrt(self.n_layers)))
        return self.output_projection(h).transpose(1, 2)
