"""Import a voice pack from a .zip into the user's voices folder, safely.

A .zip from the internet is untrusted input. Every entry is checked before a single byte is written:
paths that would land outside the target (`../`, absolute paths, drive letters, backslash tricks),
symlinks and other special files, too many entries, files or totals that expand beyond sane sizes,
and zip-bomb compression ratios are refused with one clear sentence. Sizes are enforced again while
decompressing, because the sizes in a zip's directory can lie. Nothing from the archive is executed:
bytes are copied, then the pack is validated by `engine.voicepack.load_manifest` (format, sizes,
sha256) and renamed into place in one `os.rename`; only the files the manifest lists go with it.
On any failure the temporary folder is removed, so the voices folder is exactly as it was; every
archive error (corrupt deflate data, bad CRC, unsupported compression, ...) is one sentence. A
staging folder left by an import that was killed (`.import-<pid>-*` of a process that no longer
runs) is removed by `clean_stale_imports`, which the app calls at start and every import calls.

No Qt here: the app calls `import_voice_zip` and shows the `VoiceImportError` message.
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from app.engine_adapter import MANIFEST_NAME, fsync_tree, unlisted_paths

_CHUNK = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")
_SAFE_FOLDER = re.compile(r"[^A-Za-z0-9._ -]+")
STAGING_PREFIX = ".import-"
_STAGING = re.compile(re.escape(STAGING_PREFIX) + r"(\d+)-")


class VoiceImportError(Exception):
    """The archive was refused or could not be installed; the message says why in one sentence."""


@dataclass(frozen=True)
class ImportLimits:
    """Sanity limits. A pack holds ~5 ONNX files; the biggest (ContentVec) is ~400 MB in fp32."""

    max_entries: int = 64
    max_file_bytes: int = 2 << 30          # 2 GiB per file
    max_total_bytes: int = 4 << 30         # 4 GiB for the whole pack
    max_ratio: float = 100.0               # ONNX weights barely compress; zip bombs reach 1000:1
    ratio_floor_bytes: int = 1 << 20       # small files (voice.json) may compress well; ratio not checked


def _entry_parts(name: str) -> tuple[str, ...]:
    """Split an archive name into safe path parts or raise. Backslashes count as separators."""
    if "\x00" in name:
        raise VoiceImportError(f"the archive has an entry with a NUL byte in its name ({name!r}); refused")
    unified = name.replace("\\", "/")
    if unified.startswith("/") or _DRIVE.match(unified):
        raise VoiceImportError(f"the archive entry {name!r} is an absolute path; refused")
    parts = tuple(p for p in PurePosixPath(unified).parts if p not in ("", "."))
    if any(p == ".." for p in parts):
        raise VoiceImportError(f"the archive entry {name!r} points outside the voice folder ('..'); refused")
    if any(":" in p for p in parts):  # drive-relative names and NTFS alternate data streams
        raise VoiceImportError(f"the archive entry {name!r} contains ':'; refused")
    return parts


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    return stat.S_ISLNK(mode)


def _is_special(info: zipfile.ZipInfo) -> bool:
    """Devices, FIFOs, sockets: anything with a Unix type that is not a file or folder."""
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    return kind not in (0, stat.S_IFREG, stat.S_IFDIR) and not stat.S_ISLNK(mode)


@dataclass(frozen=True)
class _Plan:
    """What will be extracted: (parts, info) per file and the pack's root inside the archive."""

    files: list[tuple[tuple[str, ...], zipfile.ZipInfo]]
    root: tuple[str, ...]


def check_archive(archive: zipfile.ZipFile, limits: ImportLimits = ImportLimits()) -> _Plan:
    """Validate every entry of `archive` without extracting; return the extraction plan."""
    infos = archive.infolist()
    if len(infos) > limits.max_entries:
        raise VoiceImportError(
            f"the archive has {len(infos)} entries; a voice pack has only a few files "
            f"(limit {limits.max_entries}); refused"
        )
    files: list[tuple[tuple[str, ...], zipfile.ZipInfo]] = []
    seen: set[tuple[str, ...]] = set()
    total = 0
    for info in infos:
        parts = _entry_parts(info.filename)
        if _is_symlink(info):
            raise VoiceImportError(f"the archive entry {info.filename!r} is a symbolic link; refused")
        if _is_special(info):
            raise VoiceImportError(f"the archive entry {info.filename!r} is not a regular file; refused")
        if info.flag_bits & 0x1:
            raise VoiceImportError(f"the archive entry {info.filename!r} is encrypted; refused")
        if info.is_dir() or not parts:
            continue
        key = tuple(p.lower() for p in parts)  # case-insensitive file systems would merge these
        if key in seen:
            raise VoiceImportError(f"the archive holds {info.filename!r} twice; refused")
        seen.add(key)
        if info.file_size > limits.max_file_bytes:
            raise VoiceImportError(
                f"{info.filename!r} would expand to {info.file_size / 2**20:.0f} MiB "
                f"(limit {limits.max_file_bytes / 2**20:.0f} MiB per file); refused"
            )
        total += info.file_size
        if total > limits.max_total_bytes:
            raise VoiceImportError(
                f"the archive would expand to more than {limits.max_total_bytes / 2**20:.0f} MiB; refused"
            )
        if info.file_size > limits.ratio_floor_bytes:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > limits.max_ratio:
                raise VoiceImportError(
                    f"{info.filename!r} is compressed {ratio:.0f}:1, which looks like a zip bomb "
                    f"(limit {limits.max_ratio:.0f}:1); refused"
                )
        files.append((parts, info))
    return _Plan(files=files, root=_pack_root(files))


