"""Consistency distillation of the one-step student (spec §6).

The student CoMoSVC holds the online denoiser `decoder.denoise_fn` (θ, the only trained weights),
plus `denoise_fn_ema` (target θ⁻) and `denoise_fn_pretrained` (frozen teacher φ), which are written
into the student checkpoint under the official names (`student_state`).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from models.audio import normalize_mel
from models.comosvc import CoMoSVC
from models.edm import EDMDecoder, student_sigmas


class DistillObjective(nn.Module):
    """batch -> loss_scale · mean((D_θ(x_{n+1}, t_{n+1}) - D_θ⁻(x̂_n, t_n))^2), with x̂_n one Euler step
    of the teacher φ from x_{n+1} = x + t_{n+1} z, n ~ U{1..24} (index 0 of [0, s_1..s_25] never used)."""

    def __init__(self, student: CoMoSVC, loss_scale: float) -> None:
        super().__init__()
        self.model = student
        self.ema = EDMDecoder(copy.deepcopy(student.decoder.denoise_fn))
        self.teacher = EDMDecoder(copy.deepcopy(student.decoder.denoise_fn))
        for p in [*self.ema.parameters(), *self.teacher.parameters()]:
            p.requires_grad_(False)
        for name, p in self.model.named_parameters():  # only the online denoiser learns
            p.requires_grad_(name.startswith("decoder.denoise_fn."))
        self.register_buffer("t_steps", torch.tensor([0.0, *student_sigmas()]), persistent=False)
        self.loss_scale = loss_scale

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = normalize_mel(batch["mel"])
        with torch.no_grad():
            cond = self.model.condition(batch["units"], batch["f0"], batch["volume"], batch["speaker"],
                                        batch["keyshift"])
        n = torch.randint(1, len(self.t_steps) - 1, (x.shape[0],), device=x.device)
        t_next = self.t_steps[n + 1].to(x.dtype)
        t_cur = self.t_steps[n].to(x.dtype)
        x_next = x + t_next.reshape(-1, 1, 1) * torch.randn_like(x)
        online = self.model.decoder(x_next, t_next, cond)
        with torch.no_grad():
            d = (x_next - self.teacher(x_next, t_next, cond)) / t_next.reshape(-1, 1, 1)
            x_cur = x_next + (t_cur - t_next).reshape(-1, 1, 1) * d
            target = self.ema(x_cur, t_cur, cond)
        return self.loss_scale * ((online.float() - target.float()) ** 2).mean()  # fp32 also under autocast

    @torch.no_grad()
    def update_ema(self, mu: float) -> None:
        """θ⁻ <- mu θ⁻ + (1 - mu) θ."""
        for target, online in zip(self.ema.denoise_fn.parameters(), self.model.decoder.denoise_fn.parameters()):
            target.mul_(mu).add_(online.detach(), alpha=1 - mu)

    def student_state(self) -> dict[str, torch.Tensor]:
        """The official student state dict: model + decoder.denoise_fn_ema.* + decoder.denoise_fn_pretrained.*."""
        state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        for prefix, net in (("decoder.denoise_fn_ema.", self.ema.denoise_fn),
                            ("decoder.denoise_fn_pretrained.", self.teacher.denoise_fn)):
            state.update({prefix + k: v.detach().clone() for k, v in net.state_dict().items()})
        return state

    def load_student_state(self, state: dict[str, torch.Tensor]) -> None:
        """Inverse of `student_state` (resume)."""
        split = {"decoder.denoise_fn_ema.": {}, "decoder.denoise_fn_pretrained.": {}}
        own = {}
        for key, value in state.items():
            prefix = next((p for p in split if key.startswith(p)), None)
            if prefix is None:
                own[key] = value
            else:
                split[prefix][key[len(prefix):]] = value
        self.model.load_state_dict(own, strict=True)
        self.ema.denoise_fn.load_state_dict(split["decoder.denoise_fn_ema."], strict=True)
        self.teacher.denoise_fn.load_state_dict(split["decoder.denoise_fn_pretrained."], strict=True)
