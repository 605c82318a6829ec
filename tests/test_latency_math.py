"""Latency arithmetic: ms <-> samples rounding, breakdown sums, 44.1 k / 48 k cases."""
from __future__ import annotations

from fractions import Fraction

import pytest

from engine.latency import (LatencyBreakdown, algorithmic_latency, end_to_end, ms_to_samples,
                            rescale, samples_to_ms)


@pytest.mark.parametrize("ms, rate, want", [
    (20, 44100, 882), (20, 48000, 960), (80, 24000, 1920), (2.5, 44100, 110),   # 110.25 -> 110
    (1.5, 44100, 66),                            # 66.15 -> 66
    (0.0625, 8000, 1),                           # exactly half a sample: halves round up
    (2.5, 1000, 3),                              # 2.5 -> 3 (not banker's rounding)
    (0, 48000, 0),
])
def test_ms_to_samples_rounding(ms: float, rate: int, want: int) -> None:
    assert ms_to_samples(ms, rate) == want


def test_ms_to_samples_rejects_negative() -> None:
    with pytest.raises(ValueError):
        ms_to_samples(-1, 48000)


def test_rescale_is_exact() -> None:
    assert rescale(991, 24000, 44100) == Fraction(991 * 147, 80)
    assert rescale(991, 24000, 48000) == 1982


def test_algorithmic_latency_48k_integer_case() -> None:
    # Block 80 ms at 48 kHz, DSP-voice-like core (lookahead 480, pre-roll 32 + 479 grid wait),
    # resamplers 93 samples @24 k (in) and 183 @48 k (out).
    b = algorithmic_latency(device_rate=48000, block=3840, lookahead_24k=480, core_24k=511,
                            resample_in_delay_24k=93, resample_out_delay=183)
    assert (b.block, b.lookahead, b.core) == (3840, 960, 1022)
    assert b.resampling == 186 + 183
    assert b.algorithmic == 3840 + 960 + 1022 + 369
    assert b.total == b.algorithmic                        # no device buffers given yet
    assert b.ms("lookahead") == pytest.approx(20.0)
    assert b.algorithmic_ms == pytest.approx(b.algorithmic / 48.0)


def test_algorithmic_latency_44k1_rounds_once_and_parts_add_up() -> None:
    b = algorithmic_latency(device_rate=44100, block=3528, lookahead_24k=480, crossfade_24k=481,
                            core_24k=511, resample_in_delay_24k=96, resample_out_delay=175)
    exact = 3528 + Fraction(480 + 481 + 511 + 96) * 44100 / 24000 + 175   # = 6584.2
    assert b.algorithmic == 6584 == round(exact)
    assert b.lookahead == 882                                # exactly 882
    assert b.crossfade == 883                                # 883.8375 floored for display
    assert b.core == 938                                     # 938.9625 floored
    assert b.block + b.lookahead + b.crossfade + b.core + b.resampling == b.algorithmic
    assert b.resampling >= 0


def test_halves_round_up_in_total() -> None:
    # 1 sample @24 k = 1.8375 @44.1 k; 2 of them = 3.675; + 0.825 out delay = 4.5 -> 5.
    b = algorithmic_latency(device_rate=44100, block=0, core_24k=2, resample_out_delay=Fraction(33, 40))
    assert b.algorithmic == 5


def test_end_to_end_adds_device_latencies_and_prefill() -> None:
    alg = algorithmic_latency(device_rate=48000, block=960)
    e2e = end_to_end(alg, input_latency_s=0.01, output_latency_s=0.0213, queue_prefill=480)
    assert (e2e.input_buffer, e2e.output_buffer, e2e.compute_margin) == (480, 1022, 480)
    assert e2e.total == 480 + 960 + 480 + 1022
    assert e2e.total_ms == pytest.approx(e2e.total / 48)
    parts = e2e.as_ms()
    assert list(parts)[-2:] == ["algorithmic", "total"]
    assert parts["total"] == pytest.approx(sum(v for k, v in parts.items()
                                               if k not in ("algorithmic", "total")))


def test_breakdown_validation() -> None:
    with pytest.raises(ValueError):
        LatencyBreakdown(rate=0)
    with pytest.raises(ValueError, match="block"):
        LatencyBreakdown(rate=48000, block=-1)
    assert samples_to_ms(441, 44100) == pytest.approx(10.0)
