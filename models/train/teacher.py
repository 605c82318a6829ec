"""The EDM teacher objective (spec §5.4) as a module, so DistributedDataParallel can wrap it."""
from __future__ import annotations

import torch
from torch import nn

from models.audio import normalize_mel
from models.comosvc import CoMoSVC
from models.edm import SIGMA_DATA

P_MEAN = -1.2
P_STD = 1.2


def edm_weight(sigma: torch.Tensor) -> torch.Tensor:
    """lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2."""
    return (sigma ** 2 + SIGMA_DATA ** 2) / (sigma * SIGMA_DATA) ** 2


class TeacherObjective(nn.Module):
    """batch (units [B,T,C], f0 [B,T], volume [B,T], mel [B,T,80], speaker [B], keyshift [B]) -> loss:
    ln sigma ~ N(-1.2, 1.2^2), loss = mean(lambda(sigma) (D(x + sigma eps, sigma) - x)^2), x = normalised mel."""

    def __init__(self, model: CoMoSVC) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = normalize_mel(batch["mel"])
        cond = self.model.condition(batch["units"], batch["f0"], batch["volume"], batch["speaker"],
                                    batch["keyshift"])
        sigma = torch.exp(torch.randn(x.shape[0], device=x.device) * P_STD + P_MEAN)
        noisy = x + sigma.reshape(-1, 1, 1) * torch.randn_like(x)
        denoised = self.model.decoder(noisy, sigma, cond)
        # the loss in fp32 also under autocast
        return (edm_weight(sigma).reshape(-1, 1, 1) * (denoised.float() - x.float()) ** 2).mean()
