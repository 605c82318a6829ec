"""The adaptive compute budget: how late a block's conversion may finish, measured instead of guessed.

The live runner's latency includes a compute budget (see `engine.runner`): the time a block may
take to convert and still play on time. One whole block is always safe but costs a block of delay;
a voice that converts a 20 ms block in 5 ms needs far less. `AdaptiveBudget` picks the smallest
safe value from measured compute times,

    budget = p99(compute per block) * MARGIN_FACTOR + MARGIN_MS     (clamped to [1 sample, ceiling])

where the factor covers a slower stretch than the measurement saw and `MARGIN_MS` the worker
thread's wake-up and the scheduler (the compute time is measured inside the worker, the budget
counts from the input callback). The first value comes from a warm-up before the audio starts
(`measure_compute`: the converter on a voiced test signal, then `reset()`); while running, every
late block makes the runner `back_off`: the budget grows by at least `BACK_OFF_FACTOR` (or to the
safe value for the compute times seen since, if larger), up to `ceiling`, and the runner applies
it at a faded resync that it reports. Once, after `TIGHTEN_AFTER_S` of blocks with sound on time, the
runner lowers it to `safe(ready delays, percentile=100)` -- for each of those blocks, the time from
the push that completed its input to its output being written, which adds the worker's wake-up and
any wait to the compute time -- if that saves a quarter or more (a warm-up of a second can catch a
slow moment); never after a late block (raised, or already at the ceiling), so it cannot oscillate.
The lowering covers the slowest of those blocks since the start, not their p99: 3 s are ~150
blocks at 20 ms, whose p99 lies between their second and third slowest, while a minute has 3,000
(lowered to the p99 of its first 150 blocks, the built-in voice at 20 ms blocks came late once
within 20 s in CI, on a busy 2-core machine: 10.1 ms against a running p99 of 8 ms).
"""
from __future__ import annotations

import math
import time
from typing import Callable, Protocol, Sequence

import numpy as np

MARGIN_FACTOR = 1.5
MARGIN_MS = 2.0
BACK_OFF_FACTOR = 1.5
WARM_UP_BLOCKS = 40          # blocks converted before the audio starts (the first few are not counted)
WARM_UP_SKIP = 4             # cold caches, first-call allocations: not representative
WARM_UP_MAX_S = 1.5          # a slow voice stops measuring early (at least WARM_UP_SKIP + 4 blocks)
TIGHTEN_AFTER_S = 3.0        # running time (and at least 32 blocks) before the one lowering


class _Converter(Protocol):
    def process(self, block: np.ndarray) -> np.ndarray: ...

    def reset(self) -> None: ...


class AdaptiveBudget:
    """Budget policy in device samples at `rate` for blocks of `block` samples.

    `ceiling`: the largest budget it will set (default two blocks: beyond that the voice cannot keep
    up with real time and a larger margin only delays the dropouts).
    """

    def __init__(self, rate: int, block: int, ceiling: int | None = None) -> None:
        if rate <= 0 or block <= 0:
            raise ValueError("rate and block must be positive")
        self.rate, self.block = int(rate), int(block)
        self.ceiling = int(ceiling if ceiling is not None else 2 * block)

    def safe(self, compute_s: Sequence[float], percentile: float = 99.0) -> int:
        """The smallest safe budget for these compute times (seconds per block), from their
        `percentile` (100: the slowest)."""
        times = np.asarray(compute_s, dtype=np.float64)
        times = times[np.isfinite(times)]
        if len(times) == 0:
            return min(self.block, self.ceiling)
        seconds = float(np.percentile(times, percentile)) * MARGIN_FACTOR + MARGIN_MS / 1000.0
        return int(min(self.ceiling, max(1, math.ceil(seconds * self.rate))))

    def back_off(self, current: int, compute_s: Sequence[float]) -> int:
        """The budget after a late block: at least `BACK_OFF_FACTOR` x `current`, never above the ceiling."""
        grown = max(math.ceil(current * BACK_OFF_FACTOR), self.safe(compute_s) if len(compute_s) else 0)
        return int(min(self.ceiling, max(grown, current)))

    def ms(self, samples: int) -> float:
        return 1000.0 * samples / self.rate


def warm_up_signal(n: int, rate: int) -> np.ndarray:
    """A voiced test signal float32[n] (a 150 Hz buzz with some noise at about -20 dBFS): what a
    voice costs on speech, not on silence (a gate or an unvoiced path could make silence cheaper)."""
    t = np.arange(n) / rate
    buzz = sum(np.sin(2 * np.pi * 150.0 * k * t) / k for k in range(1, 20))
    noise = np.random.default_rng(0).standard_normal(n)
    return (0.05 * buzz + 0.01 * noise).astype(np.float32)


def measure_compute(converter: _Converter, block: int, rate: int, *, blocks: int = WARM_UP_BLOCKS,
                    max_seconds: float = WARM_UP_MAX_S,
                    clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Seconds per block of `converter.process` on `blocks` blocks of a voiced signal (the first
    `WARM_UP_SKIP` dropped), then `converter.reset()`: the converter is left as it was found."""
    signal = warm_up_signal(block * blocks, rate)
    times: list[float] = []
    start = clock()
    try:
        for i in range(blocks):
            t0 = clock()
            converter.process(signal[i * block:(i + 1) * block])
            t1 = clock()
            if i >= WARM_UP_SKIP:
                times.append(t1 - t0)
            if t1 - start > max_seconds and len(times) >= 4:
                break
    finally:
        converter.reset()
    return times
