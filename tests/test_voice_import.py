"""Voice pack .zip import: hostile archives are refused and leave nothing behind."""
from __future__ import annotations

import stat
import warnings
import zipfile
from pathlib import Path

import pytest

from app.voice_import import ImportLimits, VoiceImportError, import_voice_zip
from engine.voicepack import load_manifest
from tests.test_app_fakes import make_pack, zip_folder


def validate(folder: Path) -> set[str]:
    return load_manifest(folder, verify_hashes=True).files()


@pytest.fixture()
def sandbox(tmp_path: Path) -> Path:
    """tmp/sandbox/voices is the target; anything appearing elsewhere in sandbox is an escape."""
    (tmp_path / "sandbox" / "voices").mkdir(parents=True)
    return tmp_path / "sandbox"


@pytest.fixture()
def pack(tmp_path: Path) -> Path:
    return make_pack(tmp_path / "src" / "pack")


def assert_untouched(sandbox: Path) -> None:
    """Nothing outside voices/, and voices/ empty (no staging leftovers)."""
    everything = sorted(p.relative_to(sandbox).as_posix() for p in sandbox.rglob("*"))
    assert everything == ["voices"], everything


def hostile_zip(path: Path, pack: Path, name: str, data: bytes = b"pwned", mode: int | None = None) -> Path:
    """The valid pack plus one extra entry called `name`."""
    zip_folder(pack, path)
    with zipfile.ZipFile(path, "a") as archive:
        info = zipfile.ZipInfo(name)
        if mode is not None:
            info.external_attr = mode << 16
        archive.writestr(info, data)
    return path


def test_valid_pack_is_installed(sandbox: Path, pack: Path, tmp_path: Path) -> None:
    archive = zip_folder(pack, tmp_path / "My Singer.zip")
    target = import_voice_zip(archive, sandbox / "voices", validate)
    assert target == sandbox / "voices" / "My Singer"
    assert load_manifest(target).name == "Test Voice"
    assert sorted(p.name for p in (sandbox / "voices").iterdir()) == ["My Singer"]  # no staging left


def test_pack_inside_one_top_folder_is_installed(sandbox: Path, pack: Path, tmp_path: Path) -> None:
    archive = zip_folder(pack, tmp_path / "voice.zip", prefix="Singer v2/")
    target = import_voice_zip(archive, sandbox / "voices", validate)
    assert (target / "voice.json").is_file()
    assert sorted(p.name for p in (sandbox / "voices").iterdir()) == ["voice"]


@pytest.mark.parametrize("name, reason", [
    ("../escaped.txt", "outside"),
    ("sub/../../escaped.txt", "outside"),
    ("..\\escaped.txt", "outside"),
    ("/tmp/escaped-absolute.txt", "absolute"),
    ("\\escaped.txt", "absolute"),
    ("C:/escaped.txt", "absolute"),
    ("C:escaped.txt", "absolute"),
    ("decoder.onnx:stream", "':'"),
])
def test_path_escapes_are_refused(sandbox: Path, pack: Path, tmp_path: Path, name: str, reason: str) -> None:
    archive = hostile_zip(tmp_path / "evil.zip", pack, name)
    with pytest.raises(VoiceImportError, match=reason):
        import_voice_zip(archive, sandbox / "voices", validate)
    assert_untouched(sandbox)
    assert not (tmp_path / "escaped.txt").exists()
    assert not Path("/tmp/escaped-absolute.txt").exists()


def test_symlink_is_refused(sandbox: Path, pack: Path, tmp_path: Path) -> None:
    archive = hostile_zip(tmp_path / "link.zip", pack, "decoder_link.onnx", b"/etc/passwd", stat.S_IFLNK | 0o777)
    with pytest.raises(VoiceImportError, match="symbolic link"):
        import_voice_zip(archive, sandbox / "voices", validate)
    assert_untouched(sandbox)


def test_special_file_is_refused(sandbox: Path, pack: Path, tmp_path: Path) -> None:
    archive = hostile_zip(tmp_path / "fifo.zip", pack, "pipe", b"", stat.S_IFIFO | 0o644)
    with pytest.raises(VoiceImportError, match="not a regular file"):
        import_voice_zip(archive, sandbox / "voices", validate)
    assert_untouched(sandbox)


