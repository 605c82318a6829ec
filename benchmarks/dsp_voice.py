"""The built-in WORLD voice's compute per block and its delay, before/after settings side by side.

    python -m benchmarks.dsp_voice            # prints median/p99 ms per 20 ms block and the latency

Rows: the shipped defaults and the earlier 20 ms hop / 20 ms lookahead, on the same 6 s voiced
signal, fed in 20 ms blocks as the live runner does at `--block-ms 20`.
"""
from __future__ import annotations

import time

import numpy as np

from benchmarks._table import print_table, summarize
from engine.dsp_voice import FS, DspCore

BLOCK = FS // 50          # 20 ms


def voiced(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * FS)) / FS
    phase = 2 * np.pi * np.cumsum(150 * 2 ** (0.3 * np.sin(2 * np.pi * 0.4 * t))) / FS
    return (0.1 * sum(np.sin(k * phase) / k for k in range(1, 25))).astype(np.float32)


def per_block(core: DspCore, x: np.ndarray) -> list[float]:
    times = []
    for start in range(0, len(x) - BLOCK + 1, BLOCK):
        t0 = time.perf_counter()
        core.process(x[start:start + BLOCK])
        times.append(time.perf_counter() - t0)
    return times[10:]                                   # the first blocks fill the context


def main() -> None:
    x = voiced(6.0)
    rows = []
    for name, core in (("defaults", DspCore()), ("hop 20 / lookahead 20 ms", DspCore(hop_ms=20, lookahead_ms=20))):
        rows.append({"voice": name, "latency_ms": round(1000 * core.latency_24k / FS, 1),
                     **summarize(per_block(core, x))})
    print_table("DspCore per 20 ms block", rows)


if __name__ == "__main__":
    main()
