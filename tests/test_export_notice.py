"""`python -m exporters.onnx_export --notice FILE --speaker-name ID=NAME`: a pack's SOURCES.md and speaker names."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.voicepack import LIMITS, NOTICE_NAME, load_manifest, read_notice, sha256_file
from exporters.onnx_export import ExportError, main, rename_references, rename_speakers
from tests.fixtures.packs import write_sources
from tests.fixtures.references import tone

NOTICE = "# Sources\n\n| what | licence |\n|---|---|\n| Kokoro-82M — voices | Apache-2.0 |\n"


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> dict[str, Path]:
    """A tiny student checkpoint with speakers singer0 and singer1, its vocoder and content encoder."""
    return write_sources(tmp_path_factory.mktemp("src"))


def _args(src: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [str(src["ckpt"]), "--vocoder", str(src["vocoder"]), "--content", str(src["content"]), "--out", str(out),
            "--no-stateful", "--quiet", *extra]


def test_notice_and_names_are_in_the_pack(src: dict[str, Path], tmp_path: Path, capsys) -> None:
    import soundfile as sf

    notice = tmp_path / "notes.md"
    notice.write_text(NOTICE, encoding="utf-8")
    clip = tmp_path / "clip.wav"
    sf.write(str(clip), tone(1.0, 24000), 24000)
    out = tmp_path / "pack"
    assert main(_args(src, out, "--notice", str(notice), "--speaker-name", "singer0=Heart (American female)",
                      "--reference", f"singer0={clip}", "--reference", f"Sky={clip}",
                      "--speaker-name", "singer1=Sky")) == 0
    printed = capsys.readouterr().out
    assert "speakers: Heart (American female), Sky" in printed and f"notice: {NOTICE_NAME}" in printed
    manifest = load_manifest(out)                                 # hashes of every listed file checked
    assert manifest.speakers == {"Heart (American female)": 0, "Sky": 1}
    assert set(manifest.references) == {"Heart (American female)", "Sky"}   # by its old id and by its new name
    assert manifest.notice is not None and manifest.notice.file == NOTICE_NAME
    assert manifest.notice.sha256 == sha256_file(notice) and NOTICE_NAME in manifest.files()
    assert read_notice(out) == NOTICE
    # Without the options, the manifest has no notice section and the checkpoint's names.
    plain = tmp_path / "plain"
    assert main(_args(src, plain)) == 0
    assert "notice" not in (plain / "voice.json").read_text() and read_notice(plain) is None
    assert set(load_manifest(plain).speakers) == {"singer0", "singer1"}


@pytest.mark.parametrize("extra, message", [
    (["--notice", "{tmp}/missing.md"], "cannot read the notice"),
    (["--notice", "{tmp}/latin1.md"], "is not UTF-8 text"),
    (["--notice", "{tmp}/huge.md"], "must hold 1 to 64 KiB of text, it holds more"),
    (["--notice", "{tmp}/empty.md"], "it holds nothing"),
    (["--speaker-name", "bass=Bass"], "renames 'bass', which this checkpoint does not have"),
    (["--speaker-name", "singer0="], "gives speaker 'singer0' the name ''"),
    (["--speaker-name", "singer0=Alto", "--speaker-name", "singer1=Alto"], "give two speakers the name 'Alto'"),
    (["--speaker-name", "singer0=singer1"], "give two speakers the name 'singer1'"),
    (["--speaker-name", "singer0=A", "--speaker-name", "singer0=B"], "renames speaker 'singer0' twice"),
    (["--speaker-name", "Alto"], "--speaker-name takes ID=NAME"),
    (["--speaker-name", "singer0=Alto", "--reference", "singer0={tmp}/clip.wav", "--reference", "Alto={tmp}/clip.wav"],
     "names speaker 'Alto' twice"),
    (["--speaker-name", "singer0=Alto", "--reference", "Tenor={tmp}/clip.wav"], "names 'Tenor', which this voice"),
])
def test_bad_notices_and_names_are_one_sentence_and_leave_nothing(src: dict[str, Path], tmp_path: Path, capsys,
                                                                  extra: list[str], message: str) -> None:
    import soundfile as sf

    (tmp_path / "latin1.md").write_bytes("Sources: Müller\n".encode("latin-1"))
    (tmp_path / "huge.md").write_text("x" * (LIMITS["notice_bytes"] + 1))
    (tmp_path / "empty.md").write_text("")
    sf.write(str(tmp_path / "clip.wav"), tone(1.0, 24000), 24000)
    out = tmp_path / "pack"
    assert main(_args(src, out, *(a.replace("{tmp}", str(tmp_path)) for a in extra))) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".export")] == []


def test_renaming_rules() -> None:
    speakers = {"a": 0, "b": 1}
    assert rename_speakers(speakers, {"a": "b", "b": "a"}) == {"b": 0, "a": 1}     # a swap is fine
    assert rename_speakers(speakers, {}) == speakers
    with pytest.raises(ExportError, match="1 to 256 characters"):
        rename_speakers(speakers, {"a": "x" * 257})
    with pytest.raises(ExportError, match="not only spaces"):
        rename_speakers(speakers, {"a": "  "})
    with pytest.raises(ExportError, match="ambiguous"):                            # old a, or new a (old b)?
        rename_references({"a": Path("x.wav")}, {"a": "b", "b": "a"})
    assert rename_references({"b": Path("x.wav")}, {"a": "b"}) == {"b": Path("x.wav")}
