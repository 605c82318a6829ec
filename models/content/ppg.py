"""PPGEncoder: the project's small content encoder with a finite receptive field.

It is trained (elsewhere) to output phone posteriors; a streaming engine can run it on short windows
because every output frame depends on a bounded stretch of audio:

    audio [B, N] -> log-mel front end: Hann-windowed 512-point DFT as a strided conv (frame j =
                    samples [hop j, hop j + window)), power, mel, log
                 -> 1x1 conv to `channels`
                 -> residual blocks: x + GELU(BatchNorm(Conv1d(x, kernel k, dilation d, zero 'same' pad)))
                 -> 1x1 conv to `width` (log_softmax when `posteriors`)   -> units [B, T_c, width]

Chunk exactness: the front end has no padding, so frame j only sees its own 400 samples; each block
adds (k - 1) / 2 * d frames of context on both sides. A window of audio starting at sample
320 (j0 - L) and long enough for frame j1 + R therefore gives frames j0..j1 exactly as on the whole
file (frames nearer the window edges see the zero padding and are discarded by the caller).
BatchNorm must be in eval mode for this (batch statistics are not position-local).

Framing (`PPGConfig.framing`): "contentvec" reads 16 kHz audio in ContentVec's frames (320-sample hop,
400-sample window, 50 Hz), so it can stand in for ContentVec; "mel" reads the 24 kHz model audio on the
mel grid (128-sample hop, 512-sample window ending where mel frame j's loudness window ends, 24 kHz
sample 128 j + 64; `offset` -448), so content frame j *is* mel frame j and needs no audio after it:
no resampler delay and no 20 ms content hop to wait for (the low-latency voices).

`right_context` (content frames; None = symmetric 'same' padding) bounds the lookahead: blocks pad
on the left only once the budget is spent, earlier blocks keep (up to) their symmetric right half.
`StatefulPPG` runs the encoder on chunks of new audio with cached state (models/streaming.py).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import librosa
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.checkpoints import CheckpointError, safe_load
from models.content.base import ContentEncoder
from models.streaming import CachedConv1d, DelayLine, Stream, StreamContext, collect_states, pad_conv1d

N_FFT = 512  # the 400-sample window is zero-padded to 512 points
#: framing name -> (sample_rate, hop, window, offset); see the module docstring
FRAMINGS: dict[str, tuple[int, int, int, int]] = {
    "contentvec": (16000, 320, 400, 0),
    "mel": (24000, 128, 512, 64 - 512),
}


@dataclass(frozen=True)
class PPGConfig:
    """Layer sizes. `kernels` and `dilations` give one residual block each (odd kernels only)."""

    width: int = 40
    channels: int = 256
    kernels: tuple[int, ...] = (3, 3, 3, 3)
    dilations: tuple[int, ...] = (1, 1, 1, 1)
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8000.0
    posteriors: bool = True  # log_softmax over the width (log phone posteriors); False = bottleneck
    right_context: int | None = None  # content frames of lookahead; None = symmetric padding
    framing: str = "contentvec"  # key of FRAMINGS

    def __post_init__(self) -> None:
        if self.framing not in FRAMINGS:
            raise ValueError(f"framing must be one of {sorted(FRAMINGS)}, got {self.framing!r}")
        if self.fmax > FRAMINGS[self.framing][0] / 2:
            raise ValueError(f"fmax {self.fmax} is above the Nyquist frequency of the {self.framing!r} framing")
        if len(self.kernels) != len(self.dilations):
            raise ValueError(f"kernels {self.kernels} and dilations {self.dilations} differ in length")
        if any(k % 2 == 0 or k < 1 for k in self.kernels):
            raise ValueError(f"kernels must be odd for symmetric 'same' padding, got {self.kernels}")
        if any(d < 1 for d in self.dilations):
            raise ValueError(f"dilations must be >= 1, got {self.dilations}")
        if self.right_context is not None and self.right_context < 0:
            raise ValueError(f"right_context must be >= 0, got {self.right_context}")
        if self.width < 1 or self.channels < 1 or self.n_mels < 1:
            raise ValueError(f"width, channels and n_mels must be positive: {self}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PPGConfig:
        """From a checkpoint's 'config' dict; unknown keys are an error (they would be silently lost)."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise CheckpointError(f"PPG config has unknown keys {sorted(unknown)}")
        values = dict(data)
        for name in ("kernels", "dilations"):
            if name in values:
                values[name] = tuple(int(v) for v in values[name])
        return cls(**values)


