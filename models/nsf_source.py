"""Harmonic-plus-noise excitation of NSF-HiFiGAN (`SourceModuleHnNSF` semantics, spec §8), streamable.

The official source upsamples f0 by repeating each frame `hop` times, builds harmonics `k·f0`
(k = 1..H+1), and takes `sin(2π·cumsum(k·f0/sr))` over the samples, with a random initial phase for
k ≥ 2. Here the initial phase of every harmonic is an input (`phase`, in cycles) and the phase after
the last sample is returned, so consecutive calls continue each sine exactly; the Gaussian noise is an
input too, so the caller owns all randomness.

Phase convention: sample `n` (0-based, over the whole call) has phase
`phase + Σ_{m ≤ n} k·f0[m]/sr` (the official inclusive cumsum), so `phase` is the phase "before the
first sample" and `phase_out` is the phase of the last sample.

Precision: a sample-level float32 cumsum drifts by many cycles over a few seconds. Because f0 is
constant within a frame, the phase is accumulated per frame (T terms instead of T·hop) and then ramped
inside the frame. The per-frame increments are reduced mod 1 and split into parts on a 2^-10 grid, a
2^-20 grid and a tiny remainder: float32 sums of grid values are exact while they stay below 2^14
resp. 2^4, i.e. for T ≤ 32768 frames (~175 s at 24 kHz/128) per call. Inside a frame the per-sample
step is split the same way so that step·j is exact. The phase error stays ~1e-6 cycles (measured
< 1e-5 over 20000 frames against float64), beyond the unavoidable float32 rounding of k·f0/sr itself,
and the ONNX graph (plain float32 CumSum/Round/Floor) matches torch.
"""
from __future__ import annotations

import torch
from torch import nn

_COARSE = 2.0 ** -10  # grid of the first part of each per-frame increment
_FINE = 2.0 ** -20    # grid of the second part
_RAMP = 2.0 ** -16    # grid of the per-sample step inside a frame (exact products for hop ≤ 512)


def _frac(x: torch.Tensor) -> torch.Tensor:
    """x mod 1 in [0, 1] (exact in floating point; 1.0 only for tiny negative x)."""
    return x - torch.floor(x)


def _split(x: torch.Tensor, quantum: float) -> tuple[torch.Tensor, torch.Tensor]:
    """x = on_grid + rest with on_grid a multiple of `quantum` (a power of two) and |rest| ≤ quantum/2."""
    on_grid = torch.round(x * (1.0 / quantum)) * quantum
    return on_grid, x - on_grid


