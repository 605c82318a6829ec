"""Latency arithmetic for readouts and for the converter's exact delay (pure, no I/O).

Rounding rules (one place, so every front end shows the same numbers):

* A duration in ms becomes samples at a rate by rounding to the nearest sample, halves up
  (`ms_to_samples`). 20 ms at 44.1 kHz = 882, 2.5 ms at 44.1 kHz = 110.25 -> 110.
* A sample count at one rate is expressed at another rate exactly (a `Fraction`) and rounded only
  once, at the end: `algorithmic_latency` sums the exact delays and rounds the total to the
  nearest device sample (halves up). The lookahead/crossfade/core parts are floored for display
  and `resampling` absorbs the difference, so the displayed parts always add up to the total.
* Milliseconds for display are `samples * 1000 / rate`, unrounded.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from fractions import Fraction

from engine.model_audio import MODEL_RATE



def _round_half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


def ms_to_samples(ms: float, rate: int) -> int:
    """Nearest whole number of samples for `ms` at `rate` (halves round up)."""
    if ms < 0 or rate <= 0:
        raise ValueError(f"need ms >= 0 and rate > 0, got ms={ms!r}, rate={rate!r}")
    # Fraction(str(...)) reads 2.5 as 5/2 exactly, so 2.5 ms * 44100 is exactly 110.25.
    return _round_half_up(Fraction(str(float(ms))) * int(rate) / 1000)


def samples_to_ms(samples: float, rate: int) -> float:
    return float(samples) * 1000.0 / float(rate)


def rescale(samples: float | Fraction, from_rate: int, to_rate: int) -> Fraction:
    """`samples` at `from_rate` as an exact (fractional) count at `to_rate`."""
    return Fraction(samples) * int(to_rate) / int(from_rate)


@dataclass(frozen=True)
class LatencyBreakdown:
    """Where the delay comes from, in samples at the device `rate`.

    input_buffer   driver/PortAudio input latency (reported by the stream)
    block          waiting for a full block before converting it
    lookahead      future audio the voice needs (model right context, analysis lookahead)
    crossfade      the overlap in which neighbouring blocks are crossfaded in place
    resampling     resampler filter delays (device -> 24 kHz -> device), plus rounding
    core           any other fixed delay inside the voice core (e.g. synthesis pre-roll)
    output_buffer  driver/PortAudio output latency (reported by the stream)
    compute_margin samples queued ahead of the output to absorb compute jitter (queue prefill)
    """

    rate: int
    input_buffer: int = 0
    block: int = 0
    lookahead: int = 0
    crossfade: int = 0
    resampling: int = 0
    core: int = 0
    output_buffer: int = 0
    compute_margin: int = 0

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError(f"rate must be > 0, got {self.rate!r}")
        for f in fields(self):
            if f.name != "rate" and getattr(self, f.name) < 0:
                raise ValueError(f"{f.name} must be >= 0 samples, got {getattr(self, f.name)!r}")

    @property
    def algorithmic(self) -> int:
        """What the converter itself adds: block + lookahead + crossfade + resampling + core."""
        return self.block + self.lookahead + self.crossfade + self.resampling + self.core

    @property
    def total(self) -> int:
        """End to end: input buffer + algorithmic + compute margin + output buffer."""
        return self.input_buffer + self.algorithmic + self.compute_margin + self.output_buffer

    def ms(self, part: str) -> float:
        """Any field or `algorithmic`/`total` in milliseconds."""
        return samples_to_ms(getattr(self, part), self.rate)

    @property
    def algorithmic_ms(self) -> float:
        return self.ms("algorithmic")

    @property
    def total_ms(self) -> float:
        return self.ms("total")

    def as_ms(self) -> dict[str, float]:
        """Every part and the two sums in ms, in display order."""
        names = [f.name for f in fields(self) if f.name != "rate"] + ["algorithmic", "total"]
        return {name: self.ms(name) for name in names}

    def with_devices(self, input_buffer: int, output_buffer: int,
                     compute_margin: int | None = None) -> "LatencyBreakdown":
        """A copy with the driver-reported buffers (and optionally the queue prefill) filled in."""
        return LatencyBreakdown(
            rate=self.rate, input_buffer=int(input_buffer), block=self.block,
            lookahead=self.lookahead, crossfade=self.crossfade, resampling=self.resampling,
            core=self.core, output_buffer=int(output_buffer),
            compute_margin=self.compute_margin if compute_margin is None else int(compute_margin),
        )


def algorithmic_latency(
    *,
    device_rate: int,
    block: int,
    lookahead_24k: int = 0,
    crossfade_24k: int = 0,
    core_24k: int = 0,
    resample_in_delay_24k: float | Fraction = 0,
    resample_out_delay: float | Fraction = 0,
    model_rate: int = MODEL_RATE,
) -> LatencyBreakdown:
    """The converter's algorithmic latency at the device rate.

    `block` is in device samples; the `*_24k` parts are at the model rate; the input resampler's
    delay is in its output (24 kHz) samples and the output resampler's in its output (device)
    samples. The exact total `block + (lookahead + crossfade + core + in_delay) * dev/24k +
    out_delay` is rounded once (nearest, halves up); lookahead, crossfade and core are floored for
    display and `resampling` takes the remainder, so `algorithmic` equals the rounded total.
    """
    if block < 0 or min(lookahead_24k, crossfade_24k, core_24k) < 0:
        raise ValueError("block and the 24 kHz parts must be >= 0 samples")
    if Fraction(resample_in_delay_24k) < 0 or Fraction(resample_out_delay) < 0:
        raise ValueError("resampler delays must be >= 0")
    look = rescale(lookahead_24k, model_rate, device_rate)
    xfade = rescale(crossfade_24k, model_rate, device_rate)
    core = rescale(core_24k, model_rate, device_rate)
    resamp = rescale(resample_in_delay_24k, model_rate, device_rate) + Fraction(resample_out_delay)
    total = _round_half_up(int(block) + look + xfade + core + resamp)
    # Parts are floored so that their sum never exceeds the rounded total; the remainder
    # (the resamplers plus at most ~2 samples of rounding) is shown as resampling, always >= 0.
    parts = {"lookahead": math.floor(look), "crossfade": math.floor(xfade),
             "core": math.floor(core)}
    resampling = total - int(block) - sum(parts.values())
    return LatencyBreakdown(rate=int(device_rate), block=int(block), resampling=resampling,
                            **parts)


def end_to_end(algorithmic: LatencyBreakdown, input_latency_s: float, output_latency_s: float,
               queue_prefill: int = 0) -> LatencyBreakdown:
    """Add the stream's reported input/output latencies (seconds, as PortAudio reports them) and
    the worker's output-queue prefill (device samples) to an algorithmic breakdown."""
    if input_latency_s < 0 or output_latency_s < 0 or queue_prefill < 0:
        raise ValueError("latencies and prefill must be >= 0")
    rate = algorithmic.rate
    return algorithmic.with_devices(
        input_buffer=ms_to_samples(input_latency_s * 1000.0, rate),
        output_buffer=ms_to_samples(output_latency_s * 1000.0, rate),
        compute_margin=queue_prefill,
    )
