"""Crossfade and constant-latency SOLA: fixed output length, exact joins, bounded offsets."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.splice import crossfade, fade_in


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
