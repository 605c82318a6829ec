"""Gate (hold/release, sustained notes), Gain (smooth), Limiter (hard ceiling, NaN-safe)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from engine.dynamics import Gain, Limiter, NoiseGate, db_to_gain

RATE = 48_000
CEIL = 10 ** (-1 / 20)


def _sine(freq: float, seconds: float, amp: float, rate: int = RATE) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def _chunked(proc, x: np.ndarray, sizes=(480, 17, 1024, 333)) -> np.ndarray:
    outs, pos, i = [], 0, 0
    while pos < len(x):
        n = sizes[i % len(sizes)]
        outs.append(proc(x[pos:pos + n]))
        pos, i = pos + n, i + 1
    return np.concatenate(outs)


# --- gate -------------------------------------------------------------------------------------
@pytest.mark.parametrize("freq", [55.0, 110.0, 440.0, 1760.0])
@pytest.mark.parametrize("hold_ms", [0.0, 300.0])
def test_gate_never_chops_a_sustained_note(freq: float, hold_ms: float) -> None:
    # RMS of the tone is 6 dB above the threshold; even with no hold the gate stays open.
    amp = db_to_gain(-40 + 6) * np.sqrt(2)
    gate = NoiseGate(threshold_db=-40, hold_ms=hold_ms, release_ms=80, attack_ms=2, rate=RATE)
    g = _chunked(gate.gain, _sine(freq, 3.0, amp))
    settle = int(0.05 * RATE)                              # detector window + attack
    assert g[settle:].min() == 1.0


def test_gate_bridges_a_dip_shorter_than_hold() -> None:
    amp = db_to_gain(-30) * np.sqrt(2)
    x = _sine(220, 2.0, amp)
    x[RATE // 2: RATE // 2 + int(0.2 * RATE)] *= 0.01      # a 200 ms dip 40 dB down
    gate = NoiseGate(threshold_db=-50, hold_ms=300, release_ms=80, rate=RATE)
    g = _chunked(gate.gain, x)
    assert g[int(0.05 * RATE):].min() == 1.0


def test_gate_closes_on_silence_after_hold_plus_release() -> None:
    amp = db_to_gain(-20) * np.sqrt(2)
    x = np.concatenate([_sine(220, 1.0, amp), np.zeros(RATE, np.float32)])
    hold, release, window = 0.3, 0.08, 0.02
    gate = NoiseGate(threshold_db=-50, hold_ms=hold * 1000, release_ms=release * 1000, rate=RATE)
    g = _chunked(gate.gain, x)
    stop = RATE
    assert g[stop + int(hold * RATE) - 1] == 1.0           # still fully open during the hold
    closed = stop + int((window + hold + release) * RATE) + 1
    assert np.all(g[closed:] == 0.0)
    ramp = g[stop + int((window + hold) * RATE): closed]
    assert np.all(np.diff(ramp) <= 0) and np.abs(np.diff(g)).max() <= 1 / (0.002 * RATE) + 1e-6


def test_gate_off_is_unity_and_silence_stays_closed() -> None:
    x = np.random.default_rng(0).standard_normal(RATE).astype(np.float32) * 1e-4
    off = NoiseGate(threshold_db=-120, hold_ms=0, release_ms=10, rate=RATE)
    np.testing.assert_array_equal(_chunked(off.process, x), x)
    on = NoiseGate(threshold_db=-60, hold_ms=0, release_ms=10, rate=RATE)   # noise is at -80 dB
    assert np.abs(_chunked(on.process, x)).max() == 0.0


def test_gate_is_chunking_invariant() -> None:
    x = np.concatenate([_sine(150, 0.5, 0.1), np.zeros(RATE // 2, np.float32), _sine(300, 0.5, 0.05)])
    a = NoiseGate(-40, 100, 50, rate=RATE).gain(x)
    b = _chunked(NoiseGate(-40, 100, 50, rate=RATE).gain, x)
    np.testing.assert_allclose(a, b, atol=1e-6)


# --- gain -------------------------------------------------------------------------------------
def test_gain_ramps_without_steps() -> None:
    gain = Gain(0.0, rate=RATE, ramp_ms=20)
    x = np.ones(RATE // 10, np.float32)
    y1 = gain.process(x[:100])
    gain.set_db(-12.0)
    y2 = _chunked(gain.process, x[100:])
    y = np.concatenate([y1, y2])
    steps = np.abs(np.diff(y))
    assert steps.max() <= (1 - db_to_gain(-12)) / (0.02 * RATE) + 1e-6
    assert y[-1] == pytest.approx(db_to_gain(-12), rel=1e-6)
    assert y[100 + int(0.02 * RATE)] == pytest.approx(db_to_gain(-12), rel=1e-6)


def test_unity_gain_is_exact() -> None:
    x = np.random.default_rng(0).standard_normal(100).astype(np.float32)
    np.testing.assert_array_equal(Gain(0.0).process(x), x)


# --- limiter ----------------------------------------------------------------------------------
finite_or_not = st.floats(allow_nan=True, allow_infinity=True, width=32)


@settings(max_examples=300, deadline=None)
@given(x=arrays(np.float32, st.integers(0, 400), elements=finite_or_not),
       lookahead=st.sampled_from([0.0, 0.5, 1.5]), cut=st.integers(1, 400))
def test_limiter_output_never_exceeds_ceiling(x: np.ndarray, lookahead: float, cut: int) -> None:
    lim = Limiter(-1.0, rate=RATE, lookahead_ms=lookahead)
    y = np.concatenate([lim.process(x[:cut]), lim.process(x[cut:])])
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.all(np.isfinite(y))
    assert np.all(np.abs(y.astype(np.float64)) <= CEIL)


def test_limiter_survives_plus_20_dbfs_bursts_and_keeps_quiet_audio_exact() -> None:
    rng = np.random.default_rng(0)
    quiet = _sine(440, 1.0, 0.3)
    x = quiet.copy()
    x[20000:20480] = rng.standard_normal(480).astype(np.float32) * 10.0     # +20 dBFS burst
    lim = Limiter(-1.0, rate=RATE, lookahead_ms=1.5, release_ms=50)
    y = _chunked(lim.process, x)
    assert np.abs(y).max() <= CEIL
    d = lim.delay
    assert d == 72
    # Well before the burst the limiter is transparent (exactly delayed), and it recovers after.
    np.testing.assert_array_equal(y[d:19000], x[:19000 - d])
    after = 20480 + int(0.05 * RATE) + 200
    np.testing.assert_allclose(y[after + d:], x[after:len(x) - d], atol=1e-6)


def test_limiter_nan_and_inf_become_silence() -> None:
    x = np.array([0.5, np.nan, np.inf, -np.inf, 0.5], np.float32)
    y = Limiter(-1.0, rate=RATE, lookahead_ms=0).process(x)
    np.testing.assert_array_equal(y, [0.5, 0.0, 0.0, 0.0, 0.5])


def test_limiter_stereo_linked() -> None:
    x = np.zeros((1000, 2), np.float32)
    x[500] = [4.0, 0.5]
    lim = Limiter(-1.0, rate=RATE, lookahead_ms=1.0, channels=2)
    y = lim.process(x)
    k = 500 + lim.delay
    assert abs(y[k, 0]) <= CEIL and y[k, 1] == pytest.approx(0.5 * y[k, 0] / 4.0, rel=1e-5)
    with pytest.raises(ValueError, match="frames"):
        lim.process(np.zeros(10, np.float32))
