"""models.edm: preconditioning, sigma grids and samplers (spec §5.3, §5.5, §6)."""
from __future__ import annotations

import math

import pytest
import torch

from models.edm import (SIGMA_DATA, SIGMA_MAX, SIGMA_MIN, EDMDecoder, c_in, c_noise, c_out, c_skip,
                        consistency_sample, consistency_sigmas, karras_sigmas, student_sigmas,
                        teacher_sample, teacher_sigmas)
from models.wavenet import WaveNet

SPEC_STUDENT_SIGMAS = [0.002, 0.005245, 0.01224, 0.02605, 0.05153, 0.09593, 0.1698, 0.2877, 0.47, 0.7434,
                       1.143, 1.715, 2.515, 3.617, 5.109, 7.101, 9.723, 13.14, 17.53, 23.12, 30.18, 39.02,
                       49.98, 63.48, 80.0]


def sig4(x: float) -> float:
    return float(f"{x:.4g}")


@pytest.fixture(scope="module")
def decoder() -> EDMDecoder:
    torch.manual_seed(0)
    net = WaveNet(in_dims=80, n_layers=2, n_chans=16, n_hidden=8)
    torch.nn.init.normal_(net.output_projection.weight, std=0.1)  # zero-init would hide F
    return EDMDecoder(net).eval()


def test_boundary_condition(decoder: EDMDecoder) -> None:
    x = torch.randn(2, 30, 80)
    cond = torch.randn(2, 30, 8)
    with torch.no_grad():
        out = decoder(x, torch.full((2,), SIGMA_MIN), cond)
        far = decoder(x, torch.full((2,), 10.0), cond)
    assert torch.equal(out, x)
    assert not torch.allclose(far, x, atol=1e-2)  # F does contribute away from sigma_min


def test_precond_coefficients() -> None:
    s = torch.tensor([SIGMA_MIN, 1.0, SIGMA_MAX], dtype=torch.float64)
    assert c_skip(s)[0] == 1 and c_out(s)[0] == 0
    torch.testing.assert_close(c_skip(s)[1], torch.tensor(0.25 / ((1 - SIGMA_MIN) ** 2 + 0.25), dtype=torch.float64))
    torch.testing.assert_close(c_out(s)[2], torch.tensor((80 - SIGMA_MIN) * 0.5 / math.sqrt(6400.25), dtype=torch.float64))
    torch.testing.assert_close(c_in(s)[1], torch.tensor(1 / math.sqrt(1.25), dtype=torch.float64))
    torch.testing.assert_close(c_noise(s)[2], torch.tensor(math.log(80) / 4, dtype=torch.float64))


