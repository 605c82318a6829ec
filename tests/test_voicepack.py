"""Voice pack manifest validation: every broken pack gets one clear, specific error."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engine.voicepack import (
    MANIFEST_NAME,
    NOTICE_NAME,
    ListedFile,
    NetworkSpec,
    TensorSpec,
    VoiceManifest,
    VoicePackError,
    load_manifest,
    sha256_file,
    write_manifest,
)


def _net(folder: Path, file: str, payload: bytes, rf=(2, 2)) -> NetworkSpec:
    (folder / file).write_bytes(payload)
    return NetworkSpec(
        file=file, sha256=sha256_file(folder / file), size=len(payload),
        inputs=[TensorSpec("x", [1, "T"], "float32")], outputs=[TensorSpec("y", [1, "T"], "float32")],
        receptive_field=rf, frame_unit="mel_frames",
    )


@pytest.fixture()
def pack(tmp_path: Path) -> Path:
    folder = tmp_path / "voice"
    folder.mkdir()
    manifest = VoiceManifest(
        name="test", speakers={"alice": 0, "bob": 1}, sample_rate=24000, hop_length=128,
        mel={"n_mels": 80, "spec_min": -6.0, "spec_max": 1.5},
        content={"kind": "ppg", "width": 16, "sample_rate": 16000, "hop": 320, "window": 400},
        f0={"method": "dio", "min": 50, "max": 1100},
        networks={
            "content": _net(folder, "content.onnx", b"content-bytes"),
            "decoder": _net(folder, "decoder.onnx", b"decoder-bytes"),
            "vocoder": _net(folder, "vocoder.onnx", b"vocoder-bytes", rf=None),
        },
    )
    write_manifest(folder, manifest)
    return folder


def _edit(folder: Path, change) -> None:
    path = folder / MANIFEST_NAME
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_valid_pack_round_trips(pack: Path) -> None:
    manifest = load_manifest(pack)
    assert manifest.speakers == {"alice": 0, "bob": 1}
    assert manifest.networks["decoder"].receptive_field == (2, 2)
    assert manifest.networks["vocoder"].receptive_field is None
    assert manifest.path("decoder") == pack.resolve() / "decoder.onnx"


def test_notice_round_trips_and_is_omitted_when_absent(pack: Path) -> None:
    from dataclasses import replace

    manifest = load_manifest(pack)
    assert manifest.notice is None and "notice" not in json.loads((pack / MANIFEST_NAME).read_text())
    text = "# Sources\nKokoro-82M — Apache-2.0\n".encode()
    (pack / NOTICE_NAME).write_bytes(text)
    notice = ListedFile(NOTICE_NAME, sha256_file(pack / NOTICE_NAME), len(text))
    write_manifest(pack, replace(manifest, notice=notice))
    loaded = load_manifest(pack)
    assert loaded.notice == notice and NOTICE_NAME in loaded.files()
    assert json.loads((pack / MANIFEST_NAME).read_text())["notice"] == {"file": NOTICE_NAME, "sha256": notice.sha256,
                                                                         "size": len(text)}
    assert loaded.format_version == 2


def test_tampered_file_is_refused(pack: Path) -> None:
    (pack / "decoder.onnx").write_bytes(b"decoder-BYTES")  # same size, other content
    with pytest.raises(VoicePackError, match="decoder.onnx does not match its sha256"):
        load_manifest(pack)


def test_truncated_file_is_refused(pack: Path) -> None:
    (pack / "vocoder.onnx").write_bytes(b"voc")
    with pytest.raises(VoicePackError, match="vocoder.onnx is 3 bytes but the manifest says 13: the file is truncated"):
        load_manifest(pack)


def test_missing_file_is_refused(pack: Path) -> None:
    (pack / "content.onnx").unlink()
    with pytest.raises(VoicePackError, match="content network file content.onnx is missing"):
        load_manifest(pack)


def test_wrong_version_is_refused(pack: Path) -> None:
    _edit(pack, lambda d: d.update(format_version=99))
    with pytest.raises(VoicePackError, match="format version 99 is not supported"):
        load_manifest(pack)


def test_missing_network_is_refused(pack: Path) -> None:
    _edit(pack, lambda d: d["networks"].pop("vocoder"))
    with pytest.raises(VoicePackError, match="manifest lists no vocoder network"):
        load_manifest(pack)


def test_path_outside_pack_is_refused(pack: Path) -> None:
    _edit(pack, lambda d: d["networks"]["decoder"].update(file="../decoder.onnx"))
    with pytest.raises(VoicePackError, match="plain file name inside the pack"):
        load_manifest(pack)


def test_bad_fields_are_named(pack: Path) -> None:
    _edit(pack, lambda d: d["networks"]["decoder"].update(receptive_field=[1]))
    with pytest.raises(VoicePackError, match="networks.decoder: receptive_field"):
        load_manifest(pack)
    _edit(pack, lambda d: (d["networks"]["decoder"].update(receptive_field=[1, 1]), d.pop("hop_length")))
    with pytest.raises(VoicePackError, match="missing field 'hop_length'"):
        load_manifest(pack)


def test_not_json_and_not_a_pack(pack: Path, tmp_path: Path) -> None:
    (pack / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(VoicePackError, match="is not valid JSON"):
        load_manifest(pack)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VoicePackError, match="has no voice.json"):
        load_manifest(empty)
    with pytest.raises(VoicePackError, match="folder not found"):
        load_manifest(tmp_path / "nope")


def test_fcpe_needs_pitch_network(pack: Path) -> None:
    _edit(pack, lambda d: d["f0"].update(method="fcpe"))
    with pytest.raises(VoicePackError, match="no pitch network"):
        load_manifest(pack)


def test_copy_is_still_valid(pack: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(pack, copy)
    assert load_manifest(copy).name == "test"


def test_malformed_optional_fields_are_pack_errors(pack: Path) -> None:
    _edit(pack, lambda d: d["networks"]["decoder"].update(extra="abc"))
    with pytest.raises(VoicePackError, match="networks.decoder: precision must be a string and extra an object"):
        load_manifest(pack)
    _edit(pack, lambda d: (d["networks"]["decoder"].update(extra={}, params=None)))
    with pytest.raises(VoicePackError, match="params must be an integer"):
        load_manifest(pack)
    _edit(pack, lambda d: (d["networks"]["decoder"].update(params=1), d.update(verification=[])))
    with pytest.raises(VoicePackError, match="'verification' must be an object"):
        load_manifest(pack)
