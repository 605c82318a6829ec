"""The interface every content encoder implements (spec §2).

A content encoder turns mono audio at its `sample_rate` into a sequence of content frames: frame `j`
covers the input samples `[hop*j, hop*j + window)` (ContentVec: 16 kHz, `[320 j, 320 j + 400)`,
50 Hz), so an input of `N` samples gives `T_c = (N - window) // hop + 1` frames (0 when `N < window`).

On a stream, frame `j` covers the stream's samples `[hop*j + offset, hop*j + offset + window)`.
`offset` is 0 for ContentVec; a low-latency encoder on the mel grid (the PPG's "mel" framing) has a
negative offset so that its window *ends* where the mel frame's loudness window ends: its first
frames reach before the stream starts, where the input is zeros (`stream_input` pads them).
"""
from __future__ import annotations

import abc

import torch
from torch import nn


class ContentEncoder(nn.Module, abc.ABC):
    """Base class: `forward(audio [B, N] float, 16 kHz) -> units [B, T_c, C]`.

    Subclasses set `kind` ('contentvec' | 'ppg') and `width` (C) and implement `forward` and
    `receptive_field`.
    """

    kind: str = ""
    width: int = 0
    sample_rate: int = 16000
    hop: int = 320
    window: int = 400
    offset: int = 0

    @property
    @abc.abstractmethod
    def receptive_field(self) -> tuple[int, int] | None:
        """(left, right) context in content frames that output frame `j` depends on beyond its own
        window, or None when unbounded (attention, utterance-level normalisation)."""

    def num_frames(self, n_samples: int) -> int:
        """T_c for an input of `n_samples` 16 kHz samples: `(N - window) // hop + 1`, 0 if N < window."""
        if n_samples < self.window:
            return 0
        return (n_samples - self.window) // self.hop + 1

    def stream_input(self, audio: torch.Tensor) -> torch.Tensor:
        """A stream's audio [B, N] -> the encoder's input [B, N - offset]: `-offset` zeros in front, so
        output frame j is the stream's frame j (see the module docstring)."""
        return torch.nn.functional.pad(audio, (-self.offset, 0)) if self.offset else audio

    def check_audio(self, audio: torch.Tensor) -> None:
        """Raise a clear error for input that is not `[B, N]` float with at least one window.

        Skipped while tracing for ONNX export, where shapes are symbolic."""
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return
        if audio.dim() != 2:
            raise ValueError(f"{type(self).__name__} expects audio [B, N], got shape {tuple(audio.shape)}")
        if not audio.is_floating_point():
            raise ValueError(f"{type(self).__name__} expects float audio, got {audio.dtype}")
        if audio.shape[1] < self.window:
            raise ValueError(
                f"{type(self).__name__} needs at least {self.window} samples (one {self.window}-sample "
                f"window at {self.sample_rate} Hz), got {audio.shape[1]}")

    @abc.abstractmethod
    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """audio [B, N] float at 16 kHz -> units [B, T_c, C]."""
