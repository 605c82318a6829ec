"""Speakers' preview clips in a voice pack: schema (hostile input), the verified loader, the player."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from engine.audio.devices import DeviceError
from engine.audio.preview import PreviewPlayer
from engine.audio.streams import SimulatedBackend
from engine.reference import load_reference
from engine.voicepack import MANIFEST_NAME, VoicePackError, load_manifest, reference_file_name
from engine.voices import describe
from tests.fixtures.references import add_reference, tone
from tests.test_app_fakes import make_pack
from tests.test_voicepack import _edit


def _pack(tmp_path: Path) -> Path:
    return make_pack(tmp_path / "pack", speakers={"alto": 0, "Tenor Voice": 1})


def test_pack_with_references_loads_and_resamples(tmp_path: Path) -> None:
    pack = _pack(tmp_path)
    add_reference(pack, "alto", tone(2.0, 22050, hz=440.0, channels=2), rate=22050, subtype="FLOAT")
    manifest = load_manifest(pack)
    assert set(manifest.references) == {"alto"}
    assert "reference/alto.wav" in manifest.files()
    assert describe(str(pack)).references == {"alto"}
    clip = load_reference(pack, "alto", 48000)
    assert clip.dtype == np.float32 and clip.ndim == 1 and abs(len(clip) - 96000) <= 1
    spectrum = np.abs(np.fft.rfft(clip))
    assert abs(np.argmax(spectrum) * 48000 / len(clip) - 440.0) < 2.0   # the same tone, at the new rate
    assert 0.2 < np.abs(clip).max() < 0.3                                 # stereo mixed to mono, not summed
    assert load_reference(pack, "Tenor Voice", 48000) is None             # no clip for this speaker
    assert load_manifest(make_pack(tmp_path / "old")).references == {}    # packs without the section stay valid


def test_file_names_are_derived_safely_from_speaker_names() -> None:
    assert reference_file_name("alto") == "reference/alto.wav"
    names = ["../../etc/passwd", "Alto", "alto ", "a/b", "a\\b", "con", "ü" * 300, "x:y", ".hidden"]
    files = [reference_file_name(n) for n in names]
    assert len(set(files)) == len(files)
    for file in files:
        folder, name = file.split("/")
        assert folder == "reference" and name.endswith(".wav") and len(name) < 100
        assert set(name[:-4]) <= set("abcdefghijklmnopqrstuvwxyz0123456789_-")


@pytest.mark.parametrize("file, match", [
    ("../voice.json", "derived from the speaker name"),
    ("reference/../decoder.onnx", "derived from the speaker name"),
    ("/etc/passwd", "derived from the speaker name"),
    ("reference/other.wav", "derived from the speaker name"),
])
def test_a_reference_path_cannot_leave_the_reference_folder(tmp_path: Path, file: str, match: str) -> None:
    pack = _pack(tmp_path)
    add_reference(pack, "alto", tone(1.0, 24000), file=file)
    with pytest.raises(VoicePackError, match=match):
        load_manifest(pack)


def test_hostile_reference_entries_are_refused(tmp_path: Path) -> None:
    pack = _pack(tmp_path)
    add_reference(pack, "alto", tone(1.0, 24000))
    for change, match in [
        (lambda d: d["references"].update(bass=d["references"]["alto"]), "not a speaker of this voice"),
        (lambda d: d["references"]["alto"].update(size=1 << 40), "size must be an integer"),
        (lambda d: d["references"]["alto"].update(sha256="A" * 64), "sha256 must be 64 lowercase"),
        (lambda d: d.update(references=[]), "'references' must be an object"),
    ]:
        good = (pack / MANIFEST_NAME).read_text()
        _edit(pack, change)
        with pytest.raises(VoicePackError, match=match):
            load_manifest(pack, verify_hashes=False)
        (pack / MANIFEST_NAME).write_text(good)


def test_tampered_missing_and_linked_clips_are_refused(tmp_path: Path) -> None:
    pack = _pack(tmp_path)
    path = add_reference(pack, "alto", tone(1.0, 24000))
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(VoicePackError, match="does not match its sha256"):
        load_manifest(pack)
    with pytest.raises(VoicePackError, match="does not match its size and sha256"):
        load_reference(pack, "alto", 24000)   # the loader hashes the bytes it plays, whatever listing did
    path.unlink()
    with pytest.raises(VoicePackError, match="reference clip of speaker 'alto' reference/alto.wav is missing"):
        load_manifest(pack)
    outside = tmp_path / "outside.wav"
    add_reference(tmp_path / "pack", "alto", tone(1.0, 24000)).rename(outside)
    os.symlink(outside, path)
    with pytest.raises(VoicePackError, match="is a link"):
        load_manifest(pack)


@pytest.mark.parametrize("audio, rate, subtype, match", [
    (tone(5.5, 16000), 16000, "PCM_16", "lasts 5.5 s"),
    (tone(1.0, 24000), 24000, "PCM_24", "16-bit or float WAV"),
    (tone(1.0, 24000, channels=3), 24000, "PCM_16", "mono or stereo"),
])
def test_clip_audio_is_checked_when_read(tmp_path: Path, audio, rate: int, subtype: str, match: str) -> None:
    pack = _pack(tmp_path)
    add_reference(pack, "alto", audio, rate=rate, subtype=subtype)
    load_manifest(pack)   # hashes fine: the audio itself is what is wrong
    with pytest.raises(VoicePackError, match=match):
        load_reference(pack, "alto", 48000)


def test_non_finite_float_samples_are_refused(tmp_path: Path) -> None:
    pack = _pack(tmp_path)
    audio = tone(1.0, 24000)
    audio[100] = np.nan
    add_reference(pack, "alto", audio, subtype="FLOAT")
    with pytest.raises(VoicePackError, match="not finite"):
        load_reference(pack, "alto", 24000)


def test_player_plays_the_clip_once_on_the_chosen_device_then_closes() -> None:
    backend = SimulatedBackend(rate=48000, frames=480, speed=4.0)
    player = PreviewPlayer(backend)
    clip = tone(0.2, 48000) + np.float32(0.1)   # never zero: its first sample marks where it starts
    label = player.play("Sim Headphones", lambda rate: clip if rate == 48000 else None)
    assert "Sim Headphones" in label
    deadline = time.monotonic() + 30
    while player.playing and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not player.playing                      # closed itself after the clip
    played = backend.played["Sim Headphones"]
    start = int(np.flatnonzero(played)[0])
    np.testing.assert_allclose(played[start:start + len(clip)], clip, atol=1e-6)
    assert not played[start + len(clip):].any() and not backend.played["Sim Speakers"].any()


def test_player_device_failures_are_sentences() -> None:
    backend = SimulatedBackend(rate=48000)
    backend.fail_open = "Device unavailable"
    with pytest.raises(DeviceError, match="Simulated device"):
        PreviewPlayer(backend).play(None, lambda rate: tone(0.1, rate))
    with pytest.raises(DeviceError, match="No output device is called"):
        PreviewPlayer(SimulatedBackend()).play("Nowhere", lambda rate: tone(0.1, rate))


def test_a_zip_import_keeps_the_listed_clips_and_nothing_else(tmp_path: Path) -> None:
    from app.engine_adapter import EngineAdapter
    from app.voice_import import import_voice_zip
    from tests.test_app_fakes import zip_folder

    pack = _pack(tmp_path)
    add_reference(pack, "alto", tone(1.0, 24000))
    (pack / "reference" / "stray.wav").write_bytes(b"not listed")
    (pack / "extra").mkdir()
    (pack / "extra" / "notes.txt").write_text("not listed")
    installed = import_voice_zip(zip_folder(pack, tmp_path / "diva.zip"), tmp_path / "voices",
                                 validate=EngineAdapter().validate_pack)
    assert sorted(p.relative_to(installed).as_posix() for p in installed.rglob("*")) == [
        "content.onnx", "decoder.onnx", "reference", "reference/alto.wav", "vocoder.onnx", "voice.json"]
    assert load_reference(installed, "alto", 24000) is not None