def test_zip_bomb_ratio_is_refused(sandbox: Path, pack: Path, tmp_path: Path) -> None:
    archive = zip_folder(pack, tmp_path / "bomb.zip")
    with zipfile.ZipFile(archive, "a", zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros.bin", bytes(8 << 20))  # 8 MiB of zeros compress ~1000:1
    with pytest.raises(VoiceImportError, match="zip bomb"):
        import_voice_zip(archive, sandbox / "voices", validate)
    assert_untouched(sandbox)


def test_oversize_file_and_total_are_refused(sandbox: Path, pack: Path, tmp_path: Path) -> None:
    archive = zip_folder(pack, tmp_path / "big.zip")
    with pytest.raises(VoiceImportError, match="per file"):
        import_voice_zip(archive, sandbox / "voices", validate, ImportLimits(max_file_bytes=100))
    with pytest.raises(VoiceImportError, match="more than"):
        import_voice_zip(archive, sandbox / "voices", validate, ImportLimits(max_total_bytes=600))
    assert_untouched(sandbox)


def test_entry_larger_than_declared_is_stopped(sandbox: Path, pack: Path, tmp_path: Path) -> None:
    """The central directory can lie; the byte count while extracting is what counts."""
    archive = zip_folder(pack, tmp_path / "liar.zip")
    with zipfile.ZipFile(archive) as z:
        real = {i.filename: i.file_size for i in z.infolist()}
    original = zipfile.ZipFile.open

    def lying_open(self, name, *args, **kwargs):  # pretend the directory declared 10 bytes
        handle = original(self, name, *args, **kwargs)
        handle_info = name if isinstance(name, zipfile.ZipInfo) else self.getinfo(name)
        handle_info.file_size = 10
        return handle

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(zipfile.ZipFile, "open", lying_open)
        with pytest.raises(VoiceImportError, match="beyond its declared size"):
            import_voice_zip(archive, sandbox / "voices", validate)
    assert max(real.values()) > 10
    assert_untouched(sandbox)


def test_too_many_entries_is_refused(sandbox: Path, pack: Path, tmp_path: Path) -> None:
    archive = zip_folder(pack, tmp_path / "many.zip")
    with zipfile.ZipFile(archive, "a") as z:
        for i in range(70):
            z.writestr(f"junk/{i}.txt", b"x")
    with pytest.raises(VoiceImportError, match="entries"):
        import_voice_zip(archive, sandbox / "voices", validate)
    assert_untouched(sandbox)


def test_archive_without_voice_json_is_refused(sandbox: Path, pack: Path, tmp_path: Path) -> None:
    (pack / "voice.json").unlink()
    archive = zip_folder(pack, tmp_path / "novoice.zip")
    with pytest.raises(VoiceImportError, match="not a voice pack.*voice.json"):
        import_voice_zip(archive, sandbox / "voices", validate)
    assert_untouched(sandbox)


def test_voice_json_too_deep_is_refused(sandbox: Path, pack: Path, tmp_path: Path) -> None:
    archive = zip_folder(pack, tmp_path / "deep.zip", prefix="a/b/")
    with pytest.raises(VoiceImportError, match="top level"):
        import_voice_zip(archive, sandbox / "voices", validate)
    assert_untouched(sandbox)


def test_invalid_pack_is_refused_and_cleaned_up(sandbox: Path, pack: Path, tmp_path: Path) -> None:
    (pack / "decoder.onnx").write_bytes(b"tampered but same length?")
    archive = zip_folder(pack, tmp_path / "tampered.zip")
    with pytest.raises(VoiceImportError, match="not a valid voice pack"):
        import_voice_zip(archive, sandbox / "voices", validate)
    assert_untouched(sandbox)


def test_not_a_zip_and_name_clash(sandbox: Path, pack: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"this is not a zip")
    with pytest.raises(VoiceImportError, match="not a readable .zip"):
        import_voice_zip(junk, sandbox / "voices", validate)
    assert_untouched(sandbox)
    archive = zip_folder(pack, tmp_path / "twice.zip")
    import_voice_zip(archive, sandbox / "voices", validate)
    with pytest.raises(VoiceImportError, match="already installed"):
        import_voice_zip(archive, sandbox / "voices", validate)
    assert sorted(p.name for p in (sandbox / "voices").iterdir()) == ["twice"]


@pytest.mark.parametrize("name", ["content.onnx", "CONTENT.onnx"])
def test_duplicate_entries_are_refused(sandbox: Path, pack: Path, tmp_path: Path, name: str) -> None:
    """Exact duplicates, and names equal on case-insensitive file systems (Windows, macOS)."""
    archive = zip_folder(pack, tmp_path / "dup.zip")
    with zipfile.ZipFile(archive, "a") as z, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the exact duplicate
        z.writestr(name, b"second copy")
    with pytest.raises(VoiceImportError, match="twice"):
        import_voice_zip(archive, sandbox / "voices", validate)
    assert_untouched(sandbox)
