"""History: absolute-indexed memory of the stream, bounded over time."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.history import History


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=700), min_size=1, max_size=40), st.integers(50, 400))
def test_reads_return_what_was_written_by_absolute_position(chunks: list[int], keep: int) -> None:
    h = History(keep)
    stream = np.arange(sum(chunks), dtype=np.float32)
    pos = 0
    for n in chunks:
        h.append(stream[pos:pos + n])
        pos += n
        lo = max(h.start, pos - keep)
        np.testing.assert_array_equal(h.read(lo, pos), stream[lo:pos])
        assert h.end == pos


def test_before_start_is_silence_and_forgotten_is_an_error() -> None:
    h = History(keep=10, width=2)
    h.append(np.ones((25, 2)))
    assert h.read(-3, 0).shape == (3, 2) and not h.read(-3, 0).any()
    with pytest.raises(ValueError, match="forgotten"):
        h.read(0, 5)
    with pytest.raises(ValueError, match="only 25 positions"):
        h.read(20, 26)


def test_overwrite_provisional_values_and_no_gaps() -> None:
    h = History(keep=100)
    h.append(np.zeros(10))
    h.write(5, np.ones(10))
    assert h.end == 15 and h.read(0, 15).tolist() == [0] * 5 + [1] * 10
    with pytest.raises(ValueError, match="gap"):
        h.write(20, np.ones(2))


def test_memory_stays_bounded() -> None:
    h = History(keep=1000)
    for _ in range(2000):
        h.append(np.ones(480, np.float32))
    assert h._data.nbytes <= 2 * 1000 * 4 + 480 * 4 * 2
