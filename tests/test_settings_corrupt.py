"""Any unreadable settings file: defaults, the file kept as settings.json.bad-<time>, the app starts and says so once."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from app.settings_store import AppConfig, SettingsStore  # noqa: E402
from engine.settings import Settings  # noqa: E402
from tests.test_app_fakes import build_window  # noqa: E402

pytestmark = pytest.mark.gui

CORRUPT = {
    "invalid UTF-8": b'{"voice": "\xff\xfe"}',
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
    "400-digit number": b'{"settings": {"block_ms": ' + b"9" * 400 + b'}, "sample_rate": ' + b"9" * 400 + b"}",
    "5000-digit number": b'{"sample_rate": ' + b"9" * 5000 + b"}",
    "not JSON": b"{ corrupt",
    "wrong top-level type": b"[1, 2, 3]",
    "wrong types": json.dumps({"settings": [], "input_device": 5, "voice": 7, "record_dir": {"a": 1},
                               "input_channel": "x", "sample_rate": 1.5}).encode(),
    "empty": b"",
}


def _backups(folder: Path) -> list[Path]:
    return sorted(folder.glob("settings.json.bad-*"))


@pytest.mark.parametrize("kind", sorted(CORRUPT))
def test_corrupt_file_gives_defaults_and_is_kept(tmp_path: Path, kind: str) -> None:
    store = SettingsStore(tmp_path)
    store.path.write_bytes(CORRUPT[kind])
    config, warnings = store.load()
    assert config.settings == Settings() and config.sample_rate is None and config.input_device is None
    assert warnings and "kept as" in warnings[-1]
    [backup] = _backups(tmp_path)
    assert backup.read_bytes() == CORRUPT[kind]          # the user's file, byte for byte
    assert store.load() == (config, [])                  # said once: the file is clean now
    assert _backups(tmp_path) == [backup]


def test_good_values_survive_next_to_a_bad_one(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path)
    store.path.write_text(json.dumps({"voice": "/voices/diva", "settings": {"pitch": 3, "block_ms": 10 ** 400}}))
    config, warnings = store.load()
    assert config.voice == "/voices/diva" and config.settings.pitch == 3 and config.settings.block_ms == 80
    assert len(warnings) == 2 and len(_backups(tmp_path)) == 1


@pytest.mark.parametrize("kind", ["invalid UTF-8", "deep nesting", "400-digit number", "wrong types"])
def test_app_starts_and_says_so_once(qtbot, tmp_path: Path, kind: str) -> None:
    store = SettingsStore(tmp_path / "cfg")
    store.folder.mkdir()
    store.path.write_bytes(CORRUPT[kind])
    window = build_window(qtbot, tmp_path, store=store)
    assert window.bridge.config.settings == Settings()
    assert not window.banner.isHidden() and "kept as" in window.banner.text()
    assert str(_backups(store.folder)[0].name) in window.banner.text()
    window.close()
    again = build_window(qtbot, tmp_path, store=store)
    assert again.banner.isHidden()
    assert again.bridge.config.voice == AppConfig().voice
