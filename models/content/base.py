"""The interface every content encoder implements (spec §2).

A content encoder turns mono audio at its `sample_rate` into a sequence of content frames: frame `j`
covers the input samples `[hop*j, hop*j + window)` (ContentVec: 16 kHz, `[320 j, 320 j + 400)`,
50 Hz), so an input of `N` samples gives `T_c = (N - window) // hop + 1` frames (0 when `N < window`).

On a stream, frame `j` covers the stream's samples `[hop*j + offset, hop*j + offset + window)`.
`offset` is 0 for ContentVec; a low-latency encoder on the mel grid (the PPG's "mel" framing) has a
negative offset so that its window *ends* where the mel frame's loudness window ends: its first
frames reach before the stream starts, where the input is zeros (`stream_input` pads them).

`encoder_input` turns the model's 24 kHz audio into that input (resampled when the encoder reads
another rate), for preparation and offline conversion alike. `frame_rate` (hop, sample_rate) is what
aligning content frames to mel frames needs (models/content/align.py), and `labelled_samples` says
which input sample a frame describes, for training it on labels (models/demo/ppg_train.py).
"""
from __future__ import annotations

import abc

import numpy as np
import torch
from torch import nn

from models.audio import SAMPLE_RATE as MODEL_RATE


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

    @property
    def frame_rate(self) -> tuple[int, int]:
        """(hop, sample_rate): content frames per second = sample_rate / hop."""
        return self.hop, self.sample_rate

    def encoder_input(self, wav_24k: np.ndarray) -> np.ndarray:
        """A stream's 24 kHz model audio [N] -> the encoder's input float32 [N']: resampled to
        `sample_rate` (soxr HQ) when that differs, `stream_input`'s zeros in front, zero-padded at
        the end to at least one window (clips shorter than one window give one frame)."""
        import soxr

        x = np.asarray(wav_24k, dtype=np.float32)
        if self.sample_rate != MODEL_RATE:
            x = soxr.resample(x, MODEL_RATE, self.sample_rate, quality="HQ").astype(np.float32)
        x = np.pad(x, (-self.offset, 0))
        return np.pad(x, (0, max(0, self.window - len(x))))

    def labelled_samples(self, frames: np.ndarray) -> np.ndarray:
        """Input sample (fractional) that content frame j describes, for labelling frames [T] -> [T] f64.

        Offset 0 (frames that stand alone, e.g. ContentVec's): the window's centre, hop j + window / 2.
        A stream framing (offset < 0, frame j = mel frame j): the mel frame's own position, stream
        sample hop j, i.e. input sample hop j - offset once `stream_input` has put -offset zeros in
        front (hop j + window - 64 for the PPG's "mel" framing)."""
        anchor = self.window / 2 if self.offset == 0 else -self.offset
        return np.asarray(frames, dtype=np.float64) * self.hop + anchor

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