def _pack_root(files: list[tuple[tuple[str, ...], zipfile.ZipInfo]]) -> tuple[str, ...]:
    """The folder holding voice.json: the archive root or one top-level folder (zipped folders)."""
    manifests = [parts[:-1] for parts, _ in files if parts[-1] == MANIFEST_NAME]
    shallow = [root for root in manifests if len(root) <= 1]
    if not shallow:
        raise VoiceImportError(
            f"this archive is not a voice pack: it has no {MANIFEST_NAME} at its top level"
        )
    if len(shallow) > 1:
        raise VoiceImportError(f"the archive holds more than one {MANIFEST_NAME}; import one pack at a time")
    return shallow[0]


def _copy_limited(source: Any, target: Path, expected: int, limits: ImportLimits, written: int) -> int:
    """Stream one entry; stop as soon as it exceeds its declared or allowed size. Returns new total."""
    size = 0
    with open(target, "xb") as out:  # "x": never follow or overwrite anything already there
        while chunk := source.read(_CHUNK):
            size += len(chunk)
            written += len(chunk)
            if size > expected or size > limits.max_file_bytes or written > limits.max_total_bytes:
                raise VoiceImportError(
                    f"{target.name!r} expands beyond its declared size; the archive is corrupt or hostile; refused"
                )
            out.write(chunk)
    return written


def _folder_name(zip_path: Path) -> str:
    name = _SAFE_FOLDER.sub("_", zip_path.stem).strip(" ._")
    return name or "voice"


def _process_alive(pid: int) -> bool:
    """Whether a process with this id runs now (a reused id only delays a clean-up)."""
    if os.name == "nt":
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        ctypes.windll.kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        ctypes.windll.kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_imports(voices_dir: str | os.PathLike) -> list[Path]:
    """Remove staging folders of imports whose process is gone (killed mid-import); returns them.

    Folders of running imports (this process's or another's) are left alone; a staging folder
    without a process id is from an older version and always stale.
    """
    removed = []
    root = Path(voices_dir)
    if not root.is_dir():
        return removed
    for path in root.iterdir():
        if not path.name.startswith(STAGING_PREFIX) or path.is_symlink() or not path.is_dir():
            continue
        match = _STAGING.match(path.name)
        if match and (int(match.group(1)) == os.getpid() or _process_alive(int(match.group(1)))):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _keep_only(pack: Path, listed: Iterable[str]) -> None:
    """Delete everything in the extracted `pack` that the manifest does not list (paths relative to it)."""
    for relative in unlisted_paths(pack, set(listed)):
        path = pack / relative
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def import_voice_zip(
    zip_path: str | os.PathLike,
    voices_dir: str | os.PathLike,
    validate: Callable[[Path], Iterable[str]],
    limits: ImportLimits = ImportLimits(),
    name: str | None = None,
) -> Path:
    """Install the pack in `zip_path` as `voices_dir/<name>` and return that folder.

    `validate(folder)` must raise (e.g. `engine.voicepack.VoicePackError`) when the extracted
    folder is not a valid pack (its message is passed on), and return the files the pack consists of, relative
    to it (`VoiceManifest.files()`): nothing else is installed. `name` defaults to the
    zip's file name. Raises `VoiceImportError`; on failure nothing is left in `voices_dir`.
    """
    zip_path = Path(zip_path)
    voices_dir = Path(voices_dir)
    folder = _SAFE_FOLDER.sub("_", name).strip(" ._") if name is not None else _folder_name(zip_path)
    if not folder:
        raise VoiceImportError("the voice needs a name made of letters or digits")
    target = voices_dir / folder
    if target.exists():
        raise VoiceImportError(f"a voice named '{target.name}' is already installed; remove it or rename the .zip")
    try:
        archive = zipfile.ZipFile(zip_path)
    except FileNotFoundError as exc:
        raise VoiceImportError(f"{zip_path} does not exist") from exc
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise VoiceImportError(f"{zip_path.name} is not a readable .zip archive ({exc})") from exc
    try:
        voices_dir.mkdir(parents=True, exist_ok=True)
        clean_stale_imports(voices_dir)
        staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=voices_dir))
    except OSError as exc:
        archive.close()
        raise VoiceImportError(f"cannot write into the voices folder {voices_dir} ({exc})") from exc
    try:
        with archive:
            plan = check_archive(archive, limits)
            _extract(archive, plan, staging, limits)
        pack = staging.joinpath(*plan.root)
        try:
            listed = validate(pack)
        except Exception as exc:  # the validator's message is the user-facing reason
            raise VoiceImportError(f"the archive is not a valid voice pack: {exc}") from exc
        _keep_only(pack, listed)
        fsync_tree(pack)
        # Same folder, same file system: one atomic rename; fails rather than overwrite.
        os.rename(pack, target)
        return target
    except VoiceImportError:
        raise
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, RuntimeError, ValueError,
            NotImplementedError) as exc:
        # Corrupt deflate data (zlib.error), bad CRCs (BadZipFile), unsupported compression, ...
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VoiceImportError(f"could not import {zip_path.name}: the archive is damaged or unreadable "
                               f"({detail})") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _extract(archive: zipfile.ZipFile, plan: _Plan, staging: Path, limits: ImportLimits) -> None:
    """Copy the planned files under `staging`, re-checking every resolved path stays inside it."""
    root = staging.resolve()
    written = 0
    for parts, info in plan.files:
        dest = staging.joinpath(*parts)
        if not dest.resolve().is_relative_to(root):  # belt and braces after _entry_parts
            raise VoiceImportError(f"the archive entry {info.filename!r} points outside the voice folder; refused")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as source:
            written = _copy_limited(source, dest, info.file_size, limits, written)