def test_decoder_feeds_network_the_preconditioned_inputs() -> None:
    seen = {}

    class Probe(torch.nn.Module):
        def forward(self, x: torch.Tensor, cn: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
            seen.update(x=x, cn=cn, cond=cond)
            return torch.ones_like(x)

    x = torch.randn(2, 5, 80)
    sigma = torch.tensor([0.5, 3.0])
    out = EDMDecoder(Probe())(x, sigma, torch.zeros(2, 5, 8))
    torch.testing.assert_close(seen["x"], x / torch.sqrt(sigma ** 2 + SIGMA_DATA ** 2).view(2, 1, 1))
    torch.testing.assert_close(seen["cn"], torch.log(sigma) / 4)
    s = sigma.view(2, 1, 1)
    torch.testing.assert_close(out, c_skip(s) * x + c_out(s))
    # a scalar sigma is broadcast over the batch
    EDMDecoder(Probe())(x, 2.0, torch.zeros(2, 5, 8))
    assert seen["cn"].shape == (2,)


def test_student_sigmas_match_spec() -> None:
    sig = student_sigmas()
    assert len(sig) == 25
    assert [sig4(s) for s in sig] == [sig4(s) for s in SPEC_STUDENT_SIGMAS]
    assert sig[0] == pytest.approx(SIGMA_MIN) and sig[-1] == pytest.approx(SIGMA_MAX)


def test_teacher_grid_is_off_by_one() -> None:
    t = teacher_sigmas(50)
    assert len(t) == 51 and t[0] == pytest.approx(80) and t[-1] == 0.0
    assert t[-2] == pytest.approx(0.00323, rel=2e-3)  # sigma_min itself is never visited
    assert min(t[:-1]) > SIGMA_MIN
    assert t[:-1] == pytest.approx(karras_sigmas(51)[:-1])  # the first S points of an (S+1)-point grid
    assert teacher_sigmas(1) == [pytest.approx(80.0), 0.0]


def test_consistency_sigmas() -> None:
    assert [sig4(s) for s in consistency_sigmas(2)] == [80, 2.515, 0.002]
    assert [sig4(s) for s in consistency_sigmas(4)] == [80, 17.53, 2.515, 0.1698, 0.002]
    with pytest.raises(ValueError):
        consistency_sigmas(0)


class Counting:
    """A denoiser that always returns `target` and counts its calls."""

    def __init__(self, target: torch.Tensor) -> None:
        self.target, self.calls, self.sigmas = target, 0, []

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.sigmas.append(float(sigma[0]))
        return self.target


@pytest.mark.parametrize("steps", [1, 2, 10])
def test_teacher_euler_with_oracle(steps: int) -> None:
    target = torch.randn(1, 7, 80)
    d = Counting(target)
    out = teacher_sample(d, torch.randn(1, 7, 80), steps)
    assert d.calls == steps  # Euler only: NFE = S
    torch.testing.assert_close(out, target, atol=1e-4, rtol=0)  # last step to sigma 0 lands on D (f32 at 80x scale)
    assert d.sigmas == pytest.approx(teacher_sigmas(steps)[:-1], rel=1e-6)


def test_teacher_transports_noise_to_data_distribution() -> None:
    # for data ~ N(0, sigma_d^2) the ideal denoiser is x * sigma_d^2 / (sigma^2 + sigma_d^2)
    def ideal(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = sigma.view(-1, 1, 1).double()
        return x * SIGMA_DATA ** 2 / (s ** 2 + SIGMA_DATA ** 2)

    noise = torch.randn(4, 500, 80, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = teacher_sample(ideal, noise, steps=50)
    # the denoiser is linear, so Euler is a product of per-step gains (computed here from the formula)
    t = [(80 ** (1 / 7) + i / 50 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7 for i in range(50)] + [0.0]
    gain = t[0] * math.prod(1 + (t[i + 1] - t[i]) * t[i] / (t[i] ** 2 + 0.25) for i in range(50))
    torch.testing.assert_close(out, noise * gain)
    # the exact ODE solution has std sigma_d; 50 Euler steps get within a few percent
    assert out.std().item() == pytest.approx(SIGMA_DATA, rel=0.07)


def test_consistency_one_and_multi_step() -> None:
    target = torch.randn(2, 6, 80)
    d = Counting(target)
    noise = torch.randn(2, 6, 80)
    torch.testing.assert_close(consistency_sample(d, noise, 1), target)
    assert d.calls == 1 and d.sigmas == [SIGMA_MAX]

    seen = []

    def record(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        seen.append((x.clone(), float(sigma[0])))
        return target

    renoise = torch.randn(3, 2, 6, 80)
    consistency_sample(record, noise, 4, renoise=renoise)
    assert [sig4(s) for _, s in seen] == [80, 17.53, 2.515, 0.1698]
    torch.testing.assert_close(seen[0][0], noise * SIGMA_MAX)
    s = seen[2][1]
    torch.testing.assert_close(seen[2][0], target + math.sqrt(s ** 2 - SIGMA_MIN ** 2) * renoise[1])
    with pytest.raises(ValueError, match="renoise"):
        consistency_sample(record, noise, 4, renoise=renoise[:2])


def test_consistency_sampler_is_reproducible(decoder: EDMDecoder) -> None:
    cond = torch.randn(1, 9, 8)
    noise = torch.randn(1, 9, 80)

    def d(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return decoder(x, s, cond)

    with torch.no_grad():
        a = consistency_sample(d, noise, 3, generator=torch.Generator().manual_seed(1))
        b = consistency_sample(d, noise, 3, generator=torch.Generator().manual_seed(1))
        c = consistency_sample(d, noise, 3, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
