"""RealtimeRunner: constant latency, late blocks, any callback size, driven without devices.

Most tests drive the callbacks by hand and wait for the worker on sample counts, so underruns only
happen where a test makes the converter late on purpose (a gate it holds closed).
"""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from engine.ringbuffer import SampleRing
from engine.runner import RealtimeRunner

RATE = 48000


_CONVERTERS: list["DelayConverter"] = []


@pytest.fixture(autouse=True)
def converter_errors_fail_the_test():
    """A DelayConverter runs on the runner's worker thread, where a failed check only becomes a
    fault string; it records the failure and this fixture fails the test with it."""
    _CONVERTERS.clear()
    yield
    errors = [error for conv in _CONVERTERS for error in conv.errors]
    assert errors == [], errors


class DelayConverter:
    """Identity with a fixed delay (the converter contract), optionally held up by a gate."""

    def __init__(self, delay: int = 300, sleep_s: float = 0.0) -> None:
        _CONVERTERS.append(self)
        self.errors: list[str] = []
        self.delay = delay
        self.line = np.zeros(delay, np.float32)
        self.fed = 0
        self.gate_at: int | None = None     # first fed sample position whose call waits for `gate`
        self.gate = threading.Event()
        self.sleep_s = sleep_s
        self.updates: list[tuple[dict, str]] = []

    def latency(self) -> int:
        return self.delay

    def reset(self) -> None:
        self.line[:] = 0

    def update(self, **settings) -> None:
        self.updates.append((settings, threading.current_thread().name))

    def process(self, x: np.ndarray) -> np.ndarray:
        if self.gate_at is not None and self.fed <= self.gate_at < self.fed + len(x):
            if not self.gate.wait(30):
                self.errors.append("the test never opened the gate")
                raise RuntimeError(self.errors[-1])   # stops this block; the fixture fails the test
        if self.sleep_s:
            time.sleep(self.sleep_s)
        self.fed += len(x)
        both = np.concatenate([self.line, x])
        self.line = both[len(x):].copy()
        return both[:len(x)].copy()


def impulses(n: int, every: int, first: int = 100) -> np.ndarray:
    x = np.zeros(n, np.float32)
    x[first::every] = 0.5
    return x


