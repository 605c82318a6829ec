"""`python -m engine.convert`: the streaming path on a file, and clear errors for bad input."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.convert import main
from tests.test_streaming import _snr, _sung


@pytest.fixture()
def wav(tmp_path: Path) -> Path:
    path = tmp_path / "in.wav"
    sf.write(path, _sung(1.2, 44100), 44100)
    return path


def test_streaming_and_whole_files_agree(ppg_pack: Path, wav: Path, tmp_path: Path) -> None:
    streamed, whole = tmp_path / "s.wav", tmp_path / "w.wav"
    common = ["--voice", str(ppg_pack), "--lookahead-ms", "200", "--quiet", "--provider", "cpu"]
    assert main([str(wav), str(streamed), "--block-ms", "40", *common]) == 0
    assert main([str(wav), str(whole), "--whole", *common]) == 0
    a, rate_a = sf.read(streamed, dtype="float32")
    b, rate_b = sf.read(whole, dtype="float32")
    assert rate_a == rate_b == 44100 and len(a) == len(b) == len(sf.read(wav)[0])
    first = int(0.04 * 44100)
    assert _snr(b[first:], a[first:]) >= 40


def test_speaker_by_name_and_key(ppg_pack: Path, wav: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "o.wav"
    assert main([str(wav), str(out), "--voice", str(ppg_pack), "--speaker", "singer1", "--key", "3", "--quiet"]) == 0
    assert main([str(wav), str(out), "--voice", str(ppg_pack), "--speaker", "nobody", "--quiet"]) == 2
    assert "unknown speaker 'nobody'; this voice has: singer0 (0), singer1 (1)" in capsys.readouterr().err


def test_stereo_and_nan_input_is_reported(ppg_pack: Path, tmp_path: Path, capsys) -> None:
    x = np.stack([_sung(0.5, 48000), _sung(0.5, 48000)], axis=1)
    x[100:110, 0] = np.nan
    path = tmp_path / "stereo.wav"
    sf.write(path, x, 48000, subtype="FLOAT")
    out = tmp_path / "o.wav"
    assert main([str(path), str(out), "--voice", str(ppg_pack), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "2 channels mixed to mono" in err and "10 non-finite samples" in err
    assert np.isfinite(sf.read(out)[0]).all()


@pytest.mark.parametrize("content,message", [
    (None, "input file not found"),
    (b"this is not audio", "cannot read"),
    ("empty", "holds no audio samples"),
])
def test_bad_files(tmp_path: Path, capsys, content, message) -> None:
    path = tmp_path / "bad.wav"
    if content == "empty":
        sf.write(path, np.zeros(0, np.float32), 24000)
    elif content is not None:
        path.write_bytes(content)
    assert main([str(path), str(tmp_path / "o.wav"), "--quiet"]) == 2
    assert message in capsys.readouterr().err


def test_corrupt_pack_is_one_clear_error(ppg_pack: Path, wav: Path, tmp_path: Path, capsys) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(ppg_pack, broken)
    (broken / "decoder.onnx").write_bytes(b"\0" * 10)
    assert main([str(wav), str(tmp_path / "o.wav"), "--voice", str(broken), "--quiet"]) == 2
    assert "decoder.onnx is 10 bytes but the manifest says" in capsys.readouterr().err


def test_module_entry_point(wav: Path, tmp_path: Path) -> None:
    out = tmp_path / "dsp.wav"
    proc = subprocess.run([sys.executable, "-m", "engine.convert", str(wav), str(out), "--quiet"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    y, rate = sf.read(out)
    assert rate == 44100 and len(y) == len(sf.read(wav)[0]) and np.abs(y).max() > 0.01
