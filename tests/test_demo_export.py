"""`python -m models.demo export WORK`: the demo pack with people's speaker names, preview clips and SOURCES.md."""
from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf

from engine.voicepack import NOTICE_NAME, load_manifest, read_notice
from models.demo.__main__ import main
from models.demo.data import DataError
from models.demo.sources import MBROLA_SOURCE, SOURCES, pack_notice, project_licence, sources_markdown
from models.demo.targets import TARGET_VOICES, display_name
from tests.fixtures.references import tone

NAMES = ["Heart (American female)", "Sky (American female)", "Eric (American male)", "George (British male)"]


def _fake_work(work: Path, vocoder: str = "nsf") -> None:
    """What the earlier stages leave: a tiny student with the four targets, a vocoder ('nsf':
    NSF-HiFiGAN, 'hn': harmonic-plus-noise), a PPG, target speech."""
    import torch

    from models.content.ppg import PPGConfig, PPGEncoder
    from tests.fixtures.official import write_official_checkpoint
    from tests.fixtures.packs import PPG_SIZES
    from tests.fixtures.vocoder import write_hn_vocoder, write_vocoder

    logs = work / "train" / "logs"
    write_official_checkpoint(logs / "como", n_spk=4, speakers={v: i for i, v in enumerate(TARGET_VOICES)},
                              global_step=1200)
    if vocoder == "hn":
        write_hn_vocoder(logs / "vocoder", size="tiny")
    else:
        write_vocoder(logs / "vocoder", layout="m4singer", size="tiny")
    torch.manual_seed(0)
    (work / "ppg").mkdir(parents=True)
    PPGEncoder(PPGConfig(**PPG_SIZES["tiny"])).eval().save(work / "ppg" / "ppg.pt")
    for i, voice in enumerate(TARGET_VOICES):
        folder = work / "targets" / voice
        folder.mkdir(parents=True)
        for n, hz in enumerate((200.0 + 50 * i, 900.0)):   # the first utterance (by name) is the preview
            sf.write(str(folder / f"{voice}-{n:05d}.flac"), tone(7.0 if n == 0 else 1.0, 24000, hz=hz), 24000)


def test_display_names_follow_kokoro_ids() -> None:
    assert [display_name(v) for v in TARGET_VOICES] == NAMES
    for bad in ("jf_alpha", "af", "ax_heart", "afheart"):
        with pytest.raises(DataError, match="not an English Kokoro voice id"):
            display_name(bad)


def test_pack_notice_names_every_source_but_mbrola(tmp_path: Path) -> None:
    notice = pack_notice([("Heart (American female)", "af_heart")])
    assert all(f"| {what} | {where} | {licence} |" in notice for what, where, licence in SOURCES
               if (what, where, licence) != MBROLA_SOURCE)
    assert MBROLA_SOURCE[0] not in notice and "MBROLA voices (licensed for non-commercial use only) were NOT" in notice
    assert "Heart (American female): imitates the Kokoro-82M voice `af_heart` (Apache-2.0)" in notice
    assert f"released under this project's licence, {project_licence()}" in notice and project_licence() == "MIT"
    assert MBROLA_SOURCE[0] in sources_markdown(tmp_path, tmp_path)   # the data's own list keeps everything


def test_export_writes_the_named_pack_with_previews_and_notice(tmp_path: Path, capsys) -> None:
    work, pack = tmp_path / "work", tmp_path / "voices" / "demo"
    assert main(["export", str(work), "--pack", str(pack)]) == 2            # nothing built yet
    err = capsys.readouterr().err
    assert "has no a student checkpoint" in err and "speech of bm_george" in err and len(err.splitlines()) == 1
    _fake_work(work)
    assert main(["export", str(work), "--pack", str(pack), "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert "exporters.onnx_export" in dry and "model_1200.pt" in dry and "af_heart-00000.flac" in dry
    assert not pack.exists() and not (work / "build").exists()               # a dry run writes nothing
    assert main(["export", str(work), "--pack", str(pack)]) == 0
    manifest = load_manifest(pack)                                            # every listed file's hash checked
    assert manifest.name == "CoMo demo voices"
    assert manifest.speakers == {name: i for i, name in enumerate(NAMES)}
    assert set(manifest.references) == set(NAMES) and manifest.stateful      # a preview per speaker; streams
    assert manifest.notice is not None and manifest.notice.file == NOTICE_NAME
    assert read_notice(pack) == (work / "build" / NOTICE_NAME).read_text(encoding="utf-8")
    assert "George (British male): imitates the Kokoro-82M voice `bm_george`" in read_notice(pack)
    heart = sf.read(str(pack / manifest.references[NAMES[0]].file))[0]
    assert len(heart) == 5 * 24000                                            # the first 5 s of the 7 s utterance


def test_export_takes_a_harmonic_plus_noise_vocoder(tmp_path: Path) -> None:
    work, pack = tmp_path / "work", tmp_path / "pack"
    _fake_work(work, vocoder="hn")
    assert main(["export", str(work), "--pack", str(pack)]) == 0
    vocoder = load_manifest(pack).networks["vocoder"]
    assert vocoder.extra["layout"] == "hn" and list(vocoder.receptive_field) == [19, 0]
