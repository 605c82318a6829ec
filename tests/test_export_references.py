"""`python -m exporters.onnx_export --reference SPEAKER=PATH`: preview clips written into the pack."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from engine.reference import load_reference
from engine.voicepack import load_manifest
from exporters.onnx_export import main
from exporters.references import PREVIEW_PEAK_DBFS, PREVIEW_RMS_DBFS
from tests.fixtures.packs import write_sources
from tests.fixtures.references import tone


def _args(src: dict[str, Path], out: Path, *references: str) -> list[str]:
    return [str(src["ckpt"]), "--vocoder", str(src["vocoder"]), "--content", str(src["content"]), "--out", str(out),
            "--no-stateful", "--quiet", *(a for r in references for a in ("--reference", r))]


def test_references_are_written_levelled_and_listed(tmp_path: Path, capsys) -> None:
    src = write_sources(tmp_path / "src")
    loud = tmp_path / "loud.flac"
    sf.write(str(loud), 3.0 * tone(8.0, 44100, hz=300.0, channels=2), 44100, subtype="PCM_24")   # clipping, 8 s
    quiet = tmp_path / "quiet.wav"
    sf.write(str(quiet), 0.01 * tone(2.0, 16000, hz=200.0), 16000)
    out = tmp_path / "pack"
    assert main(_args(src, out, f"singer0={loud}", f"singer1={quiet}")) == 0
    assert "preview clips: singer0 (reference/singer0.wav)" in capsys.readouterr().out
    manifest = load_manifest(out)
    assert set(manifest.references) == {"singer0", "singer1"}
    for speaker in ("singer0", "singer1"):
        info = sf.info(str(out / manifest.references[speaker].file))
        assert (info.samplerate, info.channels, info.subtype) == (24000, 1, "PCM_16")
        assert info.frames <= 5 * 24000
        clip = load_reference(out, speaker, 24000)
        rms_db = 20 * np.log10(np.sqrt(np.mean(clip[2400:-2400] ** 2)))
        assert np.abs(clip).max() <= 10 ** (PREVIEW_PEAK_DBFS / 20) + 1e-4
        assert PREVIEW_RMS_DBFS - 4.0 < rms_db <= PREVIEW_RMS_DBFS + 0.5   # both brought to the preview level
    assert sf.info(str(out / "reference/singer0.wav")).frames == 5 * 24000   # the first 5 s of 8
    assert sorted(p.name for p in out.iterdir()) == ["content.onnx", "decoder.onnx", "reference", "vocoder.onnx",
                                                      "voice.json"]
    # Re-exporting over the pack is allowed: its reference/ folder is part of it.
    assert main(_args(src, out, f"singer0={quiet}")) == 0
    assert set(load_manifest(out).references) == {"singer0"} and not (out / "reference/singer1.wav").exists()


def test_bad_references_are_refused_and_leave_nothing(tmp_path: Path, capsys) -> None:
    src = write_sources(tmp_path / "src")
    good = tmp_path / "good.wav"
    sf.write(str(good), tone(1.0, 24000), 24000)
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros(24000, np.float32), 24000)
    out = tmp_path / "pack"
    for references, message in [((f"bass={good}",), "names 'bass', which this voice does not have"),
                                 ((f"singer0={text}",), "cannot read the reference audio"),
                                 ((f"singer0={silent}",), "is silent"),
                                 ((str(good),), "--reference takes SPEAKER=PATH"),
                                 ((f"singer0={good}", f"singer0={good}"), "names speaker 'singer0' twice")]:
        assert main(_args(src, out, *references)) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
        assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".export")] == []
