"""Recordings appear only when complete: temp files renamed at stop, removed when the disk fills."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import soundfile as sf

from engine.audio.recorder import Recorder

RATE = 48000


def test_files_appear_complete_at_stop(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, RATE, stem="take")
    rec.start()
    x = np.linspace(-0.5, 0.5, RATE, dtype=np.float32)
    rec.push_input(x)
    rec.push_output(-x)
    rec.wait_written(RATE)
    assert not any(p.exists() for p in rec.paths)   # only hidden temporary files while recording
    paths = rec.stop()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["take-input.wav", "take-output.wav"]
    np.testing.assert_array_equal(sf.read(paths[0], dtype="float32")[0], x)
    assert rec.error is None


def test_an_earlier_recording_is_never_replaced(tmp_path: Path) -> None:
    (tmp_path / "take-input.wav").write_bytes(b"earlier")
    rec = Recorder(tmp_path, RATE, stem="take")
    assert [p.name for p in rec.paths] == ["take-2-input.wav", "take-2-output.wav"]
    rec.start()
    rec.stop()
    assert (tmp_path / "take-input.wav").read_bytes() == b"earlier"


def test_disk_full_removes_the_unfinished_files(tmp_path: Path, monkeypatch) -> None:
    def full(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(sf.SoundFile, "write", full)
    rec = Recorder(tmp_path, RATE, stem="take")
    rec.start()
    rec.push_input(np.ones(RATE, np.float32))
    rec.stop()
    assert rec.error is not None and "the disk is full" in rec.error
    assert list(tmp_path.iterdir()) == []
