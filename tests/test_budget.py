"""The adaptive compute budget (engine/budget.py) and the runner's back-off (engine/runner.py).

Deterministic: compute times come from a simulated clock the fake converter advances, and late
blocks from a gate the test holds closed while it keeps calling the audio callback.
"""
from __future__ import annotations

import numpy as np
import pytest

from engine.budget import MARGIN_FACTOR, MARGIN_MS, WARM_UP_SKIP, AdaptiveBudget, measure_compute
from engine.runner import RealtimeRunner
from engine.settings import Settings
from tests.test_runner import DelayConverter, converter_errors_fail_the_test, impulses, offsets, wait_until  # noqa: F401

RATE = 48000


class SimClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class TimedConverter(DelayConverter):
    """DelayConverter whose calls take `cost(call index)` seconds on a simulated clock."""

    def __init__(self, clock: SimClock, cost, delay: int = 300) -> None:
        super().__init__(delay)
        self.clock, self.cost, self.calls, self.resets = clock, cost, 0, 0

    def reset(self) -> None:
        super().reset()
        self.resets += 1

    def process(self, x: np.ndarray) -> np.ndarray:
        self.clock.t += self.cost(self.calls)
        self.calls += 1
        return super().process(x)


def test_safe_budget_is_p99_with_the_margin():
    policy = AdaptiveBudget(RATE, block=960)
    expected = int(np.ceil((0.003 * MARGIN_FACTOR + MARGIN_MS / 1000) * RATE))
    assert policy.safe([0.003] * 50) == expected
    assert policy.safe([0.003] * 99 + [0.5]) > expected                # the slow tail counts
    assert policy.safe([1.0] * 10) == policy.ceiling == 1920            # never above two blocks
    assert policy.safe([]) == 960                                        # nothing measured: one block


def test_back_off_grows_at_least_by_half_and_stops_at_the_ceiling():
    policy = AdaptiveBudget(RATE, block=960)
    assert policy.back_off(300, [0.001] * 20) == 450
    assert policy.back_off(300, [0.015] * 20) == policy.safe([0.015] * 20) > 450
    assert policy.back_off(1800, []) == 1920
    assert policy.back_off(1920, [0.1]) == 1920


def test_warm_up_measures_the_steady_blocks_and_leaves_the_converter_reset():
    clock = SimClock()
    conv = TimedConverter(clock, lambda i: 0.010 if i < WARM_UP_SKIP else 0.003)
    times = measure_compute(conv, 960, RATE, blocks=20, clock=clock)
    assert times == pytest.approx([0.003] * (20 - WARM_UP_SKIP))
    assert conv.calls == 20 and conv.resets == 1
    slow = TimedConverter(clock, lambda i: 0.4)
    assert len(measure_compute(slow, 960, RATE, blocks=20, max_seconds=1.5, clock=clock)) == 4


def _drive(runner: RealtimeRunner, x: np.ndarray, n: int, conv: DelayConverter, late_from: int | None = None,
           late_until: int | None = None) -> np.ndarray:
    """Duplex callbacks of `n` samples; each waits for the worker, except between `late_from` and
    `late_until`, where the converter's gate is closed and the callbacks run on regardless."""
    y = np.zeros_like(x)
    for k in range(0, len(x), n):
        if late_until is not None and k == late_until:
            conv.gate.set()
        runner.process(x[k:k + n], y[k:k + n])
        if late_from is None or not late_from <= k < late_until:
            target = (k + n) // runner.chunk * runner.chunk
            wait_until(lambda: runner.processed_position >= target)
    return y


def _run(conv: DelayConverter, x: np.ndarray, budget: int, late_from: int | None = None,
         late_until: int | None = None, **runner_kw) -> tuple[RealtimeRunner, np.ndarray]:
    """An adaptive runner (20 ms blocks, 10 ms callbacks at 48 kHz) driven through `x`. Compute times
    come from a simulated clock (still at 0 unless the converter advances it): on the real clock the
    gated block's time would include the test's wait on the gate, and a busy machine would set the
    size of the raise."""
    runner_kw.setdefault("adaptive", AdaptiveBudget(RATE, block=960))
    runner_kw.setdefault("clock", SimClock())
    runner = RealtimeRunner(conv, block_size=960, sample_rate=RATE, chunk=960, callback_frames=480, budget=budget,
                            **runner_kw)
    if late_from is not None:
        conv.gate_at = late_from
    runner.start()
    try:
        y = _drive(runner, x, 480, conv, late_from=late_from, late_until=late_until)
    finally:
        runner.stop()
    return runner, y


