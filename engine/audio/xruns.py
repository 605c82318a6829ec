"""Driver xruns and latency steps: counted by the audio callbacks, explained by the control thread.

```
log = XrunLog(rate)
log.flag(status, position)          # audio callback: PortAudio's status flags (never allocates)
log.output_delay(seconds)           # audio callback: outputBufferDacTime - currentTime
log.check() -> LatencyStep | None   # control thread, a few times a second
log.counts() -> XrunCounts          # any thread
```
An xrun is a callback PortAudio flags `input_overflow`, `input_underflow`, `output_overflow` or
`output_underflow`: audio was lost or invented by the driver. `priming_output` is not an xrun
(PortAudio asks for the first buffers early, on purpose): it is counted apart.

A latency step: on ALSA (and the ALSA `pulse` plugin) an output underrun makes the driver restart
the stream with a full buffer again, so what we write plays later from then on (seen: ~130 → ~155
ms after one underrun in a 120 s run). The step is visible in the callbacks' own time stamps: the
median output delay over the last `window` callbacks moves and stays. `check()` reports a step once
it has held for a whole window (or, still moving, two windows later: on a loaded 2-core VM with
output underflows every few seconds the delay wandered 140 → 460 → 140 ms and never settled), with
its cause: the xruns flagged just before it, or none (the driver changed its buffer by itself).
Steps under 15 ms are not reported: through PulseAudio on a busy machine the reported delay
wanders by up to ~14 ms without any xrun (measured, 2-core VM).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

XRUN_FLAGS = ("input_overflow", "input_underflow", "output_overflow", "output_underflow")
_EVENTS = 64


@dataclass(frozen=True)
class XrunCounts:
    """Driver xruns by kind, the priming callbacks, and the stream positions of the latest xruns."""

    input_overflow: int = 0
    input_underflow: int = 0
    output_overflow: int = 0
    output_underflow: int = 0
    priming: int = 0
    positions: tuple[int, ...] = ()     # input-stream sample position of each recent xrun, oldest first

    @property
    def total(self) -> int:
        return self.input_overflow + self.input_underflow + self.output_overflow + self.output_underflow

    def describe(self) -> str:
        """'2 (output underflow 2)', or '0'."""
        parts = [f"{name.replace('_', ' ')} {getattr(self, name)}" for name in XRUN_FLAGS if getattr(self, name)]
        return f"{self.total} ({', '.join(parts)})" if parts else "0"


@dataclass(frozen=True)
class LatencyStep:
    """The output delay moved by `step_ms` and stayed; `cause` is a sentence."""

    from_ms: float
    to_ms: float
    cause: str

    @property
    def step_ms(self) -> float:
        return self.to_ms - self.from_ms

    def sentence(self) -> str:
        return f"The output delay stepped {self.step_ms:+.0f} ms ({self.from_ms:.0f} → {self.to_ms:.0f} ms): {self.cause}"


class XrunLog:
    """See the module docstring. `window`: callbacks a delay must hold to count as a step;
    `threshold_s`: the smallest step reported (jitter of the time stamps stays well below)."""

    def __init__(self, rate: int, *, window: int = 128, threshold_s: float = 0.015) -> None:
        self.rate = rate
        self.window = window
        self.threshold_s = threshold_s
        self._counts = dict.fromkeys(XRUN_FLAGS + ("priming",), 0)
        self._positions = np.zeros(_EVENTS, np.int64)   # per recent xrun: input position,
        self._ticks = np.zeros(_EVENTS, np.int64)       # output delays seen before it,
        self._kinds = np.zeros(_EVENTS, np.int64)       # and its flags (bit i = XRUN_FLAGS[i])
        self._events = 0
        self._delay = np.full(2 * window, np.nan)    # the last 2 windows of output delays
        self._delays = 0
        self._baseline: float | None = None
        self._steady = 0          # output delays seen when the delay was last at its baseline
        self.steps: list[LatencyStep] = []

    # -- audio callbacks ------------------------------------------------------------------------------
    def flag(self, status: Any, position: int) -> bool:
        """Count the flags of one callback's `status`; True when it was an xrun."""
        if not status:
            return False
        kinds = 0
        for bit, name in enumerate(XRUN_FLAGS):
            if getattr(status, name, False):
                self._counts[name] += 1
                kinds |= 1 << bit
        if getattr(status, "priming_output", False):
            self._counts["priming"] += 1
        if kinds:
            i = self._events % _EVENTS
            self._positions[i], self._ticks[i], self._kinds[i] = position, self._delays, kinds
            self._events += 1
        return bool(kinds)

    def output_delay(self, seconds: float | None) -> None:
        if seconds is not None and 0.0 <= seconds < 2.0:
            self._delay[self._delays % len(self._delay)] = seconds
            self._delays += 1

    # -- control thread -------------------------------------------------------------------------------
    def counts(self) -> XrunCounts:
        recent = range(max(0, self._events - _EVENTS), self._events)
        return XrunCounts(**self._counts, positions=tuple(int(self._positions[i % _EVENTS]) for i in recent))

    def check(self) -> LatencyStep | None:
        """A new latency step (reported once), or None. Needs two windows of time stamps."""
        if self._delays < len(self._delay):
            return None
        k, w = self._delays, self.window
        idx = np.arange(k - 2 * w, k) % len(self._delay)
        older, newer = np.median(self._delay[idx[:w]]), np.median(self._delay[idx[w:]])
        if self._baseline is None:
            if abs(newer - older) < self.threshold_s:     # settled: this is the delay to keep
                self._baseline, self._steady = float(newer), k
            return None
        if abs(newer - self._baseline) < self.threshold_s:
            self._steady = k
            return None
        if abs(newer - older) >= self.threshold_s and k - self._steady < 2 * w:
            return None                                   # still moving: give it two windows to settle
        # Settled at a new level, or still wandering two windows later (a busy sound server: report
        # where it is now, and again two windows later if it keeps moving). It began after the last
        # steady check's windows started; an xrun may precede it a little.
        step = LatencyStep(1000.0 * self._baseline, 1000.0 * float(newer), self._cause(since=self._steady - w))
        self.steps.append(step)
        self._baseline, self._steady = float(newer), k
        return step

    def _cause(self, since: int) -> str:
        """The xruns flagged after output delay number `since` (the step happened in that span)."""
        recent = [i % _EVENTS for i in range(max(0, self._events - _EVENTS), self._events)
                  if self._ticks[i % _EVENTS] >= since]
        if not recent:
            return "no xrun was reported: the driver changed its buffer by itself."
        kinds = int(np.bitwise_or.reduce(self._kinds[recent]))
        names = ", ".join(name.replace("_", " ") for bit, name in enumerate(XRUN_FLAGS) if kinds >> bit & 1)
        return (f"after {len(recent)} driver xrun(s) ({names}): the driver restarted the stream with a "
                "different buffer fill.")


__all__ = ["LatencyStep", "XRUN_FLAGS", "XrunCounts", "XrunLog"]
