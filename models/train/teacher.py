"""The EDM teacher objective (spec §5.4) as a module, so DistributedDataParallel can wrap it.

Ours, off by default (`train.prior_steps`): a first phase that trains the same network by L1
regression at sigma_max, D(sigma_max eps, sigma_max) -> x. That is the point the one-step student
samples from, and there the best denoiser is a plain prediction of the mel from the conditions; by
regression it is learnt in a few hundred CPU steps, while the EDM objective, which visits sigma_max
rarely (ln sigma ~ N(-1.2, 1.2^2)), had not learnt it after 1,800 (docs/demo-voice.md).
"""
from __future__ import annotations

import torch
from torch import nn

from models.audio import normalize_mel
from models.comosvc import CoMoSVC
from models.edm import SIGMA_DATA, SIGMA_MAX

P_MEAN = -1.2
P_STD = 1.2


def edm_weight(sigma: torch.Tensor) -> torch.Tensor:
    """lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2."""
    return (sigma ** 2 + SIGMA_DATA ** 2) / (sigma * SIGMA_DATA) ** 2


class TeacherObjective(nn.Module):
    """batch (units [B,T,C], f0 [B,T], volume [B,T], mel [B,T,80], speaker [B], keyshift [B]) -> loss:
    ln sigma ~ N(-1.2, 1.2^2), loss = mean(lambda(sigma) (D(x + sigma eps, sigma) - x)^2), x = normalised mel.
    With `prior` set: loss = mean |D(sigma_max eps, sigma_max) - x| (the regression phase)."""

    def __init__(self, model: CoMoSVC) -> None:
        super().__init__()
        self.model = model
        self.prior = False

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = normalize_mel(batch["mel"])
        cond = self.model.condition(batch["units"], batch["f0"], batch["volume"], batch["speaker"],
                                    batch["keyshift"])
        if self.prior:
            predicted = self.model.decoder(torch.randn_like(x) * SIGMA_MAX, SIGMA_MAX, cond)
            return (predicted.float() - x.float()).abs().mean()
        sigma = torch.exp(torch.randn(x.shape[0], device=x.device) * P_STD + P_MEAN)
        noisy = x + sigma.reshape(-1, 1, 1) * torch.randn_like(x)
        denoised = self.model.decoder(noisy, sigma, cond)
        # the loss in fp32 also under autocast
        return (edm_weight(sigma).reshape(-1, 1, 1) * (denoised.float() - x.float()) ** 2).mean()
