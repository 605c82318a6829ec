"""Aligning content frames to 187.5 Hz mel frames (spec §2).

Offline (whole file), the official rule for 50 Hz content (ContentVec's framing) is
`repeat_expand_2d(units, T_mel, mode)`:
- 'nearest' (what the config template sets): `F.interpolate(mode='nearest', size=T_mel)`, i.e. mel
  frame i takes content frame floor(i * T_c / T_mel);
- 'left' (the fallback when the config has no `unit_interpolate_mode`): so-vits' repeat rule, content
  frame j is used for the mel frames i with i < (j + 1) * T_mel / T_c (compared in float32, advancing
  at most one content frame per mel frame).

A streaming engine has no T_c / T_mel of a whole file, so it uses the position-locked rule
`content_index_for_mel_frames`: mel frame i (starting at 24 kHz sample 128 i, time 128 i / 24000 s)
takes content frame floor(i * 128 / 24000 * sample_rate / hop); for ContentVec (hop 320 at 16 kHz)
that is floor(4 i / 15), the 'nearest' rule in the limit T_c / T_mel -> 50 / 187.5 = 4 / 15 (long
files), and it never depends on where a window starts.

An encoder on the mel grid (frame rate `MEL_RATE`, the PPG's "mel" framing) needs no rule: content
frame j *is* mel frame j, offline and streaming alike (`align_units` keeps the first T_mel frames
and ignores `mode`; a content sequence shorter than T_mel repeats its last frame, as the clipped
position-locked rule does).
"""
from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

MEL_RATE = (128, 24000)  # hop, sample rate of the mel frames
CONTENT_RATE = (320, 16000)  # hop, sample rate of ContentVec's content frames (the default everywhere)

IndexLike = TypeVar("IndexLike", int, np.ndarray, torch.Tensor)


def nearest_indices(n_content: int, n_mel: int) -> torch.Tensor:
    """[T_mel] int64: content frame used by each mel frame under F.interpolate(mode='nearest')."""
    # F.interpolate computes floor(i * (T_c / T_mel)) with a float scale; using the same float32
    # product keeps the result identical to the official call for every length.
    scale = torch.tensor(float(n_content), dtype=torch.float32) / n_mel
    idx = torch.floor(torch.arange(n_mel, dtype=torch.float32) * scale).long()
    return idx.clamp_(max=n_content - 1)


def left_indices(n_content: int, n_mel: int) -> torch.Tensor:
    """[T_mel] int64: content frame used by each mel frame under so-vits' 'left' repeat rule."""
    # Boundaries (j + 1) * T_mel / T_c in float32, as the official code computes them.
    bounds = (torch.arange(1, n_content + 1) * n_mel / n_content).to(torch.float32)
    mel = torch.arange(n_mel, dtype=torch.float32)
    if n_mel >= 2 * n_content:
        # Boundaries are ~2 or more apart (float32 rounding cannot close that), so "advance by at most
        # one per mel frame" never lags: the index is the number of boundaries already passed.
        return torch.searchsorted(bounds, mel, right=True).clamp_(max=n_content - 1)
    edges, idx, pos = bounds.tolist(), [], 0  # float32 values, exactly representable as Python floats
    for i in range(n_mel):  # close to or below 1:1, replicate the one-step-at-a-time loop (and its lag)
        if i >= edges[pos] and pos + 1 < n_content:
            pos += 1
        idx.append(pos)
    return torch.tensor(idx, dtype=torch.long)


def is_mel_rate(content_rate: tuple[int, int]) -> bool:
    """Whether content frames at `content_rate` (hop, sample_rate) come at the mel frames' rate."""
    return content_rate[0] * MEL_RATE[1] == MEL_RATE[0] * content_rate[1]


def align_units(units: torch.Tensor, n_mel_frames: int, mode: str = "nearest",
                content_rate: tuple[int, int] = CONTENT_RATE) -> torch.Tensor:
    """units [B, T_c, C] -> [B, T_mel, C] by repeating content frames ('nearest' | 'left'); content at
    the mel rate (`content_rate` = the encoder's (hop, sample_rate)) is taken frame for frame."""
    if units.dim() != 3:
        raise ValueError(f"align_units expects units [B, T_c, C], got shape {tuple(units.shape)}")
    n_content = units.shape[1]
    if n_content == 0 or n_mel_frames < 0:
        raise ValueError(f"cannot align {n_content} content frames to {n_mel_frames} mel frames")
    if mode not in ("nearest", "left"):
        raise ValueError(f"unknown unit interpolation mode {mode!r} (use 'nearest' or 'left')")
    if is_mel_rate(content_rate):
        idx = content_index_for_mel_frames(torch.arange(n_mel_frames), n_content, content_rate)
    elif mode == "nearest":
        idx = nearest_indices(n_content, n_mel_frames)
    else:
        idx = left_indices(n_content, n_mel_frames)
    return units.index_select(1, idx.to(units.device))


def interpolate_nearest(units: torch.Tensor, n_mel_frames: int) -> torch.Tensor:
    """The official call itself, [B, T_c, C] -> [B, T_mel, C] (reference for tests)."""
    return F.interpolate(units.transpose(1, 2), size=n_mel_frames, mode="nearest").transpose(1, 2)


def content_index_for_mel_frames(mel_frame_indices: IndexLike, n_content_frames: int | None = None,
                                 content_rate: tuple[int, int] = CONTENT_RATE) -> IndexLike:
    """Position-locked rule: content frame index floor(i * 128 / 24000 * sample_rate / hop) for each
    absolute mel frame index i, with (hop, sample_rate) = `content_rate` (ContentVec: floor(4 i / 15);
    an encoder on the mel grid: i itself).

    Works on ints, numpy and torch integer arrays (same type back). With `n_content_frames`, the
    result is clipped to [0, n_content_frames - 1] (the end of the available content).
    """
    is_float = (mel_frame_indices.is_floating_point() if isinstance(mel_frame_indices, torch.Tensor)
                else np.issubdtype(np.asarray(mel_frame_indices).dtype, np.floating))
    if is_float:
        raise TypeError("mel frame indices must be integers")
    # exactly, in integers: floor(i * (128 * sample_rate) / (24000 * hop))
    idx = (mel_frame_indices * (MEL_RATE[0] * content_rate[1])) // (MEL_RATE[1] * content_rate[0])
    if n_content_frames is None:
        return idx
    if isinstance(idx, torch.Tensor):
        return idx.clamp(0, n_content_frames - 1)
    if isinstance(idx, np.ndarray):
        return np.clip(idx, 0, n_content_frames - 1)
    return min(max(idx, 0), n_content_frames - 1)
