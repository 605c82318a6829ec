"""`engine.convert` never destroys the input or leaves half a file; it streams in bounded memory."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.convert import main

ROOT = Path(__file__).resolve().parents[1]


def write_tone(path: Path, seconds: float, rate: int = 48000) -> Path:
    """A 16-bit sine written one second at a time (so a long file costs no memory here)."""
    with sf.SoundFile(str(path), "w", rate, 1, "PCM_16") as out:
        t = np.arange(rate) / rate
        second = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
        for _ in range(int(seconds)):
            out.write(second)
    return path


def _one_sentence(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("note:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".partial-"))


@pytest.fixture()
def wav(tmp_path: Path) -> Path:
    return write_tone(tmp_path / "in.wav", 2)


@pytest.mark.parametrize("spelling", ["same", "dotdot", "symlink", "hardlink"])
def test_output_that_is_the_input_is_refused(wav: Path, tmp_path: Path, spelling: str, capsys) -> None:
    before = wav.read_bytes()
    if spelling == "same":
        out = wav
    elif spelling == "dotdot":
        (tmp_path / "sub").mkdir()
        out = tmp_path / "sub" / ".." / "in.wav"
    elif spelling == "symlink":
        out = tmp_path / "link.wav"
        out.symlink_to(wav)
    else:
        out = tmp_path / "hard.wav"
        os.link(wav, out)
    assert main([str(wav), str(out), "--quiet"]) == 2
    assert "is the input file" in _one_sentence(capsys.readouterr().err)
    assert wav.read_bytes() == before


@pytest.mark.parametrize("name, message", [
    ("missing/out.wav", "does not exist"),
    ("out.xyz", "cannot write audio as '.xyz'"),
    (".", "is a folder"),
])
def test_unusable_output_is_refused_before_any_work(wav: Path, tmp_path: Path, name: str, message: str,
                                                     capsys, monkeypatch) -> None:
    import engine.convert as convert

    monkeypatch.setattr(convert, "Converter", lambda *a, **k: pytest.fail("work started before the check"))
    assert main([str(wav), str(tmp_path / name), "--quiet"]) == 2
    assert message in _one_sentence(capsys.readouterr().err)


def test_other_formats_by_extension(wav: Path, tmp_path: Path) -> None:
    assert main([str(wav), str(tmp_path / "out.flac"), "--quiet"]) == 0
    info = sf.info(str(tmp_path / "out.flac"))
    assert info.format == "FLAC" and info.frames == sf.info(str(wav)).frames


def test_disk_full_while_writing_leaves_the_old_output(wav: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    out = tmp_path / "out.wav"
    out.write_bytes(b"the user's earlier result")
    calls = []

    def full(self, data):
        calls.append(len(data))
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return original(self, data)

    original = sf.SoundFile.write
    monkeypatch.setattr(sf.SoundFile, "write", full)
    assert main([str(wav), str(out), "--quiet"]) == 2
    assert "the disk is full" in _one_sentence(capsys.readouterr().err)
    assert out.read_bytes() == b"the user's earlier result" and _leftovers(tmp_path) == []


@pytest.fixture()
def tiny_disk(tmp_path: Path):
    """A real 256 KiB tmpfs (needs permission to mount; skipped elsewhere)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_really_full_disk(wav: Path, tiny_disk: Path, capsys) -> None:
    out = tiny_disk / "out.wav"   # 2 s of 32-bit float at 48 kHz: 384 kB > 256 KiB
    assert main([str(wav), str(out), "--quiet"]) == 2
    assert "the disk is full" in _one_sentence(capsys.readouterr().err)
    assert list(tiny_disk.iterdir()) == []


def _terminal_sigint() -> None:
    """SIGINT as a terminal's foreground job has it, however this test run itself was started."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _convert_process(*args: str, sigint_ignored: bool = False) -> subprocess.Popen:
    # `trap "" INT` then exec: started with SIGINT ignored, as a non-interactive shell's background
    # job (`cmd &`, a CI runner) is; Python then installs no Ctrl-C handler unless the CLI restores it.
    shell = ["sh", "-c", 'trap "" INT; exec "$0" "$@"'] if sigint_ignored else []
    return subprocess.Popen([*shell, sys.executable, "-m", "engine.convert", *args, "--quiet"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_terminal_sigint)


@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["foreground", "started-with-sigint-ignored"])
def test_ctrl_c_stops_and_removes_the_partial_output(tmp_path: Path, sigint_ignored: bool) -> None:
    source = write_tone(tmp_path / "long.wav", 600)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = _convert_process(str(source), str(out_dir / "out.wav"), sigint_ignored=sigint_ignored)
    deadline = time.monotonic() + 120
    while not _leftovers(out_dir):   # wait until the conversion is writing
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopped" in _one_sentence(err)
    assert list(out_dir.iterdir()) == []


_PEAK_RSS = """
import sys
from pathlib import Path
from engine.convert import convert_file, open_input
from engine.converter import Converter
from engine.settings import Settings
from tests.test_streaming import IdentityCore

converter = Converter(lambda s: IdentityCore(960), Settings(), 48000)
with open_input(Path(sys.argv[1])) as source:
    convert_file(converter, source, Path(sys.argv[2]), 960, lambda done: None)
status = Path("/proc/self/status").read_text()
print(int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))))
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
def test_memory_does_not_grow_with_the_file_length(tmp_path: Path) -> None:
    """Peak RSS of a 10-minute file within 50 MB of a 1-minute file's (file to file, blocks of 20 ms)."""
    peaks = {}
    for minutes in (1, 10):
        source = write_tone(tmp_path / f"in{minutes}.wav", 60 * minutes)
        run = subprocess.run([sys.executable, "-c", _PEAK_RSS, str(source), str(tmp_path / "out.wav")], cwd=ROOT,
                             capture_output=True, text=True, check=True)
        peaks[minutes] = int(run.stdout.split()[-1]) / 1024
        assert sf.info(str(tmp_path / "out.wav")).frames == 60 * minutes * 48000
    assert peaks[10] - peaks[1] < 50, peaks
