"""Settings persist per user (JSON in a config folder); a missing device falls back with a message."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from app.engine_adapter import BUILTIN_DSP  # noqa: E402
from app.settings_store import CONFIG_DIR_ENV, AppConfig, SettingsStore, config_dir  # noqa: E402
from app.values import DeviceRef  # noqa: E402
from engine.settings import Settings  # noqa: E402
from tests.test_app_fakes import DEFAULT_DEVICES, FakeEngine, build_window, make_pack, settle  # noqa: E402

pytestmark = pytest.mark.gui


def test_store_round_trip_and_bad_values(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path / "cfg")
    assert store.load() == (AppConfig(), [])  # first run: defaults, no warnings
    config = AppConfig(input_device=DeviceRef("Mic", "WASAPI"), sample_rate=48000, input_channel=1,
                       voice="/voices/diva", settings=Settings(pitch=5, block_ms=60), record_dir="/rec")
    store.save(config)
    assert store.load() == (config, [])
    data = json.loads(store.path.read_text())
    data["settings"].update(pitch=99, block_ms="fast", gate_db=True, future_knob=1)
    data["sample_rate"] = -5
    data["output_device"] = "Speakers"
    store.path.write_text(json.dumps(data))
    loaded, warnings = store.load()
    assert loaded.settings == Settings(pitch=0, block_ms=80)  # bad values dropped one by one
    assert loaded.sample_rate is None and loaded.output_device is None
    assert loaded.input_device == DeviceRef("Mic", "WASAPI")  # good values kept
    assert len(warnings) == 6 and any("pitch must be between" in w for w in warnings)
    assert "kept as" in warnings[-1] and store.load() == (loaded, [])  # rewritten clean: said once
    data["settings"] = {"bypass": True, "pitch": 2}
    store.path.write_text(json.dumps(data))
    assert store.load()[0].settings == Settings(pitch=2, bypass=False)  # never start on air unconverted
    store.path.write_text("{ corrupt")
    config, warnings = store.load()
    assert config == AppConfig() and "corrupt" in warnings[0]


def test_config_dir_env(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(CONFIG_DIR_ENV, str(tmp_path / "x"))
    assert config_dir() == tmp_path / "x"
    assert SettingsStore().path == tmp_path / "x" / "settings.json"


def test_settings_persist_across_windows(qtbot, tmp_path: Path) -> None:
    store = SettingsStore(tmp_path / "cfg")
    voices = tmp_path / "voices"
    pack = make_pack(voices / "diva", name="Diva")
    window = build_window(qtbot, tmp_path, engine=FakeEngine(voices), store=store)
    bridge = window.bridge
    bridge.set_device("input", DeviceRef("USB Headset", "ALSA"))
    bridge.set_device("monitor", DeviceRef("Speakers", "ALSA"))
    bridge.set_voice(str(pack))
    settle(qtbot, bridge)
    bridge.set_settings(pitch=-3, block_ms=60, lookahead_ms=20, input_gain_db=6, monitor_gain_db=-9, speaker=1)
    qtbot.waitUntil(lambda: store.path.exists() and json.loads(store.path.read_text())["settings"]["pitch"] == -3,
                    timeout=3000)  # saved after a short settle delay
    window.close()

    again = build_window(qtbot, tmp_path, engine=FakeEngine(voices), store=store)
    config = again.bridge.config
    assert config.input_device == DeviceRef("USB Headset", "ALSA")
    assert config.monitor_device == DeviceRef("Speakers", "ALSA")
    assert Path(config.voice) == pack and again.voice_panel.voice_combo.currentText() == "Diva"
    assert (config.settings.pitch, config.settings.block_ms, config.settings.lookahead_ms) == (-3, 60, 20)
    assert (config.settings.input_gain_db, config.settings.monitor_gain_db, config.settings.speaker) == (6, -9, 1)
    # the widgets show the restored values
    assert again.timing_panel.block.value() == 60
    assert again.audio_panel.input_combo.current_ref() == DeviceRef("USB Headset", "ALSA")
    assert again.voice_panel.speaker_combo.currentData() == 1
    assert again.audio_panel.monitor_gain.label.text() == "-9.0 dB"
    assert again.banner.isHidden()


def test_missing_device_falls_back_with_message(qtbot, tmp_path: Path) -> None:
    store = SettingsStore(tmp_path / "cfg")
    store.save(AppConfig(input_device=DeviceRef("USB Headset", "ALSA"),
                         output_device=DeviceRef("CoMo Live Virtual Mic", "PulseAudio")))
    unplugged = [d for d in DEFAULT_DEVICES if d.name != "USB Headset"]
    window = build_window(qtbot, tmp_path, engine=FakeEngine(tmp_path / "voices", devices=unplugged), store=store)
    assert window.bridge.config.input_device is None
    assert window.bridge.config.output_device == DeviceRef("CoMo Live Virtual Mic", "PulseAudio")
    assert not window.banner.isHidden()
    assert "USB Headset (ALSA)" in window.banner.text() and "not connected" in window.banner.text()
    assert "Built-in Mic" in window.banner.text()  # names the default it falls back to
    assert window.audio_panel.input_combo.currentIndex() == 0
    assert window.bridge.session_config().input_device is None


def test_missing_saved_voice_falls_back_to_builtin(qtbot, tmp_path: Path) -> None:
    store = SettingsStore(tmp_path / "cfg")
    store.save(AppConfig(voice=str(tmp_path / "deleted-pack")))
    window = build_window(qtbot, tmp_path, store=store)
    assert window.bridge.config.voice == BUILTIN_DSP
    assert "Voice could not be loaded" in window.banner.text() and "deleted-pack" in window.banner.text()


def test_first_run_suggests_virtual_cable(qtbot, tmp_path: Path) -> None:
    window = build_window(qtbot, tmp_path, store=SettingsStore(tmp_path / "fresh"))
    assert window.bridge.config.output_device == DeviceRef("CoMo Live Virtual Mic", "PulseAudio")
    assert "virtual cable" in window.statusBar().currentMessage()
