"""What an installed CoMo Live relies on: `--self-test`, `--version`, bundled voices, the desktop entry."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from app import self_test
from app.__main__ import main
from app.desktop_entry import ICON, DesktopEntryError, install_desktop_entry
from app.version import __version__
from engine.voices import BUILTIN_DEMO, BUILTIN_DSP, DEFAULT_VOICE, bundled_voices_dir, list_installed


def test_self_test_converts_with_the_default_voice(capsys) -> None:
    assert main(["--self-test"]) == 0
    out = capsys.readouterr().out
    assert f"({DEFAULT_VOICE})" in out and "provider: CPU" in out and "self-test passed" in out


def test_self_test_report_is_measured() -> None:
    report = self_test.run_self_test()
    blocks = self_test.SECONDS * 1000 / report.block_ms
    assert len(report.compute_ms) == int(-(-blocks // 1))      # one timing per live-sized block
    assert report.latency_ms > 0 and report.output_dbfs > self_test.SILENT_DBFS
    assert report.portaudio.startswith("PortAudio")


def test_self_test_fails_with_one_sentence(tmp_path: Path, capsys) -> None:
    assert main(["--self-test", "--voice", str(tmp_path / "missing-pack")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("self-test failed: the voice") and "missing-pack" in err and "\n" not in err


@pytest.mark.parametrize("output, reason", [(0.0, "silent"), (np.nan, "NaN")])
def test_self_test_rejects_broken_audio(output: float, reason: str, monkeypatch) -> None:
    from engine.converter import Converter

    monkeypatch.setattr(Converter, "process", lambda self, block: np.full(len(block), output, dtype=np.float32))
    with pytest.raises(self_test.SelfTestError, match=reason):
        self_test.run_self_test()


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"como-live {__version__}"


def test_bundled_voices_are_listed_before_the_users(tmp_path: Path, ppg_pack: Path, monkeypatch) -> None:
    bundle = tmp_path / "_internal"
    shutil.copytree(ppg_pack, bundle / "voices" / "demo")
    monkeypatch.setattr(sys, "_MEIPASS", str(bundle), raising=False)
    monkeypatch.setenv("COMO_LIVE_VOICES", str(tmp_path / "user-voices"))
    assert bundled_voices_dir() == bundle / "voices"
    assert [v.spec for v in list_installed()] == [BUILTIN_DSP, BUILTIN_DEMO]   # by name: an update moves the bundle


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="desktop entries are Linux's")
def test_desktop_entry_starts_the_bundled_executable(tmp_path: Path, monkeypatch) -> None:
    executable = tmp_path / "como live" / "como-live"
    executable.parent.mkdir()
    executable.write_text("")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(executable))
    entry = install_desktop_entry(tmp_path / "share")
    text = entry.read_text()
    assert entry == tmp_path / "share" / "applications" / "como-live.desktop"
    assert f'Exec="{executable}"' in text and "Icon=como-live" in text
    icon = tmp_path / "share" / "icons" / "hicolor" / "256x256" / "apps" / "como-live.png"
    assert icon.read_bytes() == ICON.read_bytes()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="desktop entries are Linux's")
def test_desktop_entry_needs_an_installed_program(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sys, "frozen", False, raising=False)
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.raises(DesktopEntryError, match="no installed como-live"):
        install_desktop_entry(tmp_path / "share")
    assert not (tmp_path / "share" / "applications").exists()