def test_late_blocks_raise_the_budget_once_at_a_reported_step():
    x = impulses(4 * RATE, every=4000)
    before = 300 + 960 + 480 + 300
    # the block at 2 s is held up while 4 callbacks go by
    runner, y = _run(DelayConverter(delay=300), x, 300, late_from=2 * RATE, late_until=2 * RATE + 4 * 480)
    st = runner.stats()
    after = runner.latency()
    assert st.underruns >= 1 and st.budget_raises == 1 and st.budget_auto
    assert after - before == 450 - 300 and st.block_budget_ms == pytest.approx(1000 * 450 / RATE)
    assert "raised from 6.2 to 9.4 ms" in st.budget_note
    offs = offsets(y, x)
    steps = np.flatnonzero(np.diff(offs))
    assert offs[0] == before and offs[-1] == after and len(steps) == 1   # one step, from before to after
    # Recorded where it happened: the newest input then, whose output plays a latency later, so
    # the step lies between the impulses that show it (every 4000 samples) within a block of
    # `at - before`. The live test uses it to tell a window that straddles the step from one that
    # does not.
    (at,) = st.budget_change_positions
    (k,) = steps
    assert 4000 * k - 960 <= at - before <= 4000 * (k + 1) + 960, (at - before, k)


def test_the_raise_is_a_faded_dip_not_a_jump():
    x = (0.5 * np.sin(2 * np.pi * 440 * np.arange(3 * RATE) / RATE)).astype(np.float32)
    runner, y = _run(DelayConverter(delay=0), x, 300, late_from=RATE, late_until=RATE + 4 * 480)
    assert runner.stats().budget_raises == 1
    sine_step = 0.5 * 2 * np.pi * 440 / RATE
    assert np.abs(np.diff(y[RATE // 2:])).max() <= 1.5 * sine_step


def test_on_time_blocks_never_move_the_latency():
    x = impulses(2 * RATE, every=4000)
    runner, y = _run(DelayConverter(delay=300), x, 200)
    st = runner.stats()
    assert st.underruns == 0 and st.budget_raises == 0 and st.budget_note is None
    assert st.budget_change_positions == ()
    assert set(offsets(y, x).tolist()) == {runner.latency()} == {300 + 960 + 480 + 200}


def test_adaptive_refuses_a_fixed_prefill():
    with pytest.raises(ValueError, match="prefill"):
        RealtimeRunner(DelayConverter(0), block_size=960, sample_rate=RATE, prefill=1000,
                       adaptive=AdaptiveBudget(RATE, block=960))


def test_cli_budget_is_auto_by_default_or_a_fixed_number(capsys):
    from engine import live
    from engine.settings import AUTO_BUDGET, parse_budget

    parser = live.build_parser()
    assert parser.parse_args([]).compute_budget_ms == AUTO_BUDGET == Settings().compute_budget_ms
    assert parser.parse_args(["--compute-budget-ms", "auto"]).compute_budget_ms == AUTO_BUDGET
    assert parser.parse_args(["--compute-budget-ms", "8"]).compute_budget_ms == 8.0
    for bad in ("fast", "0", "-3", "900"):
        with pytest.raises(ValueError, match="compute budget"):
            parse_budget(bad)
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--compute-budget-ms", "fast"])
    assert exit_.value.code == 2 and "'auto' or a number of milliseconds" in capsys.readouterr().err


def test_status_line_says_the_budget_is_auto():
    from engine.live import status_line
    from engine.session import LiveStats

    line = status_line(LiveStats(state="running", block_budget_ms=6.25, budget_auto=True))
    assert "budget 6.2 auto" in line or "budget 6.3 auto" in line
    assert "auto" not in status_line(LiveStats(state="running", block_budget_ms=8.0))


def test_a_generous_start_is_lowered_once_at_a_reported_step():
    """The warm-up caught a slow moment (budget one block); the running blocks take 1 ms each on the
    simulated clock, so after TIGHTEN_AFTER_S (3 s) the budget drops to what they need, once."""
    clock = SimClock()
    conv = TimedConverter(clock, lambda i: 0.001)
    policy = AdaptiveBudget(RATE, block=960)
    before = 300 + 960 + 480 + 960
    x = impulses(5 * RATE, every=4000) + quiet_tone(5 * RATE)     # sound in every block
    runner, y = _run(conv, x, 960, adaptive=policy, stats_window=32, clock=clock)
    st = runner.stats()
    # (1 ms per block, summed on the simulated clock: within a sample of the exact figure)
    assert abs(runner.budget - policy.safe([0.001] * 32)) <= 1 and st.budget_raises == 0 and st.underruns == 0
    assert "after 150 blocks of sound on time" in st.budget_note
    assert "lowered from 20.0 to" in st.budget_note
    offs = offsets(y, x)
    assert offs[0] == before and offs[-1] == runner.latency() < before
    assert len(np.flatnonzero(np.diff(offs))) == 1
    (at,) = st.budget_change_positions            # after 150 blocks (3 s) of sound, no sooner
    assert 3 * RATE <= at <= 3 * RATE + RATE // 2


def test_the_lowering_covers_the_slowest_block_it_saw():
    """One block of the 150 before the lowering took 6 ms (the rest 1 ms): the lowered budget covers
    it, though it fell out of the statistics window (32 blocks) long before. Their p99 (1 ms) would
    have set 3.5 ms, and in CI such a budget let a block come late within 20 s."""
    clock = SimClock()
    conv = TimedConverter(clock, lambda i: 0.006 if i == 60 else 0.001)
    policy = AdaptiveBudget(RATE, block=960)
    x = impulses(5 * RATE, every=4000) + quiet_tone(5 * RATE)
    runner, _ = _run(conv, x, 960, adaptive=policy, stats_window=32, clock=clock)
    st = runner.stats()
    assert "lowered from 20.0 to" in st.budget_note and st.underruns == 0
    assert runner.budget >= policy.safe([0.006]) - 1 > policy.safe([0.001] * 149 + [0.006]) + 100


def quiet_tone(n: int) -> np.ndarray:
    """A -50 dBFS sine: sound for the budget's lowering, invisible to `offsets` (threshold 0.25)."""
    return (0.0045 * np.sin(2 * np.pi * 200 * np.arange(n) / RATE)).astype(np.float32)


def test_silence_does_not_lower_the_budget():
    """A voice can cost far less on silence than on speech, and a session starts before its user
    speaks: 5 s of silent blocks (cheap on the simulated clock) leave the budget where it was."""
    clock = SimClock()
    conv = TimedConverter(clock, lambda i: 0.001)
    runner, _ = _run(conv, np.zeros(5 * RATE, np.float32), 960, adaptive=AdaptiveBudget(RATE, block=960),
                     stats_window=32, clock=clock)
    st = runner.stats()
    assert st.blocks_processed >= 240 and st.budget_note is None and runner.budget == 960


def test_no_lowering_after_a_raise():
    # late at block 10, long before the lowering would come (3 s)
    runner, _ = _run(DelayConverter(delay=300), np.zeros(2 * RATE, np.float32), 900, late_from=9600,
                     late_until=9600 + 8 * 480)
    assert runner.stats().budget_raises == 1 and runner.budget == 1350


def test_no_lowering_after_late_blocks_at_the_ceiling():
    """Blocks late with the budget already at its ceiling (two blocks): said so, and the budget is
    never lowered afterwards, however fast the blocks then run (4 s of sound, the lowering's 3 s)."""
    x = impulses(5 * RATE, every=4000) + quiet_tone(5 * RATE)
    runner, _ = _run(DelayConverter(delay=300), x, 1920, late_from=9600, late_until=9600 + 8 * 480)
    st = runner.stats()
    assert st.underruns >= 1 and st.late_blocks_answered == st.underruns and st.budget_raises == 0
    assert "already at its limit (40.0 ms)" in st.budget_note and runner.budget == 1920
    assert st.budget_change_positions == ()
