"""Damaged archives are one sentence (from import_voice_zip and the app), killed imports are cleaned
up at the next start, and only the files the manifest lists are installed."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from app.voice_import import VoiceImportError, clean_stale_imports, import_voice_zip  # noqa: E402
from tests.fixtures.zips import member_data_offset  # noqa: E402
from tests.test_app_fakes import FakeEngine, build_window, make_pack, settle, zip_folder  # noqa: E402
from tests.test_voice_import import hostile_zip, validate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _damage(archive: Path, member: str, garbage: bytes) -> Path:
    """Overwrite the start of `member`'s stored (compressed) bytes with `garbage`."""
    data = bytearray(archive.read_bytes())
    start = member_data_offset(archive, member)
    data[start: start + len(garbage)] = garbage
    archive.write_bytes(bytes(data))
    return archive


@pytest.fixture()
def pack(tmp_path: Path) -> Path:
    return make_pack(tmp_path / "src" / "pack")


@pytest.fixture()
def voices(tmp_path: Path) -> Path:
    (tmp_path / "voices").mkdir()
    return tmp_path / "voices"


def test_corrupt_deflate_stream_is_one_sentence(pack: Path, voices: Path, tmp_path: Path) -> None:
    archive = _damage(zip_folder(pack, tmp_path / "v.zip"), "decoder.onnx", b"\xff" * 8)
    with zipfile.ZipFile(archive) as z, pytest.raises(Exception) as raw:
        z.read("decoder.onnx")
    assert raw.type.__name__ == "error"     # zlib.error: what escaped before
    with pytest.raises(VoiceImportError, match="damaged or unreadable"):
        import_voice_zip(archive, voices, validate)
    assert list(voices.iterdir()) == []


def test_bad_crc_is_one_sentence(pack: Path, voices: Path, tmp_path: Path) -> None:
    archive = tmp_path / "stored.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
        for path in sorted(pack.iterdir()):
            z.write(path, path.name)
    _damage(archive, "vocoder.onnx", b"X")
    with pytest.raises(VoiceImportError, match="CRC"):
        import_voice_zip(archive, voices, validate)
    assert list(voices.iterdir()) == []


def test_app_import_of_a_damaged_archive_shows_a_sentence(qtbot, pack: Path, tmp_path: Path) -> None:
    voices = tmp_path / "voices"
    archive = _damage(zip_folder(pack, tmp_path / "v.zip"), "decoder.onnx", b"\xff" * 8)
    window = build_window(qtbot, tmp_path, engine=FakeEngine(voices))
    window.bridge.import_voice(str(archive))
    settle(qtbot, window.bridge)
    assert "Import refused" in window.banner.text() and "damaged or unreadable" in window.banner.text()
    assert list(voices.iterdir()) == []


def test_only_listed_files_are_installed(pack: Path, voices: Path, tmp_path: Path) -> None:
    archive = hostile_zip(tmp_path / "extra.zip", pack, "run-me.sh", b"#!/bin/sh\n")
    with zipfile.ZipFile(archive, "a") as z:
        z.writestr("docs/readme.txt", b"hello")
    target = import_voice_zip(archive, voices, validate)
    assert sorted(p.name for p in target.iterdir()) == ["content.onnx", "decoder.onnx", "vocoder.onnx", "voice.json"]


_SLOW_IMPORT = """
import sys, time
from pathlib import Path
from app.voice_import import import_voice_zip
import_voice_zip(sys.argv[1], sys.argv[2], lambda folder: time.sleep(120))
"""


def test_killed_import_is_cleaned_at_the_next_start(qtbot, pack: Path, tmp_path: Path) -> None:
    voices = tmp_path / "voices"
    archive = zip_folder(pack, tmp_path / "v.zip")
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_IMPORT, str(archive), str(voices)], cwd=ROOT)
    deadline = time.monotonic() + 60
    while not (voices.is_dir() and any((p / "voice.json").exists() for p in voices.iterdir())):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)   # killed while the extracted pack waits for validation
    proc.wait()
    [left] = list(voices.iterdir())
    assert left.name.startswith(".import-")
    window = build_window(qtbot, tmp_path, engine=FakeEngine(voices))   # the app starts again
    assert list(voices.iterdir()) == []
    window.bridge.import_voice(str(archive))
    settle(qtbot, window.bridge)
    assert window.bridge.voice.spec == str(voices / "v")


def test_running_imports_are_left_alone(voices: Path) -> None:
    mine = voices / f".import-{os.getpid()}-abc"
    parent = voices / f".import-{os.getppid()}-def"
    legacy = voices / ".import-xyz"          # from a version without process ids: always stale
    for folder in (mine, parent, legacy):
        folder.mkdir()
        (folder / "voice.json").write_text("{}")
    assert clean_stale_imports(voices) == [legacy]
    assert mine.is_dir() and parent.is_dir()
