"""Voice previews in the app: choosing a speaker plays its clip (monitor, else output; never on air)."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from app.settings_store import AppConfig, config_from_json, config_to_json  # noqa: E402
from engine.audio.devices import DeviceError  # noqa: E402
from engine.reference import load_reference  # noqa: E402
from tests.fixtures.references import add_reference, tone  # noqa: E402
from tests.test_app_fakes import FakeEngine, FakeSession, build_window, make_pack, settle  # noqa: E402
from tests.test_app_window import choose  # noqa: E402

pytestmark = pytest.mark.gui
RATE = 48000


class PreviewEngine(FakeEngine):
    """Records each preview with the samples the real loader gives for it; `failure` makes the device fail."""

    def __init__(self, voices: Path) -> None:
        super().__init__(voices)
        self.plays: list[tuple[str, str, Any, np.ndarray]] = []
        self.stops = 0
        self.failure: str | None = None

    def play_preview(self, spec: str, speaker: str, device: int | str | None) -> str:
        if self.failure:
            raise DeviceError(self.failure)
        self.plays.append((spec, speaker, device, load_reference(spec, speaker, RATE)))
        return "Fake device"

    def stop_preview(self) -> None:
        self.stops += 1


def _window(qtbot, tmp_path: Path, session: FakeSession | None = None) -> tuple[Any, PreviewEngine, Path]:
    engine = PreviewEngine(tmp_path / "voices")
    window = build_window(qtbot, tmp_path, session=session, engine=engine)
    pack = make_pack(tmp_path / "diva", name="Diva", speakers={"soft": 0, "belt": 1, "head": 2})
    add_reference(pack, "belt", tone(1.0, 24000, hz=330.0))
    add_reference(pack, "head", tone(1.0, 24000, hz=660.0))
    window.voice_panel.choose_folder(str(pack))
    settle(qtbot, window.bridge)
    return window, engine, pack


def _pick(window: Any, row: int) -> None:
    combo = window.voice_panel.speaker_combo
    combo.setCurrentIndex(row)
    combo.activated.emit(row)


def test_choosing_a_speaker_plays_its_clip_on_the_output(qtbot, tmp_path: Path) -> None:
    window, engine, pack = _window(qtbot, tmp_path)
    panel = window.voice_panel
    assert not panel.preview_button.isEnabled() and panel.preview_on_choice.isChecked()   # "soft" has no clip
    _pick(window, 1)
    settle(qtbot, window.bridge)
    [(spec, speaker, device, audio)] = engine.plays
    assert (Path(spec), speaker, device) == (pack, "belt", None)   # no monitor, not live: the default output
    peak_hz = np.argmax(np.abs(np.fft.rfft(audio))) * RATE / len(audio)
    assert abs(peak_hz - 330.0) < 2.0                                # belt's clip, not head's
    assert panel.preview_button.isEnabled()
    assert window.statusBar().currentMessage() == "Preview of belt on Fake device."
    window.run_command("next_speaker")                              # the hotkey previews too
    settle(qtbot, window.bridge)
    assert [p[1] for p in engine.plays] == ["belt", "head"]
    window.run_command("next_speaker")                              # soft: no clip, nothing played
    settle(qtbot, window.bridge)
    assert len(engine.plays) == 2
    panel.preview_button.click()                                    # no clip: the button is off, nothing happens
    _pick(window, 1)
    settle(qtbot, window.bridge)
    panel.preview_button.click()                                    # replay
    settle(qtbot, window.bridge)
    assert [p[1] for p in engine.plays] == ["belt", "head", "belt", "belt"]


def test_the_setting_turns_previews_off_and_persists(qtbot, tmp_path: Path) -> None:
    window, engine, _ = _window(qtbot, tmp_path)
    window.voice_panel.preview_on_choice.setChecked(False)
    assert window.bridge.config.preview_voices is False
    _pick(window, 2)
    settle(qtbot, window.bridge)
    assert engine.plays == []
    window.voice_panel.preview_button.click()                       # the button still plays on request
    settle(qtbot, window.bridge)
    assert [p[1] for p in engine.plays] == ["head"]
    saved = config_to_json(window.bridge.config)
    assert config_from_json(saved)[0].preview_voices is False
    assert config_from_json({**saved, "preview_voices": "no"})[0].preview_voices is True
    assert AppConfig().preview_voices is True


def test_monitor_is_preferred_and_the_cable_is_never_used_while_live(qtbot, tmp_path: Path) -> None:
    session = FakeSession()
    window, engine, _ = _window(qtbot, tmp_path, session=session)
    choose(window.audio_panel.output_combo, "CoMo Live Virtual Mic")
    window.run_command("toggle")
    qtbot.waitUntil(lambda: window.bridge.state == "running", timeout=3000)
    assert engine.stops >= 1                                        # a preview still playing is cut at Start
    _pick(window, 1)
    settle(qtbot, window.bridge)
    assert engine.plays == []                                       # live, no monitor: not played at all
    assert "not played: you are live" in window.statusBar().currentMessage()
    choose(window.audio_panel.monitor_combo, "USB Headset")
    settle(qtbot, window.bridge)
    qtbot.waitUntil(lambda: window.bridge.state == "running", timeout=3000)
    _pick(window, 2)
    settle(qtbot, window.bridge)
    assert [(p[1], p[2]) for p in engine.plays] == [("head", 2)]    # on the headphones (device 2)


def test_a_device_error_is_a_status_message(qtbot, tmp_path: Path) -> None:
    window, engine, _ = _window(qtbot, tmp_path)
    engine.failure = "Fake device is busy."
    _pick(window, 1)
    settle(qtbot, window.bridge)
    assert window.statusBar().currentMessage() == "Could not play the preview of belt: Fake device is busy."
    assert window.bridge.config.settings.speaker == 1   # the choice itself stands


def test_the_real_adapter_plays_the_verified_clip_through_the_backend(tmp_path: Path) -> None:
    from app.engine_adapter import EngineAdapter
    from engine.audio.streams import SimulatedBackend
    from engine.voicepack import VoicePackError

    pack = make_pack(tmp_path / "diva", speakers={"soft": 0, "belt": 1})
    add_reference(pack, "belt", tone(0.2, 24000, hz=330.0) + np.float32(0.1))
    backend = SimulatedBackend(rate=48000, frames=480, speed=4.0)
    adapter = EngineAdapter(backend=backend)
    assert adapter.voice_info(str(pack)).previews == {"belt"}
    assert "Sim Headphones" in adapter.play_preview(str(pack), "belt", "Sim Headphones")
    backend.wait_clock(RATE // 2)
    adapter.stop_preview()
    played = backend.played["Sim Headphones"]
    expected = load_reference(pack, "belt", RATE)
    start = int(np.flatnonzero(played)[0])
    np.testing.assert_allclose(played[start:start + len(expected)], expected, atol=1e-6)
    with pytest.raises(VoicePackError, match="no preview clip for 'soft'"):
        adapter.play_preview(str(pack), "soft", "Sim Headphones")
