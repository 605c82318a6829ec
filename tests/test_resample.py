"""StreamResampler: exact reported delay, chunking-independent output == one-shot soxr."""
from __future__ import annotations

import math

import numpy as np
import pytest
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.resample import StreamResampler

PAIRS = [(44100, 24000), (48000, 24000), (24000, 48000), (24000, 44100), (48000, 16000)]


def _stream(r: StreamResampler, x: np.ndarray, sizes) -> np.ndarray:
    outs, pos, i = [], 0, 0
    total_in = 0
    while pos < len(x):
        n = sizes[i % len(sizes)]
        chunk = x[pos:pos + n]
        out = r.process(chunk)
        total_in += len(chunk)
        outs.append(out)
        assert sum(len(o) for o in outs) == r.output_count(total_in)   # deterministic count
        pos += n
        i += 1
    return np.concatenate(outs)


@pytest.mark.parametrize("in_rate, out_rate", PAIRS)
def test_impulse_appears_exactly_at_reported_delay(in_rate: int, out_rate: int) -> None:
    r = StreamResampler(in_rate, out_rate)
    g = math.gcd(in_rate, out_rate)
    step = in_rate // g                                    # input index landing on the output grid
    for pos in (0, step * 7, step * 61):
        r.reset()
        x = np.zeros(in_rate // 4, np.float32)
        x[pos] = 1.0
        y = _stream(r, x, [1, 37, 480, 1001])
        want = pos * out_rate // in_rate + r.delay
        assert int(np.argmax(np.abs(y))) == want, (pos, r.delay)
    assert 0 < r.delay < 250                               # a few ms, not soxr's ~900-sample bursts


@pytest.mark.parametrize("in_rate, out_rate", PAIRS)
def test_sine_in_odd_chunks_equals_one_shot(in_rate: int, out_rate: int) -> None:
    t = np.arange(in_rate) / in_rate
    x = (0.6 * np.sin(2 * np.pi * 997 * t) + 0.3 * np.sin(2 * np.pi * 3001 * t)).astype(np.float32)
    r = StreamResampler(in_rate, out_rate)
    y = np.concatenate([_stream(r, x, [7, 333, 1, 4099, 160]), r.flush()])
    ref = soxr.resample(x, in_rate, out_rate, quality=r.quality)
    d = StreamResampler(in_rate, out_rate).delay
    got = y[d:d + len(ref)]
    n = min(len(got), len(ref))
    assert n >= len(ref) - 1
    skip = out_rate // 100                                 # "after the start": 10 ms
    err = got[skip:n] - ref[skip:n]
    snr = 10 * np.log10(np.sum(ref[skip:n] ** 2) / max(np.sum(err ** 2), 1e-30))
    assert snr >= 60.0, snr


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(1, 900), min_size=1, max_size=8))
def test_output_independent_of_chunking(sizes) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(9000).astype(np.float32) * 0.3
    a = _stream(StreamResampler(44100, 24000), x, [9000])
    b = _stream(StreamResampler(44100, 24000), x, sizes)
    np.testing.assert_allclose(a, b, atol=2e-6)


def test_same_rate_is_exact_passthrough() -> None:
    r = StreamResampler(48000, 48000)
    assert r.delay == 0
    x = np.random.default_rng(1).standard_normal(1000).astype(np.float32)
    y = np.concatenate([r.process(x[:123]), r.process(x[123:])])
    np.testing.assert_array_equal(y, x)
    assert len(r.flush()) == 0


def test_stereo_and_errors() -> None:
    r = StreamResampler(48000, 24000, channels=2)
    x = np.zeros((4800, 2), np.float32)
    x[100, 1] = 1.0
    y = r.process(x)
    assert y.shape == (2400, 2)
    assert int(np.argmax(np.abs(y[:, 1]))) == 50 + r.delay and np.abs(y[:, 0]).max() == 0
    with pytest.raises(ValueError, match=r"\[n, 2\]"):
        r.process(np.zeros(10, np.float32))
    with pytest.raises(ValueError, match="quality"):
        StreamResampler(48000, 24000, quality="best")


@pytest.mark.parametrize("in_rate, out_rate, expected", [(48000, 24000, "MQ"), (24000, 48000, "MQ"),
                                                         (44100, 24000, "HQ"), (24000, 44100, "HQ")])
def test_default_quality_is_the_shortest_transparent_one(in_rate: int, out_rate: int, expected: str) -> None:
    """The default is transparent (error >= 80 dB down over the model's band, aliases included) and
    no quality with a shorter delay is."""
    from engine.resample import TRANSPARENT_SNR_DB, measure_reach, resampling_snr_db

    r = StreamResampler(in_rate, out_rate)
    assert r.quality == expected
    assert resampling_snr_db(in_rate, out_rate, r.quality) >= TRANSPARENT_SNR_DB
    shorter = [q for q in ("LQ", "MQ", "HQ", "VHQ") if measure_reach(in_rate, out_rate, q)[0] < r.delay]
    assert shorter and all(resampling_snr_db(in_rate, out_rate, q) < TRANSPARENT_SNR_DB for q in shorter)


def test_snr_measure_catches_aliasing() -> None:
    """LQ's passband ends near 8 kHz, so the 10 kHz band test must fail it: the measure can fail."""
    from engine.resample import TRANSPARENT_SNR_DB, resampling_snr_db

    assert resampling_snr_db(48000, 24000, "LQ") < TRANSPARENT_SNR_DB
