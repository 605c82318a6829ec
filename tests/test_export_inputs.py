"""The exporter refuses bad configs and damaged checkpoints with one sentence (as models.infer does)."""
from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest
import yaml

from exporters.onnx_export import main
from tests.fixtures.packs import write_sources
from tests.fixtures.zips import member_data_offset


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> dict[str, Path]:
    return write_sources(tmp_path_factory.mktemp("export-inputs") / "src")


@pytest.fixture()
def sources(pristine, tmp_path: Path) -> dict[str, Path]:
    """A private copy of the checkpoint folder (the vocoder and content encoder are shared, read-only)."""
    como = tmp_path / "como"
    shutil.copytree(pristine["ckpt"].parent, como)
    return {**pristine, "ckpt": como / pristine["ckpt"].name, "config": como / "config.yaml"}


def _run(src: dict[str, Path], tmp_path: Path, capsys) -> str:
    code = main([str(src["ckpt"]), "--vocoder", str(src["vocoder"]), "--content", str(src["content"]),
                 "--out", str(tmp_path / "pack"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "pack").exists()
    return err


def _set(config: Path, edit) -> None:
    data = yaml.safe_load(config.read_text())
    edit(data)
    config.write_text(yaml.safe_dump(data))


def test_deeply_nested_yaml(sources, tmp_path: Path, capsys) -> None:
    sources["config"].write_text("deep: " + "[" * 100_000 + "]" * 100_000 + "\n" + sources["config"].read_text())
    assert "nested too deeply" in _run(sources, tmp_path, capsys)


def test_absurd_model_size(sources, tmp_path: Path, capsys) -> None:
    _set(sources["config"], lambda d: d["model"].update(n_chans=1e8))
    assert "model.n_chans = 100000000.0 is outside 1..8192" in _run(sources, tmp_path, capsys)


def test_sizes_that_multiply_to_too_many_parameters(sources, tmp_path: Path, capsys) -> None:
    _set(sources["config"], lambda d: d["model"].update(n_chans=8192, n_layers=256))
    assert "parameters, far beyond any CoMoSVC" in _run(sources, tmp_path, capsys)


@pytest.mark.parametrize("speaker_id", ["x", 0.5, True])
def test_non_integer_speaker_id(sources, tmp_path: Path, capsys, speaker_id) -> None:
    _set(sources["config"], lambda d: d.update(spk={"singer0": speaker_id}))
    assert "speaker ids must be integers" in _run(sources, tmp_path, capsys)


def test_bit_flipped_checkpoint(sources, tmp_path: Path, capsys) -> None:
    ckpt = sources["ckpt"]
    with zipfile.ZipFile(ckpt) as archive:
        member = max(archive.infolist(), key=lambda i: i.compress_size)   # a tensor's bytes
    data = bytearray(ckpt.read_bytes())
    data[member_data_offset(ckpt, member.filename) + member.compress_size // 2] ^= 0x10
    ckpt.write_bytes(bytes(data))
    assert "fails its CRC check" in _run(sources, tmp_path, capsys)
