"""Voices shipped with the program (`builtin:demo` = the pack in voices/demo) and the one default voice.

The shipped folder is a temp folder here (`shipped_voices` / `shipped_demo` in conftest.py) holding
the tiny PPG test pack: the CLI converts with it, the app lists it as shipped and opens with it, and a
missing pack is one sentence everywhere (exit 2 in the CLIs, a warning and the built-in voice in the app).
"""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import soundfile as sf  # noqa: E402

from app.engine_adapter import BUILTIN_DSP, EngineAdapter  # noqa: E402
from app.settings_store import AppConfig, SettingsStore, config_from_json  # noqa: E402
from engine import convert, live, voices  # noqa: E402
from engine.settings import Settings  # noqa: E402
from engine.voicepack import VoicePackError  # noqa: E402
from engine.voices import BUILTIN_DEMO  # noqa: E402
from tests.fixtures.references import add_reference, tone  # noqa: E402
from tests.test_app_fakes import FakeEngine, build_window  # noqa: E402

RATE = 44100


@pytest.fixture()
def wav(tmp_path: Path) -> Path:
    """1 s of a sung-like tone at 44.1 kHz."""
    path = tmp_path / "in.wav"
    sf.write(path, 0.3 * tone(1.0, RATE, hz=220.0), RATE)
    return path


# ---------------------------------------------------------------------------- the one default
def test_every_entry_point_takes_its_default_from_the_engine(monkeypatch) -> None:
    """The switch to the shipped demo voice is one constant: engine.voices.DEFAULT_VOICE."""
    monkeypatch.setattr(voices, "DEFAULT_VOICE", "builtin:some-default")
    assert convert.build_parser().get_default("voice") == "builtin:some-default"
    assert live.build_parser().get_default("voice") == "builtin:some-default"
    assert AppConfig().voice == "builtin:some-default"                       # a fresh install
    assert config_from_json({})[0].voice == "builtin:some-default"           # settings without a voice
    assert config_from_json({"voice": 3})[0].voice == "builtin:some-default"


