"""Main window over a fake engine: it builds, and the controls change the session config."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from app.engine_adapter import BUILTIN_DSP, default_voice  # noqa: E402
from app.values import DeviceRef  # noqa: E402
from app.widgets.device_combo import DeviceCombo  # noqa: E402
from tests.test_app_fakes import (FakeEngine, FakeSession, build_window, make_device, make_pack,  # noqa: E402
                                  settle, zip_folder)

pytestmark = pytest.mark.gui


def choose(combo: DeviceCombo, text: str) -> None:
    """Pick the row whose label contains `text`, as a user would (emits `activated`)."""
    row = next(i for i, label in enumerate(combo.labels()) if text in label)
    combo.setCurrentIndex(row)
    combo.activated.emit(row)


def test_window_builds_with_builtin_voice_and_grouped_devices(qtbot, tmp_path: Path) -> None:
    window = build_window(qtbot, tmp_path)
    assert window.bridge.config.voice == default_voice()
    assert window.voice_panel.voice_combo.currentData() == default_voice()
    labels = window.audio_panel.output_combo.labels()
    # host API headers, then their devices; virtual cable marked; input-only devices absent
    assert labels[0] == "System default output"
    assert labels.index("ALSA") < labels.index("    Speakers") < labels.index("PulseAudio")
    assert any("CoMo Live Virtual Mic" in label and "★" in label for label in labels)
    assert not any("Built-in Mic" in label for label in labels)
    assert "Studio Interface" in " ".join(window.audio_panel.input_combo.labels())
    assert "Suggested output" in window.audio_panel.cable_hint.text()
    # headers cannot be chosen
    model = window.audio_panel.output_combo.model()
    assert not model.item(labels.index("ALSA")).isSelectable()
    assert window.start_button.text().endswith("Start")


def test_choosing_devices_updates_session_config(qtbot, tmp_path: Path) -> None:
    window = build_window(qtbot, tmp_path)
    panel = window.audio_panel
    choose(panel.input_combo, "Studio Interface")
    choose(panel.output_combo, "CoMo Live Virtual Mic")
    choose(panel.monitor_combo, "USB Headset")
    panel.channel_spin.setValue(3)
    panel.rate_combo.setCurrentIndex(panel.rate_combo.findData(48000))
    panel.rate_combo.activated.emit(panel.rate_combo.currentIndex())
    panel.monitor_gain.slider.setValue(-12 * 2)  # 0.5 dB steps
    config = window.bridge.session_config()
    assert (config.input_device, config.output_device, config.monitor_device) == (4, 3, 2)
    assert config.input_channel == 2 and config.sample_rate == 48000
    assert config.settings.monitor_gain_db == -12.0
    assert window.bridge.config.input_device == DeviceRef("Studio Interface", "JACK")
    assert "Good" in panel.cable_hint.text()
    choose(panel.monitor_combo, "Off")
    assert window.bridge.session_config().monitor_device is None


def test_choosing_voice_and_speaker_updates_session_config(qtbot, tmp_path: Path) -> None:
    window = build_window(qtbot, tmp_path)
    pack = make_pack(tmp_path / "elsewhere" / "diva", name="Diva", speakers={"soft": 0, "belt": 1, "head": 2})
    window.voice_panel.choose_folder(str(pack))
    settle(qtbot, window.bridge)
    panel = window.voice_panel
    assert panel.voice_combo.currentText() == "Diva"
    assert [panel.speaker_combo.itemText(i) for i in range(panel.speaker_combo.count())] == ["soft", "belt", "head"]
    panel.speaker_combo.setCurrentIndex(2)
    panel.speaker_combo.activated.emit(2)
    panel.pitch.slider.setValue(7)
    panel.gate.slider.setValue(-45)
    panel.bypass.setChecked(True)
    config = window.bridge.session_config()
    assert Path(config.voice) == pack
    assert (config.settings.speaker, config.settings.pitch, config.settings.gate_db) == (2, 7.0, -45.0)
    assert config.settings.bypass is True
    # switching back to the built-in voice through the picker
    panel.voice_combo.setCurrentIndex(panel.voice_combo.findData(BUILTIN_DSP))
    panel.voice_combo.activated.emit(panel.voice_combo.currentIndex())
    settle(qtbot, window.bridge)
    assert window.bridge.session_config().voice == BUILTIN_DSP
    assert window.bridge.session_config().settings.speaker == 0  # clamped to the voice's speakers


def test_corrupt_voice_pack_shows_error_and_app_stays_usable(qtbot, tmp_path: Path) -> None:
    session = FakeSession()
    window = build_window(qtbot, tmp_path, session=session)
    pack = make_pack(tmp_path / "broken")
    (pack / "vocoder.onnx").write_bytes(b"truncated")
    window.voice_panel.choose_folder(str(pack))
    settle(qtbot, window.bridge)
    assert not window.banner.isHidden()
    assert "Voice pack refused" in window.banner.text() and "vocoder.onnx" in window.banner.text()
    assert window.statusBar().currentMessage() == window.banner.text()
    assert window.bridge.config.voice == default_voice()
    assert window.voice_panel.voice_combo.currentData() == default_voice()
    # a manifest that is not JSON at all
    (pack / "voice.json").write_text("{ not json")
    window.voice_panel.choose_folder(str(pack))
    settle(qtbot, window.bridge)
    assert "not valid JSON" in window.banner.text()
    # still usable: start works with the built-in voice
    window.start_button.click()
    qtbot.waitUntil(lambda: window.bridge.state == "running", timeout=3000)
    assert session.started[-1].voice == default_voice()


def test_import_zip_through_panel(qtbot, tmp_path: Path) -> None:
    engine = FakeEngine(tmp_path / "voices")
    window = build_window(qtbot, tmp_path, engine=engine)
    good = zip_folder(make_pack(tmp_path / "src", name="Zipped"), tmp_path / "zipped.zip")
    window.voice_panel.import_zip(str(good))
    settle(qtbot, window.bridge)
    assert window.voice_panel.voice_combo.currentText() == "Zipped"
    assert Path(window.bridge.config.voice) == tmp_path / "voices" / "zipped"
    bad = tmp_path / "bad.zip"
    import zipfile
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("../../oops.txt", b"x")
        archive.writestr("voice.json", b"{}")
    window.voice_panel.import_zip(str(bad))
    settle(qtbot, window.bridge)
    assert "Import refused" in window.banner.text() and "outside" in window.banner.text()
    assert sorted(p.name for p in (tmp_path / "voices").iterdir()) == ["zipped"]


def test_timing_shows_latency_before_start(qtbot, tmp_path: Path) -> None:
    window = build_window(qtbot, tmp_path)
    timing = window.timing_panel
    # fake: 10 in + 80 block + 40 lookahead + 20 crossfade + 2 resampling + 10 out
    qtbot.waitUntil(lambda: timing.estimate.text() == "Estimated delay ≈ 162 ms", timeout=3000)
    timing.block.setValue(50)
    timing.block.setValue(40)  # a drag: both values are coalesced into one estimate
    qtbot.waitUntil(lambda: timing.estimate.text() == "Estimated delay ≈ 122 ms", timeout=3000)
    assert "block 40" in timing.detail.text()
    assert "Smaller block" in timing.explain.text() and "Lookahead" in timing.explain.text()
    assert window.readouts_panel.total_value.text() == "122 ms"
    assert "estimate" in window.readouts_panel.latency_title.text()
    assert window.bridge.session_config().settings.block_ms == 40.0
    assert timing.budget.text() == "Auto (measured)"
    timing.budget.setValue(20)
    assert window.bridge.session_config().settings.compute_budget_ms == 20.0


def test_estimate_failure_is_shown(qtbot, tmp_path: Path) -> None:
    class NoDevices(FakeSession):
        def estimate_latency(self, config):
            raise RuntimeError("No input devices were found.")

    window = build_window(qtbot, tmp_path, session=NoDevices())
    qtbot.waitUntil(lambda: "No input devices" in window.timing_panel.detail.text(), timeout=3000)
    assert window.timing_panel.estimate.text() == "Estimated delay: unknown"
    assert window.readouts_panel.total_value.text() == "—"


def test_invalid_setting_is_refused_with_message(qtbot, tmp_path: Path) -> None:
    window = build_window(qtbot, tmp_path)
    assert not window.bridge.set_settings(pitch=99)
    assert "pitch must be between" in window.banner.text()
    assert window.bridge.config.settings.pitch == 0.0


def test_shortcuts_drive_the_bridge(qtbot, tmp_path: Path) -> None:
    session = FakeSession()
    window = build_window(qtbot, tmp_path, session=session)
    window.voice_panel.choose_folder(str(make_pack(tmp_path / "two", speakers={"a": 0, "b": 1})))
    settle(qtbot, window.bridge)
    actions = window._actions
    actions["pitch_up"].trigger()
    actions["pitch_up"].trigger()
    actions["pitch_down"].trigger()
    assert window.bridge.config.settings.pitch == 1.0
    assert window.voice_panel.pitch.label.text() == "+1 st"
    actions["bypass"].trigger()
    assert window.bridge.config.settings.bypass and window.voice_panel.bypass.isChecked()
    actions["next_speaker"].trigger()
    assert window.bridge.config.settings.speaker == 1
    actions["next_speaker"].trigger()
    assert window.bridge.config.settings.speaker == 0
    window.run_command("toggle")
    qtbot.waitUntil(lambda: window.bridge.state == "running", timeout=3000)
    actions["pitch_up"].trigger()  # live: reaches the running session
    qtbot.waitUntil(lambda: {"pitch": 2.0} in session.updates, timeout=3000)
    # shortcuts are visible where the user looks
    assert "Ctrl+Space" in window.start_button.toolTip()
    assert "Ctrl+B" in window.voice_panel.bypass.toolTip()
    assert actions["toggle"].shortcut().toString() == "Ctrl+Space"
    menu_titles = [a.text() for a in window.menuBar().actions()]
    assert "&Controls" in menu_titles
    assert "Linux/X11" in window.hotkey_note.text() or "Wayland" in window.hotkey_note.text()


def test_virtual_mic_buttons(qtbot, tmp_path: Path) -> None:
    engine = FakeEngine(tmp_path / "voices")
    window = build_window(qtbot, tmp_path, engine=engine)
    assert window.audio_panel.create_mic_button.isEnabled()
    assert window.bridge.config.output_device is None
    window.audio_panel.create_mic_button.click()
    qtbot.waitUntil(lambda: window.bridge.config.output_device is not None, timeout=5000)
    assert engine.mic_calls == ["create"]
    # the output was the default: the converted voice now goes into the virtual mic
    assert window.bridge.config.output_device.name == "CoMo Live Virtual Mic"
    assert any("New Virtual Mic" in label for label in window.audio_panel.output_combo.labels())
    assert "Created" in window.statusBar().currentMessage()

    other = build_window(qtbot, tmp_path, engine=FakeEngine(tmp_path / "v2", virtual_mic=False))
    assert not other.audio_panel.create_mic_button.isEnabled()
    assert other.audio_panel.create_mic_button.toolTip() == "Only on Linux with PulseAudio."


def test_refresh_button_rescans_so_a_newly_plugged_device_appears(qtbot, tmp_path: Path) -> None:
    engine = FakeEngine(tmp_path / "voices")
    window = build_window(qtbot, tmp_path, engine=engine)
    panel = window.audio_panel
    engine.plugged.append(make_device(12, "Fresh Headset", "ALSA", outputs=2))   # plugged in now
    panel.refresh_button.click()
    qtbot.waitUntil(lambda: any("Fresh Headset" in label for label in panel.monitor_combo.labels()), timeout=5000)
