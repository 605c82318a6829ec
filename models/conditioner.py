"""The CoMoSVC conditioner (spec §7): per-frame linear embeddings, summed.

cond = unit_embed(units) + f0_embed(ln(1 + f0/700)) + volume_embed(volume)
       [+ spk_embed(speaker)] [+ aug_shift_embed(keyshift / 5)]

Module names are the official top-level keys (`unit_embed`, `f0_embed`, `volume_embed`,
`spk_embed` only when n_spk > 1, `aug_shift_embed` without bias), so `CoMoSVC` inherits this class
rather than nesting it.
"""
from __future__ import annotations

import torch
from torch import nn


class Conditioner(nn.Module):
    """units [B,T,C], f0 [B,T] Hz, volume [B,T] (linear RMS) -> cond [B,T,n_hidden]."""

    def __init__(self, units_dim: int = 768, n_hidden: int = 256, n_spk: int = 1,
                 use_pitch_aug: bool = True) -> None:
        super().__init__()
        if n_spk < 1:
            raise ValueError(f"n_spk must be >= 1, got {n_spk}")
        self.units_dim = units_dim
        self.n_hidden = n_hidden
        self.n_spk = n_spk
        self.unit_embed = nn.Linear(units_dim, n_hidden)
        self.f0_embed = nn.Linear(1, n_hidden)
        self.volume_embed = nn.Linear(1, n_hidden)
        # the official model has no speaker table for a single speaker
        self.spk_embed = nn.Embedding(n_spk, n_hidden) if n_spk > 1 else None
        # only used by training-time key-shift augmentation; kept for checkpoint compatibility
        self.aug_shift_embed = nn.Linear(1, n_hidden, bias=False) if use_pitch_aug else None

    def condition(self, units: torch.Tensor, f0: torch.Tensor, volume: torch.Tensor,
                  speaker: torch.Tensor | None = None,
                  aug_shift: torch.Tensor | None = None) -> torch.Tensor:
        """units [B,T,C], f0 [B,T] Hz, volume [B,T], speaker [B] int64 (ignored when n_spk == 1),
        aug_shift [B] semitones (training only) -> cond [B,T,n_hidden]."""
        if not torch.jit.is_tracing():  # shape checks would only add warnings to a traced graph
            if units.dim() != 3 or units.shape[-1] != self.units_dim:
                raise ValueError(f"units must be [B, T, {self.units_dim}], got {tuple(units.shape)}")
            if f0.dim() != 2 or volume.dim() != 2:
                raise ValueError(f"f0 and volume must be [B, T], got {tuple(f0.shape)} and {tuple(volume.shape)}")
        # same expression as the official code ((1 + f0/700).log(), not log1p) for bit-compatibility
        x = (self.unit_embed(units)
             + self.f0_embed((1 + f0.unsqueeze(-1) / 700).log())
             + self.volume_embed(volume.unsqueeze(-1)))
        if self.spk_embed is not None:
            if speaker is None:
                raise ValueError(f"this model has {self.n_spk} speakers: pass speaker ids [B]")
            x = x + self.spk_embed(speaker.reshape(-1).long()).unsqueeze(1)
        if self.aug_shift_embed is not None and aug_shift is not None:
            x = x + self.aug_shift_embed(aug_shift.reshape(-1, 1, 1).to(x.dtype) / 5)
        return x

    def forward(self, units: torch.Tensor, f0: torch.Tensor, volume: torch.Tensor,
                speaker: torch.Tensor | None = None, aug_shift: torch.Tensor | None = None) -> torch.Tensor:
        return self.condition(units, f0, volume, speaker, aug_shift)
