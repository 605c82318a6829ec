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

from app.main_window import open_main_window  # noqa: E402
from tests.test_app_fakes import (FakeEngine, FakeSession, build_window, make_pack, settle,  # noqa: E402
                                  zip_folder)

pytestmark = pytest.mark.gui

SLOW_S = 5.0          # how long a slow engine call holds out for the GUI's ticks
TICKS_WANTED = 5


class GuiTicks:
    """A 10 ms QTimer on the GUI thread; `slow_call()` blocks until it ticked TICKS_WANTED more times."""

    def __init__(self) -> None:
        self.ticks = 0
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)
        self.timer.start()
        self.outcomes: list[str] = []
        self.in_call = threading.Event()

    def _tick(self) -> None:
        self.ticks += 1

    def slow_call(self) -> None:
        """The deliberately slow engine call (runs wherever the bridge runs engine work)."""
        self.in_call.set()
        wanted = self.ticks + TICKS_WANTED
        given_up = threading.Event()
        threading.Timer(SLOW_S, given_up.set).start()
        while self.ticks < wanted and not given_up.is_set():
            given_up.wait(0.005)
        self.outcomes.append("gui kept running" if self.ticks >= wanted else "gui was blocked")
        self.in_call.clear()


class SlowEngine(FakeEngine):
    """FakeEngine whose calls named in `slow` wait for the GUI's ticks first."""

    def __init__(self, voices: Path, ticks: GuiTicks, slow: set[str] = frozenset()) -> None:
        super().__init__(voices)
        self.ticks = ticks
        self.slow = set(slow)

    def _maybe_slow(self, name: str) -> None:
        if name in self.slow:
            self.ticks.slow_call()

    def rescan_devices(self) -> None:
        self._maybe_slow("rescan_devices")
        super().rescan_devices()

    def list_devices(self):
        self._maybe_slow("list_devices")
        return super().list_devices()

    def voice_info(self, spec: str, verify: bool = True):
        self._maybe_slow("voice_info(verify)" if verify else "voice_info")
        return super().voice_info(spec, verify)

    def installed_voices(self):
        self._maybe_slow("installed_voices")
        return super().installed_voices()

    def validate_pack(self, folder: Path) -> set[str]:
        self._maybe_slow("validate_pack")
        return super().validate_pack(folder)

    def virtual_mic_support(self) -> tuple[bool, str]:
        self._maybe_slow("virtual_mic_support")
        return super().virtual_mic_support()

    def create_virtual_mic(self) -> str:
        self._maybe_slow("create_virtual_mic")
        return super().create_virtual_mic()


class SlowSession(FakeSession):
    def __init__(self, ticks: GuiTicks) -> None:
        super().__init__()
        self.ticks = ticks
        self.slow_start = False

    def start(self, config):
        if self.slow_start:
            self.ticks.slow_call()
        return super().start(config)


#: action -> the engine calls it makes slow (list_devices follows every rescan, virtual mic and import).
ACTIONS = {
    "rescan devices": {"rescan_devices", "list_devices"},
    "refresh button": {"rescan_devices", "list_devices"},
    "list devices": {"list_devices"},
    "list voices": {"installed_voices"},
    "check a voice": {"voice_info(verify)"},
    "import a voice": {"validate_pack", "voice_info(verify)", "installed_voices"},
    "create virtual mic": {"create_virtual_mic", "list_devices"},
    "start": set(),
}


@pytest.mark.parametrize("action", list(ACTIONS))
def test_gui_thread_keeps_running_during_a_slow_engine_call(qtbot, tmp_path: Path, action: str) -> None:
    ticks = GuiTicks()
    session, engine = SlowSession(ticks), SlowEngine(tmp_path / "voices", ticks)
    window = build_window(qtbot, tmp_path, session=session, engine=engine)
    bridge = window.bridge
    engine.slow = ACTIONS[action]
    session.slow_start = action == "start"
    pack = make_pack(tmp_path / "elsewhere" / "diva", name="Diva")
    if action == "rescan devices":
        bridge.refresh_devices(rescan=True)
    elif action == "refresh button":
        window.audio_panel.refresh_button.click()
    elif action == "list devices":
        bridge.refresh_devices(rescan=False)
    elif action == "list voices":
        bridge.refresh_voices()
    elif action == "check a voice":
        window.voice_panel.choose_folder(str(pack))
    elif action == "import a voice":
        window.voice_panel.import_zip(str(zip_folder(pack, tmp_path / "diva.zip")))
    elif action == "create virtual mic":
        bridge.create_virtual_mic()
    else:
        bridge.start()
    assert ticks.outcomes == []          # the call returned before the engine work finished
    if action in ("check a voice", "import a voice"):   # the voice is not chosen yet: Start waits
        assert bridge.voice_loading and not window.start_button.isEnabled()
        assert window.voice_panel.voice_status.isVisibleTo(window)
        assert not window.voice_panel.voice_combo.isEnabled()
        bridge.start()                    # a hotkey meanwhile: refused, nothing started
        assert bridge.state == "stopped"
    settle(qtbot, bridge, timeout_ms=int(3 * SLOW_S * 1000) * max(1, len(ACTIONS[action])))
    assert ticks.outcomes and set(ticks.outcomes) == {"gui kept running"}, ticks.outcomes
    if action == "start":
        qtbot.waitUntil(lambda: bridge.state == "running", timeout=5000)
        assert session.started and len(session.started) == 1
    if action == "create virtual mic":    # then a device list (slow too), then the output is the cable
        assert bridge.config.output_device is not None
    if action in ("check a voice", "import a voice"):
        assert bridge.voice.name == "Diva" and window.voice_panel.voice_combo.currentText() == "Diva"
        assert window.start_button.isEnabled() and window.voice_panel.voice_combo.isEnabled()
        assert not window.voice_panel.voice_status.isVisibleTo(window)
    ticks.timer.stop()


def test_window_opens_before_the_engine_answers(qtbot, tmp_path: Path) -> None:
    """Startup's device list, voice list, saved-voice check and virtual-mic probe (pactl) are slow:
    the window is built and the GUI keeps ticking; Start waits for the saved voice."""
    ticks = GuiTicks()
    engine = SlowEngine(tmp_path / "voices", ticks,
                        slow={"list_devices", "installed_voices", "voice_info", "virtual_mic_support"})
    window = open_main_window(store=None, session=FakeSession(), engine=engine)
    qtbot.addWidget(window)
    assert ticks.outcomes == []
    assert not window.start_button.isEnabled()                  # the saved voice is being checked
    assert not window.voice_panel.voice_combo.isEnabled()       # "Loading voices…"
    assert not window.audio_panel.create_mic_button.isEnabled()  # support not known yet
    settle(qtbot, window.bridge, timeout_ms=int(4 * 3 * SLOW_S * 1000))
    assert ticks.outcomes == ["gui kept running"] * 4
    assert window.start_button.isEnabled() and window.voice_panel.voice_combo.isEnabled()
    assert window.audio_panel.create_mic_button.isEnabled()
    assert window.audio_panel.input_combo.labels()
    ticks.timer.stop()
