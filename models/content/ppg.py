"""PPGEncoder: the project's small content encoder with a finite receptive field.

It is trained (elsewhere) to output phone posteriors; a streaming engine can run it on short windows
because every output frame depends on a bounded stretch of audio:

    audio [B, N] -> log-mel front end: Hann-windowed 512-point DFT as a strided conv, same framing
                    as ContentVec (frame j = samples [320 j, 320 j + 400)), power, mel, log
                 -> 1x1 conv to `channels`
                 -> residual blocks: x + GELU(BatchNorm(Conv1d(x, kernel k, dilation d, zero 'same' pad)))
                 -> 1x1 conv to `width` (log_softmax when `posteriors`)   -> units [B, T_c, width]

Chunk exactness: the front end has no padding, so frame j only sees its own 400 samples; each block
adds (k - 1) / 2 * d frames of context on both sides. A window of audio starting at sample
320 (j0 - L) and long enough for frame j1 + R therefore gives frames j0..j1 exactly as on the whole
file (frames nearer the window edges see the zero padding and are discarded by the caller).
BatchNorm must be in eval mode for this (batch statistics are not position-local).
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

N_FFT = 512  # the 400-sample window is zero-padded to 512 points


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

    def __post_init__(self) -> None:
        if len(self.kernels) != len(self.dilations):
            raise ValueError(f"kernels {self.kernels} and dilations {self.dilations} differ in length")
        if any(k % 2 == 0 or k < 1 for k in self.kernels):
            raise ValueError(f"kernels must be odd for symmetric 'same' padding, got {self.kernels}")
        if any(d < 1 for d in self.dilations):
            raise ValueError(f"dilations must be >= 1, got {self.dilations}")
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
        spec = F.conv1d(audio.unsqueeze(1), self.dft, stride=self.hop)  # [B, 2F, T]
        re, im = spec.chunk(2, dim=1)
        power = re * re + im * im
        return torch.log(torch.matmul(self.mel, power) + 1e-6)


class ResBlock(nn.Module):
    """x + GELU(BN(conv(x))), zero 'same' padding. [B, C, T] -> [B, C, T]"""

    def __init__(self, channels: int, kernel: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel, dilation=dilation, padding=(kernel - 1) // 2 * dilation)
        self.norm = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.gelu(self.norm(self.conv(x)))


class PPGEncoder(ContentEncoder):
    """audio [B, N] float 16 kHz -> units [B, T_c, width] (log phone posteriors or a bottleneck)."""

    kind = "ppg"

    def __init__(self, config: PPGConfig = PPGConfig()):
        super().__init__()
        self.config = config
        self.width = config.width
        self.front = LogMelFrontEnd(self.window, self.hop, self.sample_rate, config.n_mels, config.fmin, config.fmax)
        self.input_proj = nn.Conv1d(config.n_mels, config.channels, 1)
        self.blocks = nn.ModuleList(ResBlock(config.channels, k, d) for k, d in zip(config.kernels, config.dilations))
        self.output_proj = nn.Conv1d(config.channels, config.width, 1)

    @property
    def receptive_field(self) -> tuple[int, int]:
        """(left, right) content frames: sum of (k - 1) / 2 * d over the blocks (symmetric)."""
        side = sum((k - 1) // 2 * d for k, d in zip(self.config.kernels, self.config.dilations))
        return side, side

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
