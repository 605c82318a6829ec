"""Writing files the user keeps without ever losing what was there: one home for atomic writes.

    check_output_file(out, inputs=[src], audio=True)   # before any work: folder, format, same file
    with atomic_path(out) as tmp:                        # write tmp (any writer that takes a path)
        soundfile.write(tmp, audio, rate)
    # out now holds the complete new file, or (on any error, Ctrl-C included) is exactly as it was

Every output (converted WAVs, voice packs, settings, recordings) is written to a hidden temporary
file in the target folder, fsynced and renamed over the target in one `os.replace`, so a crash or a
full disk leaves either the old file or the new one, never half of one. Failures are `OutputError`
with one sentence ("the disk is full" for ENOSPC/EDQUOT).
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_PREFIX = ".partial-"
_FULL = (errno.ENOSPC, errno.EDQUOT)
_LOW_SPACE_BYTES = 1 << 20


class OutputError(ValueError):
    """An output cannot be written (where, why) — one sentence for the user."""


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when `a` and `b` name the same file (symlinks, `..`, hard links, other spellings)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare the fully resolved spellings
        return Path(a).resolve() == Path(b).resolve()


def check_output_file(path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (),
                      audio: bool = False) -> Path:
    """Refuse an output that would destroy an input or cannot be written, before any work starts.

    Checks: not the same file as any of `inputs`; not a folder; its folder exists and is writable;
    with `audio`, soundfile can write its extension. Returns `path` as a Path.
    """
    path = Path(path)
    for source in inputs:
        if same_file(path, source):
            raise OutputError(f"the output {path} is the input file {source}: choose another output name "
                              "(the input would be destroyed)")
    if path.is_dir():
        raise OutputError(f"the output {path} is a folder; give a file name")
    folder = path.resolve().parent
    if not folder.is_dir():
        raise OutputError(f"the output folder does not exist: {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"the output folder {folder} is not writable")
    if audio:
        audio_format(path)
    return path


def audio_format(path: str | os.PathLike) -> str:
    """The soundfile format name for `path`'s extension (raises `OutputError` when unsupported)."""
    import soundfile as sf

    suffix = Path(path).suffix.lstrip(".").upper()
    formats = sf.available_formats()
    if suffix not in formats:
        raise OutputError(f"cannot write audio as '.{suffix.lower()}' ({path}); use one of: "
                          + ", ".join(f".{f.lower()}" for f in sorted(formats)))
    return suffix


def audio_writer(temp: str | os.PathLike, output: str | os.PathLike, rate: int, channels: int = 1):
    """`temp` opened (soundfile) for writing in the format `output`'s extension names, 32-bit float
    where the format has it; use inside `atomic_path(output)`."""
    import soundfile as sf

    kind = audio_format(output)
    subtype = "FLOAT" if sf.check_format(kind, "FLOAT") else sf.default_subtype(kind)
    return sf.SoundFile(str(temp), "w", samplerate=int(rate), channels=channels, subtype=subtype, format=kind)


def describe_failure(exc: BaseException, path: str | os.PathLike) -> str:
    """One sentence for a failed write; 'the disk is full' whenever that is the cause."""
    folder = Path(path).resolve().parent
    full = isinstance(exc, OSError) and exc.errno in _FULL
    if not full:  # libsndfile reports a short write as a bare assertion; ask the disk
        try:
            full = shutil.disk_usage(folder).free < _LOW_SPACE_BYTES
        except OSError:
            pass
    if full:
        return f"cannot write {path}: the disk is full (the unfinished file was removed; free some space and retry)"
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"cannot write {path} ({detail}); the unfinished file was removed"


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a closed file's data to the disk (raises OSError, e.g. ENOSPC on delayed allocation)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_beside(path: str | os.PathLike, folder: bool = False) -> Path:
    """A new hidden temporary file (or folder) next to `path`, on the same file system."""
    path = Path(path)
    parent = path.resolve().parent
    prefix = f"{TEMP_PREFIX}{path.name}-"
    if folder:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=path.suffix, dir=parent)
    os.close(fd)
    return Path(name)


def commit(temp: str | os.PathLike, path: str | os.PathLike) -> None:
    """fsync `temp` (a closed file) and rename it over `path` atomically."""
    fsync_path(temp)
    os.replace(temp, path)
    _fsync_folder(Path(path).resolve().parent)


def discard(temp: str | os.PathLike) -> None:
    """Remove a temporary file or folder, whatever state it is in."""
    temp = Path(temp)
    if temp.is_dir() and not temp.is_symlink():
        shutil.rmtree(temp, ignore_errors=True)
    else:
        temp.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on any error it is removed.

    Errors while writing become `OutputError` (KeyboardInterrupt passes through, after cleaning up).
    """
    temp = temp_beside(path)
    try:
        yield temp
        commit(temp, path)
    except BaseException as exc:
        discard(temp)
        if isinstance(exc, (KeyboardInterrupt, SystemExit, OutputError)):
            raise
        if _is_write_failure(exc):
            raise OutputError(describe_failure(exc, path)) from exc
        raise


def _is_write_failure(exc: BaseException) -> bool:
    """OS errors and libsndfile's (a short write surfaces as a bare AssertionError in soundfile)."""
    return isinstance(exc, (OSError, AssertionError)) or type(exc).__module__ == "soundfile"


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Atomically replace `path` with `data`."""
    with atomic_path(path) as temp:
        temp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically replace `path` with `text` (UTF-8)."""
    write_bytes(path, text.encode("utf-8"))


def fsync_tree(folder: str | os.PathLike) -> None:
    """fsync every file under `folder` and the folders themselves (before a staged folder is renamed)."""
    for root, _dirs, files in os.walk(folder):
        for name in files:
            fsync_path(Path(root) / name)
        _fsync_folder(Path(root))
