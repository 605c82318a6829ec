"""The GUI thread never waits on engine work: a deliberately slow engine call runs while a QTimer
on the GUI thread keeps firing.

Each slow call blocks until the GUI thread's timer has ticked a few times *during* the call (or
gives up after `SLOW_S` seconds). A GUI thread that waited for the call could not tick, so the
call would time out and the test fails; no speed is measured.
"""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import threading  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from PyQt6.QtCore import QTimer  # noqa: E402

from tests.test_app_fakes import FakeEngine, FakeSession, build_window  # noqa: E402

pytestmark = pytest.mark.gui

SLOW_S = 5.0          # how long a slow engine call holds out for the GUI's ticks
TICKS_WANTED = 5


class GuiTicks:
    """A 10 ms QTimer on the GUI thread; `slow_call()` blocks until it ticked TICKS_WANTED times."""

    def __init__(self) -> None:
        self.ticks = 0
        self.during_call = threading.Event()
        self.call_started = threading.Event()
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)
        self.timer.start()
        self.outcomes: list[str] = []

    def _tick(self) -> None:
        if self.call_started.is_set():
            self.ticks += 1
            if self.ticks >= TICKS_WANTED:
                self.during_call.set()

    def slow_call(self) -> None:
        """The deliberately slow engine call (runs wherever the bridge runs engine work)."""
        self.call_started.set()
        ok = self.during_call.wait(SLOW_S)
        self.outcomes.append("gui kept running" if ok else "gui was blocked")


class SlowEngine(FakeEngine):
    def __init__(self, voices: Path, ticks: GuiTicks) -> None:
        super().__init__(voices)
        self.ticks = ticks

    def rescan_devices(self) -> None:
        self.ticks.slow_call()

    def create_virtual_mic(self) -> str:
        self.ticks.slow_call()
        return super().create_virtual_mic()


class SlowSession(FakeSession):
    def __init__(self, ticks: GuiTicks) -> None:
        super().__init__()
        self.ticks = ticks

    def start(self, config):
        self.ticks.slow_call()
        return super().start(config)


@pytest.mark.parametrize("action", ["rescan devices", "create virtual mic", "start"])
def test_gui_thread_keeps_running_during_a_slow_engine_call(qtbot, tmp_path: Path, action: str) -> None:
    ticks = GuiTicks()
    window = build_window(qtbot, tmp_path, session=SlowSession(ticks), engine=SlowEngine(tmp_path / "voices", ticks))
    bridge = window.bridge
    if action == "rescan devices":
        bridge.refresh_devices(rescan=True)
    elif action == "create virtual mic":
        bridge.create_virtual_mic()
    else:
        bridge.start()
    assert ticks.outcomes == []          # the call returned before the engine work finished
    qtbot.waitUntil(lambda: len(ticks.outcomes) >= 1, timeout=int(3 * SLOW_S * 1000))
    assert ticks.outcomes[0] == "gui kept running"
    if action == "start":
        qtbot.waitUntil(lambda: bridge.state == "running", timeout=5000)
    if action == "create virtual mic":    # then a device rescan (slow too), then the output is the cable
        qtbot.waitUntil(lambda: bridge.config.output_device is not None, timeout=int(3 * SLOW_S * 1000))
        assert set(ticks.outcomes) == {"gui kept running"}
    ticks.timer.stop()
