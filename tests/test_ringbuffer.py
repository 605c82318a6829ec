"""RingBuffer / SpscRing: FIFO order for any write/read sizes, counters, wraparound, policies."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.ringbuffer import RingBuffer, RingBufferOverflow, RingBufferUnderflow, SpscRing

# A program is a list of ("w", n) / ("r", n) operations.
ops = st.lists(st.tuples(st.sampled_from("wr"), st.integers(0, 40)), max_size=60)


@settings(max_examples=200, deadline=None)
@given(capacity=st.integers(1, 37), program=ops, stereo=st.booleans())
def test_fifo_order_and_available_invariants(capacity: int, program, stereo: bool) -> None:
    ch = 2 if stereo else None
    rb = RingBuffer(capacity, channels=ch)
    model: list[float] = []          # reference FIFO of frame ids
    next_id = 0
    for op, n in program:
        if op == "w":
            ids = np.arange(next_id, next_id + n, dtype=np.float32)
            x = ids if ch is None else np.stack([ids, -ids], axis=1)
            if n > rb.free():
                with pytest.raises(RingBufferOverflow):
                    rb.write(x)
                continue                                  # nothing was written
            rb.write(x)
            model.extend(ids.tolist())
            next_id += n
        else:
            if n > rb.available():
                with pytest.raises(RingBufferUnderflow):
                    rb.read(n)
                continue
            got = rb.read(n)
            want = np.array(model[:n], dtype=np.float32)
            del model[:n]
            np.testing.assert_array_equal(got if ch is None else got[:, 0], want)
            if ch is not None:
                np.testing.assert_array_equal(got[:, 1], -want)
        assert rb.available() == len(model)
        assert rb.available() + rb.free() == capacity
        assert 0 <= rb.available() <= capacity


@settings(max_examples=150, deadline=None)
@given(capacity=st.integers(1, 25), sizes=st.lists(st.integers(0, 60), max_size=30))
def test_drop_oldest_keeps_newest(capacity: int, sizes) -> None:
    rb = RingBuffer(capacity, overflow="drop_oldest")
    stream = np.arange(sum(sizes), dtype=np.float32)
    pos = 0
    for n in sizes:
        rb.write(stream[pos:pos + n])
        pos += n
        kept = min(pos, capacity)
        assert rb.available() == kept
        np.testing.assert_array_equal(rb.peek(kept), stream[pos - kept:pos])
    assert rb.dropped == max(0, pos - capacity)


def test_wraparound_peek_skip_and_out_array() -> None:
    rb = RingBuffer(5)
    rb.write(np.array([1, 2, 3, 4], np.float32))
    rb.skip(3)
    rb.write(np.array([5, 6, 7, 8], np.float32))          # wraps
    out = np.full(8, -1, np.float32)
    view = rb.peek(5, out=out)
    np.testing.assert_array_equal(view, [4, 5, 6, 7, 8])
    assert np.shares_memory(view, out)
    assert rb.available() == 5                             # peek does not consume
    np.testing.assert_array_equal(rb.read(2), [4, 5])
    np.testing.assert_array_equal(rb.read(3), [6, 7, 8])
    assert rb.available() == 0


def test_clear_errors_for_bad_input() -> None:
    with pytest.raises(ValueError, match="capacity"):
        RingBuffer(0)
    with pytest.raises(ValueError, match="overflow"):
        RingBuffer(4, overflow="wrap")
    rb = RingBuffer(4, channels=2)
    with pytest.raises(ValueError, match=r"\[n, 2\]"):
        rb.write(np.zeros(3, np.float32))
    rb.write(np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="out has shape"):
        rb.read(2, out=np.zeros((1, 2), np.float32))
    with pytest.raises(RingBufferOverflow, match="does not fit"):
        RingBuffer(2).write(np.zeros(3, np.float32))


def test_read_into_out_does_not_allocate_new_storage() -> None:
    rb = RingBuffer(16)
    out = np.empty(8, np.float32)
    rb.write(np.arange(8, dtype=np.float32))
    got = rb.read(8, out=out)
    assert np.shares_memory(got, out)


@settings(max_examples=150, deadline=None)
@given(capacity=st.integers(1, 31), program=ops)
def test_spsc_single_thread_model(capacity: int, program) -> None:
    ring = SpscRing(capacity)
    model: list[float] = []
    next_id = 0
    for op, n in program:
        if op == "w":
            ids = np.arange(next_id, next_id + n, dtype=np.float32)
            wrote = ring.write(ids)
            assert wrote == min(n, capacity - len(model))
            model.extend(ids[:wrote].tolist())
            next_id += wrote
        else:
            out = np.zeros(n, np.float32)
            got = ring.read_into(out)
            assert got == min(n, len(model))
            np.testing.assert_array_equal(out[:got], model[:got])
            del model[:got]
        assert ring.available() == len(model)
        assert ring.free() == capacity - len(model)


def test_spsc_two_threads_preserve_every_sample_in_order() -> None:
    """A producer and a consumer thread, no locks: the consumer sees 0, 1, 2, ... exactly."""
    total, ring = 60_000, SpscRing(257)
    received = np.empty(total, np.float32)
    done = threading.Event()

    def producer() -> None:
        data = np.arange(total, dtype=np.float32)
        pos, rng = 0, np.random.default_rng(1)
        while pos < total:
            n = int(rng.integers(1, 64))
            pos += ring.write(data[pos:pos + n])
        done.set()

    def consumer() -> None:
        pos, rng = 0, np.random.default_rng(2)
        buf = np.empty(64, np.float32)
        while pos < total:
            got = ring.read_into(buf[: int(rng.integers(1, 64))])
            received[pos:pos + got] = buf[:got]
            pos += got

    threads = [threading.Thread(target=producer), threading.Thread(target=consumer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert done.is_set() and not any(t.is_alive() for t in threads)
    np.testing.assert_array_equal(received, np.arange(total, dtype=np.float32))


def test_spsc_read_exact_and_skip() -> None:
    ring = SpscRing(8, channels=2)
    ring.write(np.arange(12, dtype=np.float32).reshape(6, 2))
    with pytest.raises(RingBufferUnderflow):
        ring.read(7)
    assert ring.available() == 6                           # the failed read consumed nothing
    assert ring.skip(4) == 4
    np.testing.assert_array_equal(ring.read(2), [[8, 9], [10, 11]])
    assert ring.skip(5) == 0
