"""The exporter never deletes what it did not create: `--out` is replaced only when it is a voice pack."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from exporters.onnx_export import main
from tests.fixtures.packs import write_sources


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    return write_sources(tmp_path_factory.mktemp("export-out") / "src")


def _export(src: dict[str, Path], out: str) -> list[str]:
    return [str(src["ckpt"]), "--vocoder", str(src["vocoder"]), "--content", str(src["content"]),
            "--out", out, "--quiet"]


def _one_sentence(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_out_dot_in_a_folder_of_user_files_is_refused(sources, tmp_path: Path, monkeypatch, capsys) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "song.wav").write_bytes(b"RIFF precious")
    (work / "notes").mkdir()
    (work / "notes" / "todo.txt").write_text("keep me")
    before = _snapshot(work)
    monkeypatch.chdir(work)
    assert main(_export(sources, ".")) == 2
    assert "not a voice pack" in _one_sentence(capsys.readouterr().err)
    assert _snapshot(work) == before


@pytest.mark.parametrize("where", ["checkpoint folder", "above the checkpoint", "vocoder folder"])
def test_out_holding_an_input_is_refused(sources, where: str, capsys) -> None:
    out = {"checkpoint folder": sources["ckpt"].parent, "above the checkpoint": sources["ckpt"].parent.parent,
           "vocoder folder": sources["vocoder"].parent}[where]
    before = _snapshot(out)
    assert main(_export(sources, str(out))) == 2
    assert "holds the input" in _one_sentence(capsys.readouterr().err)
    assert _snapshot(out) == before


def test_out_that_is_a_file_is_refused(sources, tmp_path: Path, capsys) -> None:
    out = tmp_path / "file.txt"
    out.write_text("mine")
    assert main(_export(sources, str(out))) == 2
    assert "not a folder" in _one_sentence(capsys.readouterr().err)
    assert out.read_text() == "mine"


def test_pack_with_foreign_files_is_refused(ppg_pack: Path, sources, tmp_path: Path, capsys) -> None:
    out = tmp_path / "pack"
    shutil.copytree(ppg_pack, out)
    (out / "my-notes.txt").write_text("mine")
    before = _snapshot(out)
    assert main(_export(sources, str(out))) == 2
    assert "other files (my-notes.txt)" in _one_sentence(capsys.readouterr().err)
    assert _snapshot(out) == before


def test_an_existing_pack_is_replaced(ppg_pack: Path, sources, tmp_path: Path, capsys) -> None:
    out = tmp_path / "pack"
    shutil.copytree(ppg_pack, out)
    (out / "voice.json").write_text((out / "voice.json").read_text().replace('"tiny"', '"old name"'))
    assert main(_export(sources, str(out)) + ["--name", "new name"]) == 0
    from engine.voicepack import load_manifest

    assert load_manifest(out).name == "new name"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pack"]   # no staging or old copy left
