"""Start/stop through the bridge with a fake session: state, readouts, errors, threading."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from app.bridge import AudioBridge  # noqa: E402
from app.values import Readouts  # noqa: E402
from tests.test_app_fakes import FakeEngine, FakeSession, build_window, make_pack, settle  # noqa: E402

pytestmark = pytest.mark.gui


def start(qtbot, window) -> None:
    window.start_button.click()
    qtbot.waitUntil(lambda: window.bridge.state == "running", timeout=3000)


def test_start_stop_with_fake_session(qtbot, tmp_path: Path) -> None:
    session = FakeSession(start_delay_s=0.2)
    window = build_window(qtbot, tmp_path, session=session)
    window.start_button.click()
    assert window.bridge.state == "starting"  # start runs off the GUI thread
    assert window.start_button.text().endswith("Stop")
    qtbot.waitUntil(lambda: window.bridge.state == "running", timeout=3000)
    assert window.state_label.text() == "LIVE"
    assert len(session.started) == 1 and session.started[0].settings == window.bridge.config.settings
    # on_state came from the session's worker thread, yet the widgets were updated (GUI thread)
    assert all(name.startswith("como-session") for name in session.state_threads)
    assert threading.current_thread() is threading.main_thread()
    window.start_button.click()
    qtbot.waitUntil(lambda: window.bridge.state == "stopped", timeout=3000)
    assert session.stops == 1 and not session.running
    assert window.start_button.text().endswith("Start")


def test_readouts_change_while_running(qtbot, tmp_path: Path) -> None:
    window = build_window(qtbot, tmp_path)
    received: list[Readouts] = []
    window.bridge.readoutsUpdated.connect(received.append)
    start(qtbot, window)
    panel = window.readouts_panel
    t0 = time.monotonic()
    qtbot.wait(600)
    elapsed = time.monotonic() - t0
    assert len(received) / elapsed >= 10, f"{len(received)} readouts in {elapsed:.2f} s"
    first = (panel.compute_text.text(), panel.input_meter.level_db, panel.underruns.text())
    qtbot.wait(300)
    second = (panel.compute_text.text(), panel.input_meter.level_db, panel.underruns.text())
    assert first != second
    assert "measured" in panel.latency_title.text()
    assert panel.latency_values["Input buffer"].text() == "12.0 ms"  # the measured, not the estimated, 10
    assert panel.total_value.text() == "168 ms"  # 12 + 80 + 40 + 20 + 2 + 14
    assert "budget" in panel.compute_text.text() and "80.0 ms" in panel.compute_text.text()
    assert panel.provider.text() == "Provider: CPU"
    assert "CUDA is not available" in panel.provider_note.text()
    assert panel.input_meter.level_db > -60 and panel.output_meter.level_db > -60
    # p99 is 90 % of the budget in the fake: "near the limit", coloured orange
    assert "near the limit" in panel.compute_text.text() and "#f39c12" in panel.compute_text.styleSheet()


def test_live_safe_update_reaches_session_and_restart_keys_restart(qtbot, tmp_path: Path) -> None:
    session = FakeSession()
    window = build_window(qtbot, tmp_path, session=session)
    start(qtbot, window)
    window.voice_panel.pitch.slider.setValue(5)
    qtbot.waitUntil(lambda: {"pitch": 5.0} in session.updates, timeout=3000)
    window.timing_panel.block.setValue(120)
    qtbot.waitUntil(lambda: {"block_ms": 120.0} in session.updates, timeout=3000)
    # a device change restarts the session with the new device
    combo = window.audio_panel.input_combo
    row = next(i for i, label in enumerate(combo.labels()) if "USB Headset" in label)
    combo.setCurrentIndex(row)
    combo.activated.emit(row)
    qtbot.waitUntil(lambda: len(session.started) == 2 and window.bridge.state == "running", timeout=3000)
    assert session.started[-1].input_device == 2


def test_device_failure_shows_error_and_app_recovers(qtbot, tmp_path: Path) -> None:
    session = FakeSession(fail_start="Speakers is unavailable: it is in use by another program.")
    window = build_window(qtbot, tmp_path, session=session)
    window.start_button.click()
    qtbot.waitUntil(lambda: window.bridge.state == "error", timeout=3000)
    assert "in use by another program" in window.banner.text()
    assert not window.banner.isHidden()
    assert window.start_button.isEnabled() and window.start_button.text().endswith("Start")
    session.fail_start = None  # the user closed the other program
    start(qtbot, window)
    assert window.banner.isHidden()


def test_gpu_provider_missing_is_reported(qtbot, tmp_path: Path) -> None:
    """An error raised by the session while loading (e.g. the CUDA provider) reaches the banner."""
    class NoGpu(FakeSession):
        def start(self, config):
            raise RuntimeError("CUDAExecutionProvider is not available: libcudnn.so.9 was not found")

    window = build_window(qtbot, tmp_path, session=NoGpu())
    window.start_button.click()
    qtbot.waitUntil(lambda: window.bridge.state == "error", timeout=3000)
    assert "Could not start" in window.banner.text() and "libcudnn" in window.banner.text()


def test_session_error_while_running(qtbot, tmp_path: Path) -> None:
    session = FakeSession()
    window = build_window(qtbot, tmp_path, session=session)
    start(qtbot, window)
    # the device vanishes: the session reports from its audio thread
    worker = threading.Thread(target=lambda: session.on_state("error", "USB Headset was unplugged."))
    worker.start()
    worker.join()
    qtbot.waitUntil(lambda: window.bridge.state == "error", timeout=3000)
    assert "unplugged" in window.banner.text()
    assert window.state_label.text().startswith("Error")


def test_record_needs_folder_then_restarts_with_record_dir(qtbot, tmp_path: Path) -> None:
    session = FakeSession()
    window = build_window(qtbot, tmp_path, session=session)
    assert not window.record_button.isEnabled()
    window.bridge.set_recording(True)
    assert "Choose a folder" in window.banner.text()
    window.choose_record_dir(str(tmp_path / "takes"))
    assert window.record_button.isEnabled()
    start(qtbot, window)
    assert session.started[-1].record_dir is None
    window.record_button.click()
    qtbot.waitUntil(lambda: len(session.started) == 2 and window.bridge.state == "running", timeout=3000)
    assert session.started[-1].record_dir == str(tmp_path / "takes")


def test_bridge_accepts_a_session_instance_without_window(qtbot, tmp_path: Path) -> None:
    """The lead's integration test passes a real LiveSession the same way."""
    session = FakeSession()
    bridge = AudioBridge(session=session, engine=FakeEngine(tmp_path / "voices"))
    bridge.initialize()
    settle(qtbot, bridge)
    with qtbot.waitSignal(bridge.stateChanged, check_params_cb=lambda s, m: s == "running", timeout=3000):
        bridge.start()
    assert bridge.session is session
    bridge.set_voice(str(make_pack(tmp_path / "p")))
    qtbot.waitUntil(lambda: len(session.started) == 2, timeout=3000)  # voice change restarts
    bridge.shutdown()
    assert not session.running


def test_readouts_say_the_budget_is_auto_and_why_it_changed(qtbot, tmp_path: Path) -> None:
    """The adaptive budget's state reaches the readouts: '(auto)' beside the budget, its last change
    (and any latency resync) among the notes."""
    from app.engine_adapter import readouts_from_stats
    from engine.session import LiveStats

    window = build_window(qtbot, tmp_path)
    panel = window.readouts_panel
    note = "1 late block(s): compute budget raised from 6.2 to 9.4 ms (latency +3.1 ms, one short fade)."
    resync = "The output fell behind the input by 25 ms (a driver underrun or a stalled device); re-synced."
    stats = LiveStats(state="running", compute_p50_ms=3.0, compute_p99_ms=5.0, block_budget_ms=9.4, budget_auto=True,
                      budget_note=note, notes=(resync,))
    panel.show_readouts(readouts_from_stats(stats))
    assert "of 9.4 ms budget (auto)" in panel.compute_text.text()
    assert note in panel.notes.text() and resync in panel.notes.text() and not panel.notes.isHidden()
