"""The window over the REAL LiveSession and engine, with engine.audio.streams.SimulatedBackend as the sound card."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from app.engine_adapter import EngineAdapter  # noqa: E402
from app.main_window import open_main_window  # noqa: E402
from app.values import DeviceRef  # noqa: E402
from tests.test_app_fakes import settle  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.slow]
RATE = 48000


@pytest.fixture()
def live(qtbot, tmp_path: Path, monkeypatch):
    from engine.audio.streams import SimulatedBackend

    monkeypatch.setenv("COMO_LIVE_VOICES", str(tmp_path / "voices"))
    t = np.arange(RATE * 30) / RATE
    singing = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    backend = SimulatedBackend(signal=singing, rate=RATE)
    window = open_main_window(store=None, engine=EngineAdapter(backend=backend))
    qtbot.addWidget(window)
    settle(qtbot, window.bridge)
    window.bridge.set_device("input", DeviceRef("Sim Microphone", "Simulated"))
    window.bridge.set_device("output", DeviceRef("Sim Cable", "Simulated"))
    window.bridge.set_device("monitor", DeviceRef("Sim Headphones", "Simulated"))
    return window, backend


def test_real_session_estimate_start_readouts_stop(qtbot, live) -> None:
    window, backend = live
    timing, readouts = window.timing_panel, window.readouts_panel
    qtbot.waitUntil(lambda: timing.estimate.text().startswith("Estimated delay ≈"), timeout=20000)
    estimate_ms = float(timing.estimate.text().split("≈")[1].split()[0])
    assert 80 < estimate_ms < 400  # an 80 ms block plus the voice's delay, compute budget and buffers
    # the built-in voice has its own fixed delay: the panel says lookahead/crossfade are not used
    assert "does not use lookahead or crossfade" in timing.detail.text()
    window.start_button.click()
    qtbot.waitUntil(lambda: window.bridge.state == "running", timeout=20000)
    qtbot.waitUntil(lambda: readouts.input_meter.level_db > -30 and "budget" in readouts.compute_text.text(),
                    timeout=10000)
    assert "measured" in readouts.latency_title.text()
    assert readouts.provider.text().startswith("Provider: CPU")
    assert window.state_label.text().startswith("LIVE ·")
    window.run_command("pitch_up")  # live-safe: applied without a restart
    qtbot.wait(300)
    assert window.bridge.state == "running"
    # the converted voice reaches the virtual cable (a latency after the first block: wait for it)
    qtbot.waitUntil(lambda: np.abs(backend.played["Sim Cable"]).max() > 0.01, timeout=10000)
    window.start_button.click()
    qtbot.waitUntil(lambda: window.bridge.state == "stopped", timeout=10000)
    qtbot.waitUntil(lambda: timing.estimate.text().startswith("Estimated delay ≈"), timeout=20000)


def test_real_session_device_unplugged_waits_then_resumes_by_itself(qtbot, live) -> None:
    window, backend = live
    readouts = window.readouts_panel
    window.start_button.click()
    qtbot.waitUntil(lambda: window.bridge.state == "running", timeout=20000)
    backend.disconnect("Sim Cable")
    qtbot.waitUntil(lambda: window.bridge.state == "waiting", timeout=10000)
    assert window.state_label.text() == "Waiting for the device…" and "Stop" in window.start_button.text()
    qtbot.waitUntil(lambda: "Waiting for Sim Cable [Simulated]" in readouts.notes.text(), timeout=5000)
    backend.reconnect("Sim Cable")
    qtbot.waitUntil(lambda: window.bridge.state == "running", timeout=20000)
    qtbot.waitUntil(lambda: "resumed 1×" in readouts.notes.text(), timeout=5000)
    assert "Waiting" not in readouts.notes.text() and window.banner.isHidden()
    window.start_button.click()
    qtbot.waitUntil(lambda: window.bridge.state == "stopped", timeout=10000)


def test_stop_while_waiting_for_a_device(qtbot, live) -> None:
    window, backend = live
    window.start_button.click()
    qtbot.waitUntil(lambda: window.bridge.state == "running", timeout=20000)
    backend.disconnect("Sim Cable")
    qtbot.waitUntil(lambda: window.bridge.state == "waiting", timeout=10000)
    window.start_button.click()
    qtbot.waitUntil(lambda: window.bridge.state == "stopped", timeout=10000)
    backend.reconnect("Sim Cable")
    qtbot.wait(1500)                       # longer than the reconnect period: nothing resumes
    assert window.bridge.state == "stopped" and not backend._streams


def test_engine_notes_are_shown(qtbot, live) -> None:
    """The monitor on the output device would be heard twice; the engine ignores it and says so."""
    window, _backend = live
    window.bridge.set_device("monitor", DeviceRef("Sim Cable", "Simulated"))
    window.start_button.click()
    qtbot.waitUntil(lambda: window.bridge.state == "running", timeout=20000)
    qtbot.waitUntil(lambda: "twice" in window.readouts_panel.notes.text(), timeout=5000)
    assert not window.readouts_panel.notes.isHidden()
    window.start_button.click()
    qtbot.waitUntil(lambda: window.bridge.state == "stopped", timeout=10000)


def test_builtin_speakers_are_named(qtbot, live) -> None:
    """The built-in voice's presets appear by name in the speaker picker (from engine.voices)."""
    window, _backend = live
    combo = window.voice_panel.speaker_combo
    names = [combo.itemText(i) for i in range(combo.count())]
    assert names and all(name.isidentifier() for name in names), names


def test_an_exported_voice_pack_runs_in_the_window(qtbot, live, ppg_pack) -> None:
    """A real voice pack (exported from official-layout checkpoints): its speakers are listed, the
    delay estimate includes its lookahead, and it converts on the simulated sound card."""
    window, backend = live
    window.bridge.set_voice(str(ppg_pack))
    combo = window.voice_panel.speaker_combo
    qtbot.waitUntil(lambda: [combo.itemText(i) for i in range(combo.count())] == ["singer0", "singer1"],
                    timeout=5000)
    timing = window.timing_panel
    qtbot.waitUntil(lambda: "lookahead" in timing.detail.text(), timeout=20000)
    window.start_button.click()
    qtbot.waitUntil(lambda: window.bridge.state == "running", timeout=20000)
    qtbot.waitUntil(lambda: window.readouts_panel.output_meter.level_db > -60, timeout=10000)
    assert window.readouts_panel.provider.text().startswith("Provider: CPU")
    window.start_button.click()
    qtbot.waitUntil(lambda: window.bridge.state == "stopped", timeout=10000)
    assert np.abs(backend.played["Sim Cable"]).max() > 0.001
