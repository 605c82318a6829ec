"""Hostile or mis-built voice packs fail with one `VoicePackError` sentence, never a traceback."""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from engine.convert import main as convert_main
from engine.settings import Settings
from engine.voicepack import LIMITS, NOTICE_NAME, VoicePackError, load_manifest, read_notice, sha256_file
from engine.voices import load_voice
from tests.fixtures.references import add_notice


def _manifest(pack: Path) -> dict:
    return json.loads((pack / "voice.json").read_text())


def _save(pack: Path, data: dict) -> None:
    (pack / "voice.json").write_text(json.dumps(data))


def _rehash(pack: Path, network: str) -> None:
    """Make the manifest agree with the file again (a consistent but wrong build)."""
    data = _manifest(pack)
    path = pack / data["networks"][network]["file"]
    data["networks"][network].update(sha256=sha256_file(path), size=path.stat().st_size)
    _save(pack, data)


def _edit(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(pack: Path) -> None:
        data = _manifest(pack)
        change(data)
        _save(pack, data)
    return apply


def _external_data(pack: Path) -> None:
    """decoder.onnx re-saved with its weights in decoder.onnx.data; the manifest hashes the graph only."""
    import onnx

    model = onnx.load(str(pack / "decoder.onnx"))
    onnx.save_model(model, str(pack / "decoder.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="decoder.onnx.data", size_threshold=0)
    _rehash(pack, "decoder")


def _deep_json(pack: Path) -> None:
    text = (pack / "voice.json").read_text()
    (pack / "voice.json").write_text(text[:-2] + ', "deep": ' + "[" * 100_000 + "]" * 100_000 + "}\n")


def _huge_number(pack: Path) -> None:
    text = (pack / "voice.json").read_text()
    (pack / "voice.json").write_text(text[:-2] + ', "big": ' + "9" * 5000 + "}\n")


def _notice_link(pack: Path) -> None:
    """SOURCES.md a link to a file outside the pack with the very bytes the manifest lists."""
    outside = add_notice(pack).rename(pack.parent / "outside.md")
    (pack / NOTICE_NAME).symlink_to(outside)


def _notice_tampered(pack: Path) -> None:
    path = add_notice(pack)
    path.write_bytes(path.read_bytes().replace(b"Apache", b"apache"))


def _vocoder_one_input(data: dict) -> None:
    data["networks"]["vocoder"]["inputs"] = data["networks"]["vocoder"]["inputs"][:1]


HOSTILE = {
    "external data": (_external_data, "refers to weights in other files"),
    "100k-deep JSON": (_deep_json, "nested more than 32 levels"),
    "5000-digit number": (_huge_number, "not valid JSON"),
    "huge content width": (_edit(lambda d: d["content"].update(width=10 ** 9)), r"content.width must be an integer"),
    "huge n_mels": (_edit(lambda d: d["mel"].update(n_mels=10 ** 7)), r"mel.n_mels must be an integer"),
    "huge receptive field": (_edit(lambda d: d["networks"]["decoder"].update(receptive_field=[10 ** 9, 0])),
                             "receptive_field must be an integer"),
    "speaker id 10^20": (_edit(lambda d: d["speakers"].update(evil=10 ** 20)), "id of speaker 'evil'"),
    "float width": (_edit(lambda d: d["content"].update(width=64.5)), "content: field 'width' has the wrong type"),
    "huge tensor dim": (_edit(lambda d: d["networks"]["decoder"]["inputs"][0].update(shape=[1, "T", 10 ** 12])),
                        "each dimension must be an integer"),
    "vocoder with one input": (_edit(_vocoder_one_input), "lacks the input.s. f0, phase, noise"),
    "width the graph does not take": (_edit(lambda d: d["content"].update(width=32)), "failed its test run"),
    "speaker beyond the graph's table": (_edit(lambda d: d["speakers"].update(ghost=500)), "failed its test run"),
    "hop the engine does not run": (_edit(lambda d: d.update(hop_length=256)), "failed its test run"),
    "unknown F0 method": (_edit(lambda d: d["f0"].update(method="crepe")), "f0.method 'crepe' is not one"),
    "content window after its frame": (_edit(lambda d: d["content"].update(offset=5)), "content.offset must be"),
    "content rate the engine does not feed": (_edit(lambda d: d["content"].update(sample_rate=22050)),
                                              "failed its test run"),
}


#: Spoilt notices, refused by the check of a pack the user picks or imports (`load_manifest` with hashes)
HOSTILE_NOTICES = {
    "notice under another name": (lambda pack: add_notice(pack, file="../voice.json"),
                                  "notice: file must be 'SOURCES.md' .a notice's name is fixed."),
    "notice a link": (_notice_link, "SOURCES.md is a link"),
    "notice of another size": (lambda pack: add_notice(pack, size=5), "SOURCES.md is 33 bytes but the manifest says 5"),
    "notice tampered": (_notice_tampered, "SOURCES.md does not match its sha256"),
    "notice missing": (lambda pack: add_notice(pack).unlink(), "the notice SOURCES.md is missing"),
    "notice too large": (lambda pack: add_notice(pack, b"x" * (LIMITS["notice_bytes"] + 1)),
                         r"notice.size must be an integer in 1..65536"),
    "notice not an object": (_edit(lambda d: d.update(notice="SOURCES.md")), "notice must be an object"),
}


@pytest.fixture()
def pack(ppg_pack: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "pack"
    shutil.copytree(ppg_pack, copy)
    return copy


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_pack_is_one_sentence(pack: Path, kind: str) -> None:
    spoil, message = HOSTILE[kind]
    spoil(pack)
    with pytest.raises(VoicePackError, match=message):
        load_voice(str(pack), Settings(), prefer=("cpu",))


@pytest.mark.parametrize("kind", sorted(HOSTILE_NOTICES))
def test_hostile_notice_is_one_sentence(pack: Path, kind: str) -> None:
    spoil, message = HOSTILE_NOTICES[kind]
    spoil(pack)
    with pytest.raises(VoicePackError, match=message):
        load_manifest(pack)


def test_notice_is_checked_again_when_read(pack: Path) -> None:
    """Listing checks sizes only; reading hashes the bytes it decodes, and they must be UTF-8."""
    path = add_notice(pack, "Quellen: Müller\n".encode("latin-1"))
    load_manifest(pack)                                   # a listed file with the right hash: loads
    with pytest.raises(VoicePackError, match="SOURCES.md is not UTF-8 text"):
        read_notice(pack)
    add_notice(pack, "Quellen: Müller\n".encode())
    assert read_notice(pack) == "Quellen: Müller\n"
    path.write_bytes("Quellen: Mùller\n".encode())     # same size, other bytes
    load_manifest(pack, verify_hashes=False)
    with pytest.raises(VoicePackError, match="does not match its size and sha256"):
        read_notice(pack)


def test_tampered_external_weights_never_load(pack: Path, tmp_path: Path, monkeypatch) -> None:
    """Even with the weights file beside the graph or in the working directory, nothing outside is read."""
    _external_data(pack)
    monkeypatch.chdir(pack)
    with pytest.raises(VoicePackError, match="refers to weights in other files"):
        load_voice(str(pack), Settings(), prefer=("cpu",))


@pytest.mark.parametrize("kind", ["external data", "speaker id 10^20", "width the graph does not take"])
def test_cli_says_one_sentence(pack: Path, tmp_path: Path, kind: str, capsys) -> None:
    import soundfile as sf

    HOSTILE[kind][0](pack)
    sf.write(tmp_path / "in.wav", np.zeros(24000, np.float32), 24000)
    assert convert_main([str(tmp_path / "in.wav"), str(tmp_path / "out.wav"), "--voice", str(pack), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert not (tmp_path / "out.wav").exists()
