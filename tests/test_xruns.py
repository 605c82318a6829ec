"""engine.audio.xruns: driver xruns counted by kind, latency steps reported once with their cause."""
from __future__ import annotations

import numpy as np
import pytest

from engine.audio.streams import SimFlags
from engine.audio.xruns import XrunLog

RATE = 48000


def feed(log: XrunLog, delays, check_every: int = 8) -> list:
    """Output delays one callback at a time, `check()` every few callbacks (as the watchdog does)."""
    found = []
    for i, d in enumerate(delays):
        log.output_delay(float(d))
        if i % check_every == 0:
            step = log.check()
            if step is not None:
                found.append(step)
    return found


def test_flags_are_counted_by_kind_and_priming_is_not_an_xrun():
    log = XrunLog(RATE)
    assert not log.flag(SimFlags(), 0) and not log.flag(SimFlags(priming_output=True), 480)
    assert log.flag(SimFlags(output_underflow=True), 960)
    assert log.flag(SimFlags(input_overflow=True, output_underflow=True), 1440)
    c = log.counts()
    assert (c.total, c.output_underflow, c.input_overflow, c.priming) == (3, 2, 1, 1)
    assert c.positions == (960, 1440) and c.describe() == "3 (input overflow 1, output underflow 2)"
    for k in range(100):                          # the positions ring keeps the latest 64
        log.flag(SimFlags(output_underflow=True), 2000 + k)
    assert log.counts().positions[-1] == 2099 and len(log.counts().positions) == 64


def test_a_step_after_an_underrun_is_reported_once_with_its_cause():
    log = XrunLog(RATE)
    assert feed(log, np.full(400, 0.130)) == []
    log.flag(SimFlags(output_underflow=True), 123)
    steps = feed(log, np.full(600, 0.155))
    assert len(steps) == 1 and steps[0].step_ms == pytest.approx(25.0)
    assert "1 driver xrun(s) (output underflow)" in steps[0].cause
    assert steps[0].sentence().startswith("The output delay stepped +25 ms (130 → 155 ms)")
    back = feed(log, np.full(600, 0.130))         # and back, with no xrun this time
    assert len(back) == 1 and back[0].step_ms == pytest.approx(-25.0) and "no xrun" in back[0].cause


def test_jitter_under_the_threshold_is_not_a_step():
    rng = np.random.default_rng(0)
    log = XrunLog(RATE)
    assert feed(log, 0.030 + rng.uniform(-0.007, 0.007, 5000)) == []


def test_a_delay_that_keeps_wandering_is_reported_every_two_windows():
    log = XrunLog(RATE)
    feed(log, np.full(400, 0.140))
    wander = np.concatenate([np.linspace(0.14, 0.46, 1500), np.linspace(0.46, 0.14, 1500)])
    steps = feed(log, wander, check_every=1)
    assert 2 <= len(steps) <= len(wander) // (2 * log.window) + 1
    assert all(abs(s.step_ms) >= 15.0 for s in steps)
    assert max(s.to_ms for s in steps) > 300 and steps[-1].to_ms < 300
