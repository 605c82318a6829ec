"""EDM preconditioning and the CoMoSVC samplers (spec §5.3, §5.5, §6).

Everything works in the normalised mel space `x [B, T, 80]` (see `models.audio.normalize_mel`).
Samplers take a denoiser `D(x [B,T,M], sigma [B]) -> [B,T,M]` (conditioning already bound) and
explicit noise tensors, so callers control all randomness.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

SIGMA_DATA = 0.5
SIGMA_MIN = 0.002
SIGMA_MAX = 80.0
RHO = 7.0
STUDENT_N = 25  # number of distillation sigmas

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------------------------------
# Preconditioning (Consistency-Models boundary form: D(x, sigma_min) = x), used by teacher and student
# --------------------------------------------------------------------------------------------------

def c_skip(sigma: torch.Tensor) -> torch.Tensor:
    return SIGMA_DATA ** 2 / ((sigma - SIGMA_MIN) ** 2 + SIGMA_DATA ** 2)


def c_out(sigma: torch.Tensor) -> torch.Tensor:
    return (sigma - SIGMA_MIN) * SIGMA_DATA / torch.sqrt(sigma ** 2 + SIGMA_DATA ** 2)


def c_in(sigma: torch.Tensor) -> torch.Tensor:
    return 1 / torch.sqrt(sigma ** 2 + SIGMA_DATA ** 2)


def c_noise(sigma: torch.Tensor) -> torch.Tensor:
    return torch.log(sigma) / 4


class EDMDecoder(nn.Module):
    """D(x, sigma, cond) = c_skip x + c_out F(c_in x, c_noise, cond). Module `decoder` in checkpoints;
    its only weights are `denoise_fn` (the online network F).

    x [B,T,M], sigma scalar or [B], cond [B,T,H] -> [B,T,M].
    """

    def __init__(self, denoise_fn: nn.Module) -> None:
        super().__init__()
        self.denoise_fn = denoise_fn

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, cond: torch.Tensor) -> torch.Tensor:
        if isinstance(sigma, torch.Tensor):
            sigma = sigma.to(dtype=x.dtype)
        else:  # a Python number becomes a constant (also in a traced graph)
            sigma = torch.tensor(float(sigma), dtype=x.dtype, device=x.device)
        if sigma.dim() == 0:
            sigma = sigma.expand(x.shape[0])
        s = sigma.reshape(-1, 1, 1)
        f = self.denoise_fn(c_in(s) * x, c_noise(sigma.reshape(-1)), cond)
        return c_skip(s) * x + c_out(s) * f


# --------------------------------------------------------------------------------------------------
# Sigma grids
# --------------------------------------------------------------------------------------------------

# Grids are plain Python floats (float64): samplers stay free of tensor->Python conversions when traced.

def _karras(u: float) -> float:
    """Karras interpolation at u in [0, 1]: sigma_max at 0, sigma_min at 1."""
    return (SIGMA_MAX ** (1 / RHO) + u * (SIGMA_MIN ** (1 / RHO) - SIGMA_MAX ** (1 / RHO))) ** RHO


def _check_steps(steps: int) -> None:
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")


def karras_sigmas(n: int) -> list[float]:
    """`n` Karras points from sigma_max down to sigma_min inclusive."""
    if n < 2:
        raise ValueError(f"need at least 2 points, got {n}")
    return [_karras(i / (n - 1)) for i in range(n)]


def teacher_sigmas(steps: int) -> list[float]:
    """Official teacher grid (off by one vs. EDM): t_i = Karras at u = i/steps for i < steps, then 0.

    sigma_min itself is never visited. [steps + 1] values.
    """
    _check_steps(steps)
    return [_karras(i / steps) for i in range(steps)] + [0.0]


def student_sigmas() -> list[float]:
    """The 25 distillation sigmas, ascending from sigma_min to sigma_max."""
    return karras_sigmas(STUDENT_N)[::-1]


def consistency_sigmas(steps: int) -> list[float]:
    """Student sampling points: steps + 1 Karras sigmas from 80 down to 0.002."""
    _check_steps(steps)
    return karras_sigmas(steps + 1)


# --------------------------------------------------------------------------------------------------
# Samplers
# --------------------------------------------------------------------------------------------------

def _sigma(x: torch.Tensor, value: float) -> torch.Tensor:
    return torch.full((x.shape[0],), float(value), dtype=x.dtype, device=x.device)


def teacher_sample(denoise: Denoiser, noise: torch.Tensor, steps: int = 50) -> torch.Tensor:
    """Deterministic Euler sampler of the teacher (NFE = steps). noise [B,T,M] standard normal -> x0."""
    sigmas = teacher_sigmas(steps)
    x = noise * sigmas[0]
    for t_cur, t_next in zip(sigmas[:-1], sigmas[1:]):
        d = (x - denoise(x, _sigma(x, t_cur))) / t_cur
        x = x + (t_next - t_cur) * d
    return x


def consistency_sample(denoise: Denoiser, noise: torch.Tensor, steps: int = 1,
                       renoise: torch.Tensor | Sequence[torch.Tensor] | None = None,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Consistency (student) sampler, NFE = steps. noise [B,T,M] standard normal.

    One step: D(80 noise, 80). More steps: for every intermediate Karras sigma s,
    x <- D(x + sqrt(s^2 - sigma_min^2) z, s). `renoise` gives the z's ([steps-1, B,T,M] or a list);
    if None they are drawn from `generator`.
    """
    intermediate = consistency_sigmas(steps)[1:-1]
    if renoise is not None and len(renoise) != len(intermediate):
        raise ValueError(f"{steps} steps need {len(intermediate)} renoise tensors, got {len(renoise)}")
    x = denoise(noise * SIGMA_MAX, _sigma(noise, SIGMA_MAX))
    for k, s in enumerate(intermediate):
        z = renoise[k] if renoise is not None else torch.randn(
            x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = denoise(x + (s ** 2 - SIGMA_MIN ** 2) ** 0.5 * z, _sigma(x, s))
    return x