def wait_until(cond, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out waiting for the worker"
        time.sleep(0.0005)


def drive_duplex(runner: RealtimeRunner, x: np.ndarray, sizes, *, wait=lambda pos: True) -> np.ndarray:
    """Feed `x` through `runner.process` with callback sizes from `sizes`; returns the output."""
    out = np.zeros_like(x)
    pos, i = 0, 0
    while pos < len(x):
        n = min(sizes[i % len(sizes)], len(x) - pos)
        i += 1
        runner.process(x[pos:pos + n], out[pos:pos + n])
        pos += n
        if wait(pos):
            target = pos // runner.chunk * runner.chunk
            wait_until(lambda: runner.processed_position >= target)
    return out


def offsets(y: np.ndarray, x: np.ndarray, thresh: float = 0.25, start: int = 0) -> np.ndarray:
    """For each output impulse from `start` on, the distance back to the input impulse before it
    (impulse spacing > delay, so the pairing is unambiguous)."""
    xi = np.flatnonzero(x > thresh)
    yi = np.flatnonzero(y > thresh)
    yi = yi[yi >= max(xi[0], start)]
    return yi - xi[np.searchsorted(xi, yi, side="right") - 1]


# --- SampleRing ------------------------------------------------------------------------------------

def test_ring_wraps_and_reads_by_position():
    ring = SampleRing(10)
    data = np.arange(1, 26, dtype=np.float32)
    for k in range(0, 25, 7):
        ring.write(data[k:k + 7])
    assert ring.end == 25 and ring.oldest == 15
    out = np.zeros(10, np.float32)
    assert ring.available(15, 10) == 10
    ring.read_into(15, out)
    np.testing.assert_array_equal(out, data[15:25])
    assert ring.available(14, 3) == 0          # overwritten
    assert ring.available(20, 10) == 5         # only a prefix exists yet
    assert ring.available(-4, 10) == 4         # before the start is silence; 0..5 were overwritten
    assert SampleRing(10).available(-4, 10) == 4 and SampleRing(10).available(-14, 10) == 10
    ring2 = SampleRing(8)
    ring2.write_at(3, np.ones(2, np.float32))  # a gap is zero-filled
    out = np.full(5, 9, np.float32)
    ring2.read_into(0, out)
    np.testing.assert_array_equal(out, [0, 0, 0, 1, 1])
    with pytest.raises(ValueError):
        ring2.write_at(2, np.ones(1, np.float32))


# --- duplex: constant latency ----------------------------------------------------------------------

@pytest.mark.parametrize("sizes", [[480], [64, 1000, 333, 7, 2048, 512], [1]])
def test_any_callback_size_gives_exact_constant_delay(sizes):
    conv = DelayConverter(delay=300)
    runner = RealtimeRunner(conv, block_size=960, sample_rate=RATE, chunk=240, callback_frames=max(sizes))
    runner.start()
    try:
        n = 24000 if sizes != [1] else 4000
        x = np.random.default_rng(0).standard_normal(n).astype(np.float32) * 0.1
        y = drive_duplex(runner, x, sizes)
    finally:
        runner.stop()
    d = runner.latency()
    assert d == 300 + 240 + max(sizes) + 960
    np.testing.assert_array_equal(y[d:], x[:len(x) - d])
    assert not y[:d].any()
    assert runner.stats().underruns == 0


def drive_with_stall(runner: RealtimeRunner, conv, x: np.ndarray, stall: tuple[int, int]) -> np.ndarray:
    """Drive the duplex callback while the converter (gated at `conv.gate_at`) is stuck until the
    callback position reaches `stall[1]`; callbacks inside the stall do not wait for the worker."""
    def wait(pos):
        if pos >= stall[1]:
            conv.gate.set()
        return not (stall[0] <= pos < stall[1])

    try:
        return drive_duplex(runner, x, [480], wait=wait)
    finally:
        conv.gate.set()
        runner.stop()


def test_late_block_counts_underruns_and_keeps_the_offset():
    conv = DelayConverter(delay=200)
    runner = RealtimeRunner(conv, block_size=960, sample_rate=RATE, chunk=480, callback_frames=480)
    conv.gate_at = 48000                     # the worker is stuck on the chunk holding sample 48000 ...
    runner.start()
    x = impulses(4 * RATE, every=2500)
    stuck = (48000 // 480 * 480, 48000 // 480 * 480 + 6 * 480)   # ... for 6 callbacks

    y = drive_with_stall(runner, conv, x, stuck)
    st = runner.stats()
    assert st.underruns > 0 and st.late_samples > 0
    offs = offsets(y, x)
    d = runner.latency()
    # Every impulse that came out, before and after the stall, has exactly the same delay ...
    assert set(offs.tolist()) == {d}
    # ... and the impulses whose output time fell inside the stall are missing, not delayed.
    assert len(offs) < len(np.flatnonzero(x > 0.25))
    assert np.isfinite(y).all() and np.abs(y).max() <= 1.0


def test_long_stall_skips_stale_input_and_keeps_the_offset():
    conv = DelayConverter(delay=100)
    runner = RealtimeRunner(conv, block_size=960, sample_rate=RATE, chunk=480, callback_frames=480)
    conv.gate_at = 24000
    runner.start()
    x = impulses(5 * RATE, every=2500)
    stall = (24000, 24000 + RATE)                  # one second late: far more than the prefill

    y = drive_with_stall(runner, conv, x, stall)
    st = runner.stats()
    assert st.skipped_samples > 0 and st.underruns > 0
    d = runner.latency()
    # (the first converter-latency of output after the skip still holds pre-skip audio)
    offs = offsets(y, x, start=stall[1] + d + conv.delay + 2 * runner.chunk)
    assert len(offs) > 40 and set(offs.tolist()) == {d}


def test_dry_late_fill_plays_the_input_at_the_same_latency():
    conv = DelayConverter(delay=150)
    runner = RealtimeRunner(conv, block_size=960, sample_rate=RATE, chunk=480, callback_frames=480,
                            late_fill="dry")
    conv.gate_at = 24000
    runner.start()
    x = (0.3 * np.sin(2 * np.pi * 220 * np.arange(3 * RATE) / RATE)).astype(np.float32)
    stall = (24000, 24000 + RATE // 2)

    def wait(pos):
        if pos >= stall[1]:
            conv.gate.set()
        return not (stall[0] <= pos < stall[1])

    try:
        y = drive_duplex(runner, x, [480], wait=wait)
    finally:
        conv.gate.set()
        runner.stop()
    d = runner.latency()
    assert runner.stats().underruns > 0
    # Wet and dry are the same signal here, so a latency-matched dry fill matches it everywhere except
    # in the 5 ms (240-sample) crossfade from the held last wet sample into the dry signal. (The stall
    # was long, so the worker skipped ahead; the converter's stale delay line is left out too.)
    bad = np.flatnonzero(np.abs(y[d:] - x[:-d]) > 1e-6)
    assert runner.stats().skipped_samples > 0
    assert 0 < len(bad) and np.ptp(bad) < 240
    assert np.abs(np.diff(y)).max() < 0.05      # and no click: 220 Hz at 0.3 moves < 0.01 per sample


def test_silence_fill_fades_instead_of_stepping():
    conv = DelayConverter(delay=0)
    runner = RealtimeRunner(conv, block_size=480, sample_rate=RATE, chunk=480, callback_frames=480,
                            fade_ms=5.0)
    conv.gate_at = 9600
    runner.start()
    x = np.full(RATE, 0.5, np.float32)               # DC: a hard cut would be a full-scale step

    def wait(pos):
        if pos >= 9600 + 4800:
            conv.gate.set()
        return not (9600 <= pos < 9600 + 4800)

    try:
        y = drive_duplex(runner, x, [480], wait=wait)
    finally:
        conv.gate.set()
        runner.stop()
    steps = np.abs(np.diff(y[runner.latency() + 10:]))
    assert runner.stats().underruns > 0
    assert y.min() < 0.01                            # it did go silent
    assert steps.max() < 0.5 / 240 * 1.01            # never faster than the 5 ms (240-sample) ramp


def test_non_finite_input_gives_finite_output():
    conv = DelayConverter(delay=0)
    runner = RealtimeRunner(conv, block_size=480, sample_rate=RATE, chunk=480, callback_frames=480)
    runner.start()
    x = np.random.default_rng(1).standard_normal(RATE // 2).astype(np.float32)
    x[1000:1100] = np.nan
    x[5000] = np.inf
    x[7000] = -np.inf
    try:
        y = drive_duplex(runner, x, [480])
    finally:
        runner.stop()
    assert np.isfinite(y).all() and np.abs(y).max() <= 1.0
    assert np.isfinite(runner.stats().input_level_db)


def test_converter_returning_nan_is_silenced_and_crash_is_reported():
    class Bad(DelayConverter):
        def process(self, x):
            self.fed += len(x)
            if self.fed > 4800:
                raise RuntimeError("boom")
            return np.full(len(x), np.nan, np.float32)

    runner = RealtimeRunner(Bad(0), block_size=480, sample_rate=RATE, chunk=480, callback_frames=480)
    runner.start()
    x = np.zeros(9600, np.float32)
    y = np.ones_like(x)
    for k in range(0, len(x), 480):
        runner.process(x[k:k + 480], y[k:k + 480])
        wait_until(lambda: runner.processed_position >= k + 480 or runner.fault is not None)
    runner.stop()
    assert not runner.alive
    assert np.isfinite(y).all()
    assert "boom" in runner.stats().fault and "voice" in runner.stats().fault


def test_updates_reach_the_converter_on_the_worker_thread():
    conv = DelayConverter(0)
    runner = RealtimeRunner(conv, block_size=480, sample_rate=RATE)
    runner.start()
    runner.update(pitch=3.0, late_fill="dry")
    try:
        wait_until(lambda: conv.updates)
    finally:
        runner.stop()
    assert conv.updates == [({"pitch": 3.0}, "como-inference")]
    assert runner.late_fill == "dry"
    with pytest.raises(ValueError):
        runner.update(late_fill="loud")


# --- real time: a paced clock and a converter that is sometimes too slow ---------------------------

def test_realtime_slow_blocks_underrun_without_drift():
    """A simulated device clock (10 ms callbacks) and a converter that misses its budget twice."""

    class Spiky(DelayConverter):
        def process(self, x):
            if self.fed in (24000, 57600):                          # two ~200 ms stalls
                time.sleep(0.2)
            return super().process(x)

    conv = Spiky(delay=240)
    runner = RealtimeRunner(conv, block_size=960, sample_rate=RATE, chunk=480, callback_frames=480)
    runner.start()
    x = impulses(int(1.8 * RATE), every=2500)
    y = np.zeros_like(x)
    t0 = time.perf_counter()
    try:
        for k in range(0, len(x), 480):
            while time.perf_counter() < t0 + k / RATE:
                time.sleep(0.001)
            runner.process(x[k:k + 480], y[k:k + 480])
    finally:
        runner.stop()
    st = runner.stats()
    assert st.underruns >= 2
    assert set(offsets(y, x).tolist()) == {runner.latency()}
    assert st.compute_p99_ms > 150 and st.compute_p50_ms < 10 and st.blocks_processed >= 60


# --- split streams ---------------------------------------------------------------------------------

def test_split_streams_anchor_once_and_report_their_offset():
    conv = DelayConverter(delay=100)
    runner = RealtimeRunner(conv, block_size=960, sample_rate=RATE, chunk=480, callback_frames=480, settle_s=0.1)
    runner.start()
    x = impulses(3 * RATE, every=3000)
    y = np.zeros_like(x)
    mon = np.zeros_like(x)
    # The output callback runs 160 samples after each input callback (a fixed phase), on a simulated clock.
    try:
        for k in range(0, len(x), 480):
            t = k / RATE
            runner.push(x[k:k + 480], now=t, input_latency=0.003)
            wait_until(lambda: runner.processed_position >= (k + 480) // 480 * 480)
            runner.pull(y[k:k + 480], now=t + 160 / RATE, output_latency=0.02)
            runner.pull(mon[k:k + 480], monitor=True, now=t + 170 / RATE)
    finally:
        runner.stop()
    st = runner.stats()
    offs = offsets(y, x)
    assert len(set(offs.tolist())) == 1, offs
    off = int(offs[0])
    # In time, input sample k is captured at k and output sample j is played at j + 160: the delay
    # inside the program is converter latency + prefill + the measured queue.
    assert off + 160 == pytest.approx(runner.latency() + st.queue_ms * RATE / 1000, abs=1)
    assert st.input_latency_ms == pytest.approx(3.0) and st.output_latency_ms == pytest.approx(20.0)
    assert st.underruns == 0 and st.resyncs == 0
    assert set(offsets(mon, x).tolist()) == {off}    # the monitor plays the same samples


def test_split_streams_resync_when_clocks_drift():
    conv = DelayConverter(delay=0)
    runner = RealtimeRunner(conv, block_size=480, sample_rate=RATE, chunk=480, callback_frames=480, settle_s=0.05)
    runner.start()
    n = 10 * RATE
    x = np.zeros(n, np.float32)
    out = np.zeros(480, np.float32)
    pulls = 0
    try:
        for k in range(0, n, 480):
            runner.push(x[k:k + 480], now=k / RATE)
            wait_until(lambda: runner.processed_position >= k + 480)
            # the output device runs 1 % fast: one extra callback every 100
            for _ in range(2 if (k // 480) % 100 == 99 else 1):
                runner.pull(out, now=k / RATE + 0.001)
                pulls += 1
    finally:
        runner.stop()
    st = runner.stats()
    assert st.resyncs >= 1
    # Uncorrected, 10 s at 1 % would be 100 ms off; re-anchoring keeps it near the 40 ms tolerance.
    assert abs(st.queue_ms) < 70.0


def test_drift_resync_is_a_dip_not_a_step():
    """A resync moves the read position by milliseconds; the output fades across it instead of
    jumping (a sine's largest sample-to-sample step stays that of the sine)."""
    conv = DelayConverter(delay=0)
    runner = RealtimeRunner(conv, block_size=480, sample_rate=RATE, chunk=480, callback_frames=480, settle_s=0.05)
    runner.start()
    n = 6 * RATE
    x = (0.5 * np.sin(2 * np.pi * 440 * np.arange(n) / RATE)).astype(np.float32)
    played = []
    try:
        for k in range(0, n, 480):
            runner.push(x[k:k + 480], now=k / RATE)
            wait_until(lambda: runner.processed_position >= k + 480)
            for _ in range(2 if (k // 480) % 50 == 49 else 1):   # the output clock runs 2 % fast
                out = np.zeros(480, np.float32)
                runner.pull(out, now=k / RATE + 0.001)
                played.append(out)
    finally:
        runner.stop()
    assert runner.stats().resyncs >= 1
    y = np.concatenate(played)[RATE:]
    sine_step = 0.5 * 2 * np.pi * 440 / RATE
    assert np.abs(np.diff(y)).max() <= 1.5 * sine_step


@pytest.mark.parametrize("frames", [128, 480])
def test_audio_resuming_mid_fade_fades_in_without_a_step(frames):
    """A block a little late (less than the 5 ms fade) resumes at a later position: the held sample
    fades out completely before the new audio fades in, whatever the callback size. No worker: the
    test writes the output ring itself, so the order of events is exact."""
    runner = RealtimeRunner(DelayConverter(delay=0), block_size=480, sample_rate=RATE, chunk=480,
                            callback_frames=frames)
    x = (0.5 * np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE)).astype(np.float32)
    k0 = 40 * frames
    gap = k0 - runner.prefill + frames - 60          # the callback at k0 finds its last 60 samples missing
    runner.out_ring.write(x[:gap])
    y = np.zeros_like(x)
    for k in range(0, len(x) - frames + 1, frames):
        runner.process(x[k:k + frames], y[k:k + frames])
        if k == k0:
            runner.out_ring.write(x[gap:])           # the late audio arrives
    assert runner.stats().underruns == 1 and runner.stats().late_samples == 60
    sine_step = 0.5 * 2 * np.pi * 440 / RATE
    assert np.abs(np.diff(y[k0 - frames:])).max() <= 1.5 * sine_step
    assert np.abs(y[-frames:] - x[-frames - runner.prefill:-runner.prefill]).max() == 0.0   # back in full


def test_callbacks_allocate_no_sample_buffers():
    """The real-time path copies into preallocated memory: no frame-sized allocation, late or not."""
    import tracemalloc

    for late_fill in ("silence", "dry"):
        runner = RealtimeRunner(DelayConverter(0), block_size=480, sample_rate=RATE, chunk=480, callback_frames=480,
                                late_fill=late_fill)          # worker not started: callbacks alone
        x = np.random.default_rng(0).standard_normal(480).astype(np.float32)
        y = np.zeros(480, np.float32)
        for _ in range(20):
            runner.process(x, y)                                # late: crossfade path
        runner.out_ring.write_at(runner.out_ring.end, np.ones(48000, np.float32) * 0.1)   # on time from here
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            for _ in range(200):
                runner.process(x, y)
                runner.push(x)
                runner.pull(y)
                runner.pull(y, monitor=True)
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        assert peak < 480 * 4, f"{late_fill}: {peak} bytes allocated at peak"
        assert runner.underruns > 0


def test_callbacks_larger_than_max_frames_still_work():
    conv = DelayConverter(delay=0)
    runner = RealtimeRunner(conv, block_size=480, sample_rate=RATE, chunk=480, callback_frames=4096, max_frames=1024)
    runner.start()
    try:
        x = np.random.default_rng(2).standard_normal(RATE).astype(np.float32) * 0.1
        y = drive_duplex(runner, x, [4096, 100])
    finally:
        runner.stop()
    d = runner.latency()
    np.testing.assert_array_equal(y[d:], x[:len(x) - d])


def test_split_output_that_falls_behind_is_resynced_to_the_fixed_latency():
    """A driver underrun: the output stream loses 3 callbacks (30 ms) that are never made up, so
    everything after would play 30 ms late (less than the drift tolerance: it used to stay). The runner notices the settled input-output offset
    step, says so, and moves back to the fixed latency with one faded resync."""
    conv = DelayConverter(delay=100)
    runner = RealtimeRunner(conv, block_size=960, sample_rate=RATE, chunk=480, callback_frames=480, settle_s=0.25)
    runner.start()
    n = 7 * RATE
    x = impulses(n, every=4000)
    out = np.zeros(480, np.float32)
    played = np.zeros(n + RATE, np.float32)     # by output clock sample
    clock = 0                                   # output callbacks so far (the device clock)
    stall = range(3 * RATE, 3 * RATE + 3 * 480)
    try:
        for k in range(0, n, 480):
            t = k / RATE
            runner.push(x[k:k + 480], now=t)
            wait_until(lambda: runner.processed_position >= k + 480)
            if k in stall:
                continue                        # the output callback never came
            runner.pull(out, now=t + 160 / RATE)
            played[k:k + 480] = out             # played at wall-clock position k
            clock += 1
    finally:
        runner.stop()
    st = runner.stats()
    offs = offsets(played, x)
    before, after = offs[(offs > 0)][:20], offs[-20:]
    assert len(set(before.tolist())) == 1 and set(after.tolist()) == set(before.tolist())
    assert st.resyncs == 1 and "fell behind the input by 30 ms" in st.resync_note
    # corrected within a few recent-offset windows (16 callbacks each), not the seconds the slow
    # average takes: at most 6 impulses (0.5 s) played late
    late = np.count_nonzero(offs == before[0] + 3 * 480)
    assert 1 <= late <= 6, late
    assert len(st.resync_positions) == 1 and 3 * RATE < st.resync_positions[0] < 3 * RATE + RATE // 2
    assert st.input_position == n      # the positions count in captured input samples


def test_output_that_runs_ahead_after_a_driver_xrun_is_not_a_late_block():
    """After an xrun a driver refills its buffer with a burst of output callbacks: the output asks
    for audio whose input has not even arrived. No compute budget could have had it ready, so it
    is counted as `ran_ahead` (beside the driver's own xrun report), not as a late block; the
    runner then re-syncs to the fixed latency. A converter that is slow on a steady clock is still
    a late block (the tests above)."""
    conv = DelayConverter(delay=100)
    runner = RealtimeRunner(conv, block_size=960, sample_rate=RATE, chunk=480, callback_frames=480, settle_s=0.25)
    runner.start()
    n = 7 * RATE
    x = impulses(n, every=8000)      # spacing > the latency + the burst: pairing stays unambiguous
    out = np.zeros(480, np.float32)
    played = []
    burst_at = 3 * RATE
    try:
        for k in range(0, n, 480):
            t = k / RATE
            runner.push(x[k:k + 480], now=t)
            wait_until(lambda: runner.processed_position >= k + 480)
            # the refill burst: this callback and 8 more at once, ahead of the input
            for extra in range(9 if k == burst_at else 1):
                runner.pull(out, now=t + (160 + extra) / RATE)
                played.append(out.copy())
    finally:
        runner.stop()
    st = runner.stats()
    assert st.underruns == 0 and st.ran_ahead >= 1
    assert st.resyncs >= 1 and "ran ahead of the input" in st.resync_note
    y = np.concatenate(played)
    offs = offsets(y, x)
    assert len(set(offs[offs > 0][:10].tolist())) == 1             # fixed latency before ...
    assert set(offs[-10:].tolist()) == {int(offs[offs > 0][0]) + 8 * 480}   # ... and after, on the output's clock