def test_reading_the_default_loads_no_voice_runtime() -> None:
    """The app takes its default from engine.voices at start: that must not need onnxruntime (or numpy)."""
    probe = ("import sys; from app.settings_store import AppConfig; AppConfig(); "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnxruntime', 'numpy')))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=Path(__file__).resolve().parents[1],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


def test_the_default_is_a_voice_that_loads() -> None:
    assert voices.describe(voices.DEFAULT_VOICE).speakers


# ---------------------------------------------------------------------------- the engine and its CLIs
def test_shipped_demo_is_listed_by_name_and_converts_1_s_through_engine_convert(
        shipped_demo: Path, wav: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("COMO_LIVE_VOICES", str(tmp_path / "user-voices"))
    assert [v.spec for v in voices.list_installed()] == [BUILTIN_DSP, BUILTIN_DEMO]
    assert voices.pack_folder(BUILTIN_DEMO) == shipped_demo
    out = tmp_path / "out.wav"
    code = convert.main([str(wav), str(out), "--voice", BUILTIN_DEMO, "--speaker", "singer1", "--quiet",
                         "--provider", "cpu"])
    assert code == 0, capsys.readouterr().err
    audio, rate = sf.read(out, dtype="float32")
    assert rate == RATE and len(audio) == RATE
    assert np.isfinite(audio).all() and np.sqrt(np.mean(audio[RATE // 4:] ** 2)) > 1e-3


def test_a_missing_shipped_pack_is_one_sentence_and_exit_2(shipped_voices: Path, wav: Path, tmp_path: Path,
                                                          capsys) -> None:
    out = tmp_path / "out.wav"
    assert convert.main([str(wav), str(out), "--voice", BUILTIN_DEMO, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: the voice {BUILTIN_DEMO} shipped with the program is missing")
    assert str(shipped_voices / "demo") in err and "python -m models.demo build" in err and BUILTIN_DSP in err
    assert "\n" not in err and not out.exists()
    assert live.main(["--voice", BUILTIN_DEMO]) == 2        # refused before any device opens
    assert capsys.readouterr().err.strip() == err


def test_a_broken_shipped_pack_is_never_replaced_by_another_voice(shipped_demo: Path) -> None:
    manifest = json.loads((shipped_demo / "voice.json").read_text())
    vocoder = shipped_demo / manifest["networks"]["vocoder"]["file"]
    vocoder.write_bytes(vocoder.read_bytes()[:-1] + b"\0")
    with pytest.raises(VoicePackError, match=r"shipped with the program is broken \(.*vocoder.*\); rebuild it"):
        voices.load_voice(BUILTIN_DEMO, Settings())
    assert voices.describe(BUILTIN_DEMO).name == manifest["name"]            # the quick look skips the hashes
    with pytest.raises(VoicePackError, match="is broken"):
        voices.describe(BUILTIN_DEMO, verify_hashes=True)


def test_in_an_installed_bundle_the_remedy_is_to_reinstall(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path / "_internal"), raising=False)
    with pytest.raises(VoicePackError, match=r"_internal/voices/demo has no voice.json; reinstall CoMo Live or "
                                             r"choose builtin:dsp$"):
        voices.describe(BUILTIN_DEMO)


@pytest.mark.parametrize("spec", ["builtin:../voices", "builtin:", "builtin:a/b"])
def test_a_shipped_name_never_leaves_the_shipped_folder(spec: str) -> None:
    with pytest.raises(VoicePackError, match="is not a voice name"):
        voices.pack_folder(spec)


def test_the_real_adapter_verifies_and_previews_a_shipped_pack(shipped_demo: Path) -> None:
    from engine.audio.streams import SimulatedBackend

    add_reference(shipped_demo, "singer1", tone(0.2, 24000, hz=330.0))
    backend = SimulatedBackend(rate=48000, frames=480, speed=4.0)
    adapter = EngineAdapter(backend=backend)
    info = adapter.voice_info(BUILTIN_DEMO)
    assert info.shipped and not info.builtin and info.previews == {"singer1"}
    assert info.label.endswith("(shipped with CoMo Live)")
    assert "Sim Headphones" in adapter.play_preview(BUILTIN_DEMO, "singer1", "Sim Headphones")
    adapter.stop_preview()


# ---------------------------------------------------------------------------- the app
def test_self_test_converts_with_the_shipped_voice(shipped_demo: Path, capsys) -> None:
    from app.__main__ import main

    assert main(["--self-test", "--voice", BUILTIN_DEMO]) == 0
    out = capsys.readouterr().out
    assert f"voice: tiny ({BUILTIN_DEMO})" in out and "self-test passed" in out


@pytest.mark.gui
def test_app_lists_the_shipped_voice_beside_the_builtin_and_imported_ones(qtbot, shipped_demo: Path,
                                                                         tmp_path: Path) -> None:
    from tests.test_app_fakes import make_pack

    make_pack(tmp_path / "voices" / "diva", name="Diva")
    window = build_window(qtbot, tmp_path, engine=FakeEngine(tmp_path / "voices"),
                          store=SettingsStore(tmp_path / "cfg"))
    combo = window.voice_panel.voice_combo
    listed = [(combo.itemData(i), combo.itemText(i)) for i in range(combo.count())]
    assert [spec for spec, _ in listed] == [BUILTIN_DSP, BUILTIN_DEMO, str(tmp_path / "voices" / "diva")]
    assert listed[1][1] == "tiny (shipped with CoMo Live)" and listed[2][1] == "Diva"


@pytest.mark.gui
@pytest.mark.parametrize("how", ["saved", "default"])
def test_app_opens_with_the_shipped_voice(qtbot, shipped_demo: Path, tmp_path: Path, monkeypatch, how: str) -> None:
    store = SettingsStore(tmp_path / "cfg")
    if how == "saved":
        store.save(AppConfig(voice=BUILTIN_DEMO))
    else:   # a fresh install once the demo voice is the default
        monkeypatch.setattr(voices, "DEFAULT_VOICE", BUILTIN_DEMO)
    window = build_window(qtbot, tmp_path, store=store)
    assert window.bridge.config.voice == BUILTIN_DEMO and window.bridge.voice.shipped
    assert window.voice_panel.voice_combo.currentData() == BUILTIN_DEMO
    assert [window.voice_panel.speaker_combo.itemText(i) for i in range(2)] == ["singer0", "singer1"]
    assert window.banner.isHidden()
    assert window.bridge.session_config().voice == BUILTIN_DEMO


@pytest.mark.gui
def test_app_says_when_the_shipped_voice_is_missing_and_keeps_running(qtbot, shipped_voices: Path,
                                                                      tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(voices, "DEFAULT_VOICE", BUILTIN_DEMO)
    window = build_window(qtbot, tmp_path, store=SettingsStore(tmp_path / "cfg"))
    text = window.banner.text()
    assert not window.banner.isHidden() and "\n" not in text
    assert text.startswith(f"Voice could not be loaded (the voice {BUILTIN_DEMO} shipped with the program is missing")
    assert str(shipped_voices / "demo") in text and text.endswith("using the built-in voice instead.")
    assert window.bridge.config.voice == BUILTIN_DSP
    assert window.voice_panel.voice_combo.currentData() == BUILTIN_DSP
    window.start_button.click()
    qtbot.waitUntil(lambda: window.bridge.state == "running", timeout=3000)
