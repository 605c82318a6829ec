"""Crossfade and constant-latency SOLA: fixed output length, exact joins, bounded offsets."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.splice import SolaSplicer, crossfade, fade_in, sola_offset


@pytest.mark.parametrize("kind", ["sin2", "linear"])
@pytest.mark.parametrize("n", [1, 2, 17, 480])
def test_fade_curves_are_complementary(kind: str, n: int) -> None:
    w = fade_in(n, kind)
    assert w.dtype == np.float32 and w.shape == (n,)
    assert np.all(np.diff(w) >= 0) and 0 < w[0] <= 0.5 <= w[-1] < 1
    np.testing.assert_allclose(w + w[::-1], 1.0, atol=1e-6)


@settings(max_examples=100, deadline=None)
@given(level=st.floats(-4, 4, allow_nan=False, width=32), n=st.integers(1, 500))
def test_crossfade_of_constants_stays_constant(level: float, n: int) -> None:
    a = np.full(n, level, np.float32)
    out = crossfade(a, a.copy(), fade_in(n))
    np.testing.assert_array_equal(out, a)                 # exact, not just close


def test_crossfade_goes_from_a_to_b() -> None:
    w = fade_in(100)
    out = crossfade(np.zeros(100, np.float32), np.ones(100, np.float32), w)
    np.testing.assert_allclose(out, w)
    with pytest.raises(ValueError, match="one length"):
        crossfade(np.zeros(3), np.zeros(4), np.zeros(3))


@settings(max_examples=200, deadline=None)
@given(c=st.integers(1, 64), w=st.integers(0, 64), seed=st.integers(0, 2**32 - 1),
       silent=st.booleans())
def test_offset_within_bounds(c: int, w: int, seed: int, silent: bool) -> None:
    rng = np.random.default_rng(seed)
    ref = np.zeros(c) if silent else rng.standard_normal(c)
    k = sola_offset(ref, rng.standard_normal(c + w))
    assert 0 <= k <= w
    if silent:
        assert k == w // 2                                 # no information: keep the centre


@settings(max_examples=200, deadline=None)
@given(c=st.integers(2, 64), w=st.integers(1, 64), k=st.data(), seed=st.integers(0, 2**32 - 1))
def test_offset_finds_a_hidden_copy(c: int, w: int, k, seed: int) -> None:
    true_k = k.draw(st.integers(0, w))
    region = np.random.default_rng(seed).standard_normal(c + w)
    assert sola_offset(region[true_k:true_k + c] * 3.0, region) == true_k   # NCC: scale-free


def _stream(signal: np.ndarray, sp: SolaSplicer, blocks: int, jitter=None) -> np.ndarray:
    """Feed `new_b = signal[b*B : b*B + B + C + W]` (optionally distorted) and concatenate."""
    outs = []
    for b in range(blocks):
        new = signal[b * sp.block: b * sp.block + sp.input_length].copy()
        if jitter is not None:
            new = jitter(b, new)
        out = sp.process(new)
        assert out.shape == (sp.block,)                    # fixed output count per call
        assert 0 <= sp.last_offset <= sp.search
        outs.append(out)
    return np.concatenate(outs)


@settings(max_examples=60, deadline=None)
@given(block=st.integers(8, 300), cf=st.integers(1, 8), search=st.integers(0, 40),
       seed=st.integers(0, 2**32 - 1), kind=st.sampled_from(["noise", "sine"]))
def test_identical_signals_splice_with_zero_error(block, cf, search, seed, kind) -> None:
    cf = min(cf * 8, block)
    n = block * 12 + cf + search
    rng = np.random.default_rng(seed)
    if kind == "noise":
        sig = rng.standard_normal(n).astype(np.float32)
    else:
        t = np.arange(n)
        sig = np.sin(2 * np.pi * rng.uniform(0.002, 0.2) * t + rng.uniform(0, 6)).astype(np.float32)
    sp = SolaSplicer(block, cf, search)
    out = _stream(sig, sp, 12)
    k = search // 2                                        # first block: centre, then no reason to move
    # After the first block (which fades in from silence) the output is the signal itself.
    np.testing.assert_allclose(out[block:], sig[block + k: 12 * block + k], atol=2e-5)
    assert sp.delay == cf + search - search // 2


def test_search_realigns_a_shifted_block_without_drift() -> None:
    """Blocks whose content is shifted by up to +-3 samples get realigned; the offset stays in
    [0, W] and the output length is exactly B per call however long it runs."""
    block, cf, search = 240, 120, 16
    t = np.arange(block * 60 + cf + search + 8)
    sig = np.sin(2 * np.pi * 180 / 24000 * t).astype(np.float32)
    rng = np.random.default_rng(0)
    shifts = rng.integers(-3, 4, size=60)
    def jitter(b, new):                                    # new_b is shifted by shifts[b] samples
        s = 4 + shifts[b]
        return sig[b * block + s: b * block + s + block + cf + search]
    sp = SolaSplicer(block, cf, search)
    out = _stream(sig, sp, 60, jitter)
    assert len(out) == 60 * block
    # Smooth joins: the second difference never exceeds a clean sine's by much.
    d2 = np.abs(np.diff(out[block:].astype(np.float64), 2))
    assert d2.max() < 1.2 * (2 * np.pi * 180 / 24000) ** 2


def test_plain_crossfade_mode_has_exact_delay() -> None:
    sp = SolaSplicer(block=100, crossfade=30, search=0)
    sig = np.zeros(100 * 6 + 30, np.float32)
    sig[377] = 1.0
    out = _stream(sig, sp, 6)
    assert sp.delay == 30
    # new_b covers [b*100, b*100+130); output b carries source [b*100, b*100+100): same index.
    assert int(np.argmax(out)) == 377 and out[377] == pytest.approx(1.0)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="exceed"):
        SolaSplicer(block=10, crossfade=20, search=0)
    sp = SolaSplicer(block=10, crossfade=4, search=2)
    with pytest.raises(ValueError, match=r"float32\[16\]"):
        sp.process(np.zeros(15, np.float32))