class LogMelFrontEnd(nn.Module):
    """audio [B, N] -> log-mel [B, n_mels, T_c], frame j from samples [hop j, hop j + window) only."""

    def __init__(self, window: int, hop: int, sample_rate: int, n_mels: int, fmin: float, fmax: float):
        super().__init__()
        n = np.arange(window)
        k = np.arange(N_FFT // 2 + 1)[:, None]
        hann = np.hanning(window + 1)[:-1]  # periodic Hann
        phase = 2 * np.pi * k * n / N_FFT
        basis = np.concatenate([np.cos(phase) * hann, -np.sin(phase) * hann])  # [2F, window]
        mel = librosa.filters.mel(sr=sample_rate, n_fft=N_FFT, n_mels=n_mels, fmin=fmin, fmax=fmax)
        # Fixed (not trained, not saved): rebuilt from the config on load.
        self.register_buffer("dft", torch.tensor(basis, dtype=torch.float32)[:, None, :], persistent=False)
        self.register_buffer("mel", torch.tensor(mel, dtype=torch.float32), persistent=False)
        self.hop = hop

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.log_mel(F.conv1d(audio.unsqueeze(1), self.dft, stride=self.hop))

    def log_mel(self, spec: torch.Tensor) -> torch.Tensor:
        """DFT frames [B, 2F, T] (real parts, then imaginary) -> log-mel [B, n_mels, T]."""
        re, im = spec.chunk(2, dim=1)
        power = re * re + im * im
        return torch.log(torch.matmul(self.mel, power) + 1e-6)


class ResBlock(nn.Module):
    """x + GELU(BN(conv(x))), zero 'same' padding. [B, C, T] -> [B, C, T]"""

    def __init__(self, channels: int, kernel: int, dilation: int, right: int | None = None):
        super().__init__()
        half = (kernel - 1) // 2 * dilation
        self.conv = nn.Conv1d(channels, channels, kernel, dilation=dilation, padding=half)
        self.norm = nn.BatchNorm1d(channels)
        right = half if right is None else min(right, half)
        self.pads = (2 * half - right, right)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.gelu(self.norm(pad_conv1d(self.conv, x, self.pads)))


class PPGEncoder(ContentEncoder):
    """audio [B, N] float 16 kHz -> units [B, T_c, width] (log phone posteriors or a bottleneck)."""

    kind = "ppg"

    def __init__(self, config: PPGConfig = PPGConfig()):
        super().__init__()
        self.config = config
        self.width = config.width
        self.sample_rate, self.hop, self.window, self.offset = FRAMINGS[config.framing]
        self.front = LogMelFrontEnd(self.window, self.hop, self.sample_rate, config.n_mels, config.fmin, config.fmax)
        self.input_proj = nn.Conv1d(config.n_mels, config.channels, 1)
        budget = config.right_context
        self.blocks = nn.ModuleList()
        for k, d in zip(config.kernels, config.dilations):
            self.blocks.append(ResBlock(config.channels, k, d, budget))
            if budget is not None:
                budget -= self.blocks[-1].pads[1]
        self.output_proj = nn.Conv1d(config.channels, config.width, 1)

    @property
    def receptive_field(self) -> tuple[int, int]:
        """(left, right) content frames: the blocks' paddings summed ((k - 1) / 2 * d each side unless
        `right_context` bounds the right)."""
        return sum(b.pads[0] for b in self.blocks), sum(b.pads[1] for b in self.blocks)

    def logits(self, audio: torch.Tensor) -> torch.Tensor:
        """audio [B, N] -> pre-softmax outputs [B, T_c, width] (for training losses)."""
        self.check_audio(audio)
        x = self.input_proj(self.front(audio))
        for block in self.blocks:
            x = block(x)
        return self.output_proj(x).transpose(1, 2)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """audio [B, N] float 16 kHz -> units [B, T_c, width]."""
        y = self.logits(audio)
        return F.log_softmax(y, dim=-1) if self.config.posteriors else y

    def checkpoint(self) -> dict[str, Any]:
        """{'kind': 'ppg', 'config': {...}, 'state_dict': ...}: plain data, loadable with safe_load."""
        config = asdict(self.config)
        config["kernels"], config["dilations"] = list(self.config.kernels), list(self.config.dilations)
        if config["right_context"] is None:
            del config["right_context"]  # checkpoints of symmetric encoders stay as before
        if config["framing"] == "contentvec":
            del config["framing"]        # and so do those in ContentVec's framing
        return {"kind": self.kind, "config": config,
                "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()}}

    def save(self, path: str | os.PathLike) -> None:
        torch.save(self.checkpoint(), path)

    @classmethod
    def from_checkpoint(cls, checkpoint: Mapping[str, Any]) -> PPGEncoder:
        """Inverse of `checkpoint()`. Returns the model in eval mode."""
        if checkpoint.get("kind") != cls.kind:
            raise CheckpointError(f"not a PPG encoder checkpoint (kind={checkpoint.get('kind')!r})")
        if not isinstance(checkpoint.get("config"), Mapping) or not isinstance(checkpoint.get("state_dict"), Mapping):
            raise CheckpointError("PPG checkpoint needs a 'config' dict and a 'state_dict'")
        model = cls(PPGConfig.from_dict(checkpoint["config"]))
        state = checkpoint["state_dict"]
        expected = model.state_dict()
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        if missing or unexpected:
            raise CheckpointError(f"PPG checkpoint does not match its config: missing {missing}, unexpected {unexpected}")
        for key, param in expected.items():
            if tuple(state[key].shape) != tuple(param.shape):
                raise CheckpointError(f"PPG key {key} has shape {tuple(state[key].shape)}, needs {tuple(param.shape)}")
        model.load_state_dict(state, strict=True)
        return model.eval()


def load_ppg(path: str | os.PathLike) -> PPGEncoder:
    """Load a checkpoint written by `PPGEncoder.save`."""
    obj = safe_load(path)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: not a PPG encoder checkpoint")
    return PPGEncoder.from_checkpoint(obj)


class StatefulPPG(nn.Module):
    """`PPGEncoder` on chunks of new audio with cached state (exported as content_stateful.onnx).

    forward(audio [1, hop·n], position [1] int64, *states) -> (units [1, n, width], position + n,
    *new states): the units of content frames position − delay …, where frame j covers the samples
    [hop j, hop j + window) of the encoder's input (as `PPGEncoder` on the whole input). The front
    end is a strided convolution whose window overhangs the hop, so it emits each frame
    ceil((window − hop) / hop) hops late; the blocks add their right padding."""

    def __init__(self, encoder: PPGEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        front = encoder.front
        dft = nn.Conv1d(1, front.dft.shape[0], encoder.window, stride=encoder.hop, bias=False)
        dft.weight = nn.Parameter(front.dft.detach().clone(), requires_grad=False)
        self.front = CachedConv1d(dft, (0, encoder.window - encoder.hop), Stream(encoder.hop, 0), "ppg_front")
        stream = self.front.stream_out
        self.convs, self.residuals = nn.ModuleList(), nn.ModuleList()
        for i, block in enumerate(encoder.blocks):
            conv = CachedConv1d(block.conv, block.pads, stream, f"ppg_block{i}_conv")
            self.convs.append(conv)
            self.residuals.append(DelayLine(encoder.config.channels, conv.stream_out.delay - stream.delay,
                                            f"ppg_block{i}_res"))
            stream = conv.stream_out
        self.delay = stream.delay
        self.state_specs = collect_states(self)

    def forward(self, audio: torch.Tensor, position: torch.Tensor, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        enc = self.encoder
        ctx = StreamContext(position, {spec.name: s for spec, s in zip(self.state_specs, states)})
        x = enc.input_proj(enc.front.log_mel(self.front(audio.unsqueeze(1), ctx)))
        for block, conv, residual in zip(enc.blocks, self.convs, self.residuals):
            x = residual(x, ctx) + F.gelu(block.norm(conv(x, ctx)))
        y = enc.output_proj(x).transpose(1, 2)
        units = F.log_softmax(y, dim=-1) if enc.config.posteriors else y
        return (units, position + audio.shape[1] // enc.hop, *ctx.outputs(self.state_specs))
