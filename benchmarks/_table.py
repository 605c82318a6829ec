"""Shared helpers of the benchmark scripts: timing and a median/p99 table with a machine line.

    from benchmarks._table import print_table, summarize, timeit
    times = timeit(lambda: model(x), repeats=5, warmup=1)          # seconds per call
    print_table("decoder", [{"threads": 2, **summarize(times)}])   # n, median_ms, p99_ms

With few repeats, p99 is (linearly interpolated) close to the slowest run; the table prints n so the
reader can judge.
"""
from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import numpy as np


def timeit(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    """Call `fn` `warmup` times untimed, then `repeats` times; return each timed call's seconds."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(max(0, warmup)):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def summarize(seconds: Sequence[float]) -> dict[str, float | int]:
    """-> {'n', 'median_ms', 'p99_ms'} of a list of durations in seconds."""
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {"n": len(ms), "median_ms": float(np.median(ms)), "p99_ms": float(np.percentile(ms, 99))}


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def usable_cores() -> int:
    """Cores this process may run on (affinity), else os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except Exception:  # noqa: BLE001 - a missing/broken package is just reported
        return "not installed"


def machine_line() -> str:
    """One line: CPU model, cores, Python, numpy, torch and onnxruntime versions."""
    return (f"machine: {cpu_model()}, {usable_cores()} cores (os.cpu_count {os.cpu_count()}), "
            f"Python {platform.python_version()}, numpy {_version('numpy')}, torch {_version('torch')}, "
            f"onnxruntime {_version('onnxruntime')}")


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (float, np.floating)):
        return str(value)
    v = abs(float(value))
    return f"{value:.0f}" if v >= 100 else f"{value:.1f}" if v >= 10 else f"{value:.2f}" if v >= 1 else f"{value:.3f}"


def print_table(title: str, rows: list[dict[str, Any]], machine: bool = True,
                notes: Sequence[str] = (), file: TextIO | None = None) -> None:
    """Print `rows` (dicts; columns = keys in first-seen order, missing cells blank) under `title`,
    preceded by the machine line (when `machine`) and any `notes` lines."""
    out = file or sys.stdout
    print(title, file=out)
    if machine:
        print(machine_line(), file=out)
    for note in notes:
        print(note, file=out)
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    cells = [[_fmt(row[c]) if c in row else "" for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for r in cells:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths)), file=out)
    out.flush()
