"""The CoMoSVC denoiser network F (spec §5.2), module `decoder.denoise_fn` in checkpoints.

Non-causal WaveNet: 1x1 input projection, sinusoidal noise-level embedding -> MLP, `n_layers` gated
residual blocks (kernel 3, dilation 1 everywhere), skip sum / sqrt(n_layers), two 1x1 projections.
Each block sees 1 frame on each side, so the receptive field is `n_layers` frames each way.

`right_context` (frames, default None = the official symmetric network) bounds the lookahead: the
first `right_context` blocks keep their (1, 1) padding and the others pad (2, 0) (causal), so the
whole network looks at most `right_context` frames ahead. Only padding changes: the state-dict is
the same. `StreamingWaveNet` runs either kind on chunks with cached state (models/streaming.py).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.streaming import CachedConv1d, DelayLine, Stream, StreamContext, pad_conv1d, split_right


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

    def __init__(self, n_hidden: int, n_chans: int, pads: tuple[int, int] = (1, 1)) -> None:
        super().__init__()
        self.n_chans = n_chans
        self.pads = pads  # (left, right) zero padding of the kernel-3 convolution
        self.dilated_conv = nn.Conv1d(n_chans, 2 * n_chans, 3, padding=1, dilation=1)
        self.diffusion_projection = nn.Linear(n_chans, n_chans)
        self.conditioner_projection = nn.Conv1d(n_hidden, 2 * n_chans, 1)
        self.output_projection = nn.Conv1d(n_chans, 2 * n_chans, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        y = x + self.diffusion_projection(step).unsqueeze(-1)
        y = pad_conv1d(self.dilated_conv, y, self.pads) + self.conditioner_projection(cond)
        return self.gated(x, y)

    def gated(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B,C,T] (aligned with y), y = conv + conditioning [B,2C,T] -> (x_next, skip)."""
        # split, not chunk: static slice sizes export cleanly to ONNX
        gate, filt = torch.split(y, [self.n_chans, self.n_chans], dim=1)
        y = self.output_projection(torch.sigmoid(gate) * torch.tanh(filt))
        residual, skip = torch.split(y, [self.n_chans, self.n_chans], dim=1)
        return (x + residual) / math.sqrt(2.0), skip


class WaveNet(nn.Module):
    """F(x, c_noise, cond): x [B,T,in_dims], c_noise [B], cond [B,T,n_hidden] -> [B,T,in_dims]."""

    def __init__(self, in_dims: int = 80, n_layers: int = 20, n_chans: int = 512, n_hidden: int = 256,
                 right_context: int | None = None) -> None:
        super().__init__()
        if right_context is not None and right_context < 0:
            raise ValueError(f"right_context must be >= 0 frames, got {right_context}")
        self.right_context = right_context
        self.in_dims = in_dims
        self.n_layers = n_layers
        self.n_chans = n_chans
        self.n_hidden = n_hidden
        self.input_projection = _kaiming_conv1d(in_dims, n_chans)
        self.diffusion_embedding = SinusoidalEmbedding(n_chans)
        self.mlp = nn.Sequential(nn.Linear(n_chans, n_chans * 4), Mish(), nn.Linear(n_chans * 4, n_chans))
        pads = [(1, 1) if right_context is None or i < right_context else split_right(2, 0)
                for i in range(n_layers)]
        self.residual_layers = nn.ModuleList([ResidualBlock(n_hidden, n_chans, p) for p in pads])
        self.skip_projection = _kaiming_conv1d(n_chans, n_chans)
        self.output_projection = nn.Conv1d(n_chans, in_dims, 1)
        nn.init.zeros_(self.output_projection.weight)

    @property
    def receptive_field(self) -> tuple[int, int]:
        """(left, right) frames of context each output frame depends on."""
        return (sum(layer.pads[0] for layer in self.residual_layers),
                sum(layer.pads[1] for layer in self.residual_layers))

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


class StreamingWaveNet(nn.Module):
    """`WaveNet` on chunks: forward(x [B,n,in_dims], c_noise [B], cond [B,n,n_hidden], ctx) ->
    [B,n,in_dims] delayed by `delay` = the right receptive field (frames). States: each block's
    convolution input, and delay lines that keep the residual, conditioning and skip paths aligned."""

    def __init__(self, net: WaveNet) -> None:
        super().__init__()
        self.net = net
        stream = Stream(1, 0)
        self.convs, self.cond_delays, self.res_delays, self.skip_delays = (nn.ModuleList() for _ in range(4))
        for i, layer in enumerate(net.residual_layers):
            conv = CachedConv1d(layer.dilated_conv, layer.pads, stream, f"wavenet{i}_conv")
            late = conv.stream_out.delay - stream.delay
            self.convs.append(conv)
            self.cond_delays.append(DelayLine(net.n_hidden, late, f"wavenet{i}_cond"))
            self.res_delays.append(DelayLine(net.n_chans, late, f"wavenet{i}_residual"))
            self.skip_delays.append(DelayLine(net.n_chans, late if i else 0, f"wavenet{i}_skip"))
            stream = conv.stream_out
        self.delay = stream.delay

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: torch.Tensor, ctx: StreamContext) -> torch.Tensor:
        net = self.net
        h = F.relu(net.input_projection(x.transpose(1, 2)))
        cond = cond.transpose(1, 2)
        step = net.mlp(net.diffusion_embedding(c_noise))
        skip_sum = None
        for i, layer in enumerate(net.residual_layers):
            y = h + layer.diffusion_projection(step).unsqueeze(-1)
            cond = self.cond_delays[i](cond, ctx)
            y = self.convs[i](y, ctx) + layer.conditioner_projection(cond)
            h, skip = layer.gated(self.res_delays[i](h, ctx), y)
            skip_sum = skip if skip_sum is None else self.skip_delays[i](skip_sum, ctx) + skip
        h = F.relu(net.skip_projection(skip_sum / math.sqrt(net.n_layers)))
        return net.output_projection(h).transpose(1, 2)