def frame_phases(increments: torch.Tensor, phase: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Phase at the start of each frame and after the last one.

    increments [B, T, K] cycles advanced by each frame, phase [B, K] cycles before frame 0
    -> (start [B, T, K] in [0, 1): phase before the first sample of frame t, end [B, K] in [0, 1)).
    """
    wrapped = increments - torch.round(increments)  # whole cycles do not change a sine
    coarse, rest = _split(wrapped, _COARSE)
    fine, tiny = _split(rest, _FINE)
    start = phase[:, None, :]
    end = phase
    for part in (coarse, fine):
        total = torch.cumsum(part, dim=1)
        # exclusive sum = inclusive - own term; both exact on the grid, so wrapping loses nothing
        start = start + _frac(total - part)
        end = end + _frac(total[:, -1])
    total = torch.cumsum(tiny, dim=1)  # |Σ| ≤ T·2^-21: added unwrapped
    start = start + (total - tiny)
    end = _frac(end + total[:, -1])
    end = torch.where(end >= 1.0, end - 1.0, end)
    return _frac(start), end


def advance_phase(phase: torch.Tensor, f0: torch.Tensor, hop: int, sample_rate: int) -> torch.Tensor:
    """Phase after `f0`'s frames without computing any sine: phase [B, K] cycles, f0 [B, T] Hz
    -> [B, K] in [0, 1). Harmonic k (1-based column k-1) advances k·f0·hop/sr per frame.

    The same float32 operations as `HarmonicSource`, so it returns what `HarmonicSource.forward`
    returns as phase_out for those frames; use it to find the phase at a window start that is not
    the end of the previous call (e.g. when windows overlap by context frames)."""
    k = torch.arange(1, phase.shape[1] + 1, dtype=torch.float64) / sample_rate
    rate = f0[:, :, None] * k.to(f0.dtype)
    return frame_phases(rate * hop, phase)[1]


def sample_phases(f0: torch.Tensor, phase: torch.Tensor, cycles_per_hz: torch.Tensor, ramp: torch.Tensor,
                  hop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The phase of every sample, f0 constant within a frame.

    f0 [B, T] Hz, phase [B, K] cycles before the first sample, cycles_per_hz [K] (harmonic k: k/sr),
    ramp [hop, 1] = 1..hop -> (per-sample phase [B, T, hop, K] in [0, 1], phase after the last sample [B, K])."""
    rate = f0[:, :, None] * cycles_per_hz  # [B, T, K] cycles per sample
    start, end = frame_phases(rate * hop, phase)
    # within the frame, sample j is at rate·(j+1): split rate (mod 1) on a 2^-16 grid so that
    # grid·(j+1) is exact (< 2^22 grid steps) and only a ≤ 2^-17 remainder is rounded
    coarse, rest = _split(rate - torch.round(rate), _RAMP)
    within = _frac(coarse[:, :, None, :] * ramp) + rest[:, :, None, :] * ramp  # [B, T, hop, K]
    return _frac(start[:, :, None, :] + within), end


class HarmonicSource(nn.Module):
    """`SourceModuleHnNSF(sampling_rate, harmonic_num)` with explicit phase and noise.

    forward(f0 [B, T] Hz, phase [B, H+1] cycles, noise [B, T·hop, H+1] standard normal)
      -> (excitation [B, 1, T·hop], phase_out [B, H+1])

    excitation = tanh(l_linear(sines·uv + amp·noise)) with sines = sine_amp·sin(2π·phase_n),
    uv = f0 > voiced_threshold (per frame, repeated over its samples), amp = noise_std where voiced
    and sine_amp/3 where unvoiced — as the official code; its unused noise branch is omitted.
    Parameters: `l_linear` (Linear(H+1 → 1)), the only state-dict entries.
    """

    def __init__(self, sample_rate: int, hop: int, harmonic_num: int = 8, sine_amp: float = 0.1,
                 noise_std: float = 0.003, voiced_threshold: float = 0.0) -> None:
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.hop = int(hop)
        self.n_harmonics = harmonic_num + 1
        self.sine_amp = float(sine_amp)
        self.noise_std = float(noise_std)
        self.voiced_threshold = float(voiced_threshold)
        self.l_linear = nn.Linear(self.n_harmonics, 1)
        # cycles per sample per Hz for each harmonic; one multiply in torch and in ONNX alike
        k = torch.arange(1, self.n_harmonics + 1, dtype=torch.float64) / self.sample_rate
        self.register_buffer("cycles_per_hz", k.float(), persistent=False)
        self.register_buffer("ramp", torch.arange(1, self.hop + 1, dtype=torch.float32)[:, None],
                             persistent=False)  # [hop, 1]: sample j of a frame has advanced j+1 steps

    def phases(self, f0: torch.Tensor, phase: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """f0 [B, T] Hz, phase [B, H+1] -> (per-sample phase [B, T, hop, H+1] in [0, 1], phase_out [B, H+1])."""
        return sample_phases(f0, phase, self.cycles_per_hz, self.ramp, self.hop)

    def forward(self, f0: torch.Tensor, phase: torch.Tensor,
                noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """f0 [B, T], phase [B, H+1], noise [B, T·hop, H+1] -> (excitation [B, 1, T·hop], phase_out [B, H+1])."""
        ph, phase_out = self.phases(f0, phase)
        sines = self.sine_amp * torch.sin((2.0 * torch.pi) * ph)
        uv = (f0 > self.voiced_threshold).to(sines.dtype)[:, :, None, None]  # [B, T, 1, 1]
        amp = uv * self.noise_std + (1.0 - uv) * (self.sine_amp / 3.0)
        batch, n_harm = noise.shape[0], noise.shape[2]
        noise = noise.reshape(batch, -1, self.hop, n_harm)
        mixed = (sines * uv + amp * noise).flatten(1, 2)  # [B, T·hop, K]
        excitation = torch.tanh(self.l_linear(mixed))     # [B, T·hop, 1]
        return excitation.transpose(1, 2), phase_out
