"""`python -m models.demo evaluate PACK WORK`: a voice pack scored on held-out speech through the streaming engine."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from models.demo import voice_metrics
from models.demo.__main__ import main
from models.demo.phones import PHONE_INDEX, SIL
from models.demo.utterance import Utterance, write_utterance
from tests.fixtures.references import add_reference
from engine.voicepack import reference_file_name
from models.demo.voice_metrics import key_shift, median_f0, word_error_rate, word_errors, words

SCORING_PACKAGES = ("resemblyzer", "distillmos", "pocketsphinx")
HAVE_ESPEAK = shutil.which("espeak-ng") is not None
TEXT = "the quick brown fox jumps over the lazy dog"


def _voice(f0_start: float, f0_end: float, seconds: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Tonal 'speech': a harmonic glide with two formant-like emphases, syllable-shaped loudness, pauses."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    f0 = np.geomspace(f0_start, f0_end, n) * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    wave = sum(np.sin(k * phase) / k * (1.5 if abs(k * f0_start - 700) < 250 or abs(k * f0_start - 1800) < 300 else 1)
               for k in range(1, 25) if k * f0_end < rate / 2)
    syllables = np.clip(np.sin(2 * np.pi * 3.2 * t), 0, None) ** 0.5
    return (0.12 * wave * syllables + 0.002 * rng.standard_normal(n)).astype(np.float32)


def _espeak(text: str, rate: int) -> np.ndarray:
    """Real words for the recogniser (espeak-ng, installed by the data command), at `rate`."""
    import io

    import soxr

    wav = subprocess.run(["espeak-ng", "--stdout", text], capture_output=True, check=True).stdout
    audio, native = sf.read(io.BytesIO(wav), dtype="float32")
    return soxr.resample(audio, native, rate).astype(np.float32)


def _write_heldout(work: Path) -> None:
    """One held-out utterance per set: a Kokoro-rate tonal 'female' voice and a flite-rate 'male' one
    (espeak-ng speech when it is installed, so the word error rate has words to score)."""
    rng = np.random.default_rng(0)
    for split, speaker, rate, (lo, hi) in (("kokoro-heldout", "kokoro:af_nova", 24000, (210.0, 260.0)),
                                           ("flite", "flite:kal16", 16000, (105.0, 135.0))):
        speech = HAVE_ESPEAK and split == "flite"
        audio = _espeak(TEXT, rate) if speech else _voice(lo, hi, 2.0, rate, rng)
        phones = [SIL, PHONE_INDEX["AA"], SIL]
        ends = [rate // 4, len(audio) - rate // 4, len(audio)]
        write_utterance(work / "data" / split, Utterance(f"{split}-00000", split, speaker.split(":")[0], speaker,
                                                         TEXT, rate, phones, ends, {}, audio))


def _need_scorers() -> None:
    """Skip unless the scoring packages import (distillmos behind the torchaudio shim, as the command does)."""
    for package in SCORING_PACKAGES:
        try:
            voice_metrics.require(package)
        except voice_metrics.MissingPackage as exc:
            pytest.skip(str(exc))


@pytest.fixture(scope="module")
def pack_and_work(tmp_path_factory):
    """A tiny stateful pack (speaker 0 has a preview clip, speaker 1 only --target-audio) and a WORK."""
    from tests.fixtures.packs import export_tiny_pack
    from engine.voicepack import load_manifest

    root = tmp_path_factory.mktemp("demo-eval")
    pack = export_tiny_pack(root / "p", stateful=True)
    names = sorted(load_manifest(pack).speakers, key=load_manifest(pack).speakers.get)
    rng = np.random.default_rng(1)
    add_reference(pack, names[0], _voice(180, 220, 2.0, 24000, rng))
    targets = root / "targets"
    for i in range(2):
        (targets / names[1]).mkdir(parents=True, exist_ok=True)
        sf.write(targets / names[1] / f"{names[1]}-{i}.flac", _voice(95, 120, 1.5, 24000, rng), 24000)
    work = root / "work"
    _write_heldout(work)
    return pack, work, targets, names


def test_word_error_rate_is_the_word_edit_distance_over_the_reference_words():
    assert words("Don't stop, the BUS!") == ["don't", "stop", "the", "bus"]
    assert word_errors("a b c d".split(), "a x c d e".split()) == 2          # one substitution, one insertion
    assert word_errors("a b c".split(), []) == 3
    assert word_error_rate("the cat sat on the mat", "the cat sat on the mat") == 0.0
    assert word_error_rate("the cat sat on the mat", "a cat sat the mat") == pytest.approx(2 / 6)
    assert word_error_rate("one two", "one two three four") == pytest.approx(1.0)
    assert math.isnan(word_error_rate("", "anything"))


def test_key_shift_moves_the_source_median_onto_the_target_median():
    assert key_shift(110.0, 220.0) == pytest.approx(12.0)
    assert key_shift(220.0, 110.0) == pytest.approx(-12.0)
    assert key_shift(200.0, 200.0 * 2 ** (3.5 / 12)) == pytest.approx(3.5)
    assert key_shift(50.0, 1000.0) == 24.0                       # the engine's key range
    assert key_shift(None, 220.0) == 0.0 and key_shift(220.0, None) == 0.0
    f0 = np.array([0, 100, 0, 200, 300, 0], dtype=np.float32)
    assert median_f0(f0, f0 > 0) == pytest.approx(200.0)
    assert median_f0(f0, np.zeros(6, bool)) is None


def test_a_small_utterance_limit_still_takes_every_voice_of_a_set(tmp_path):
    from models.demo.corpus import split_files
    from models.demo.pack_eval import pick_utterances

    rng = np.random.default_rng(2)
    for i, speaker in enumerate(["kokoro:a"] * 3 + ["kokoro:b"] * 3):   # written voice by voice, as the data command does
        audio = _voice(150, 160, 0.2, 16000, rng)
        write_utterance(tmp_path / "flite", Utterance(f"flite-{i:05d}", "flite", "kokoro", speaker, "x", 16000,
                                                      [SIL], [len(audio)], {}, audio))
    picked = pick_utterances(split_files(tmp_path, "flite"), 3)
    assert [m.id for _, m in picked] == ["flite-00000", "flite-00003", "flite-00001"]
    assert len(pick_utterances(split_files(tmp_path, "flite"), None)) == 6


@pytest.mark.parametrize("package", SCORING_PACKAGES)
def test_a_missing_package_stops_the_command_with_one_sentence(pack_and_work, tmp_path, monkeypatch, capsys, package):
    pack, work, targets, _ = pack_and_work
    # The command loads the scorers in SCORING_PACKAGES' order and names the first one missing.
    for other in SCORING_PACKAGES[:SCORING_PACKAGES.index(package)]:
        try:
            voice_metrics.require(other)
        except voice_metrics.MissingPackage as exc:
            pytest.skip(f"{other} is missing here, so the command would name it first: {exc}")
    monkeypatch.setitem(sys.modules, package, None)  # `import package` now raises ImportError
    code = main(["evaluate", str(pack), str(work), "--target-audio", str(targets), "--f0", "dio",
                 "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.count(". ") == 0
    assert package in err and "pip install" in err and voice_metrics.INSTALL[package][1] in err
    assert not (tmp_path / "r").exists()


def test_bad_pack_or_work_is_one_sentence_and_exit_2(pack_and_work, tmp_path, capsys):
    pack, work, targets, names = pack_and_work
    cases = [([str(tmp_path), str(work)], "not a voice pack"),
             ([str(pack), str(tmp_path / "nowhere")], "does not exist"),
             ([str(pack), str(tmp_path)], "run `python -m models.demo data"),
             ([str(pack), str(work), "--block-ms", "1"], "block_ms"),
             ([str(pack), str(work)], f"speaker {names[1]!r} has no reference audio")]
    for argv, message in cases:
        if message.startswith("run") or message.startswith("speaker"):
            _need_scorers()
        assert main(["evaluate", *argv, "--f0", "dio"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err


def test_evaluate_converts_every_heldout_utterance_to_every_speaker_and_reports_every_metric(pack_and_work, tmp_path):
    _need_scorers()
    pack, work, targets, names = pack_and_work
    out = tmp_path / "report"
    assert main(["evaluate", str(pack), str(work), "--target-audio", str(targets), "--out", str(out),
                 "--f0", "dio", "--max-utterances", "1"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert "Acceptance" in (out / "report.md").read_text()
    assert len(report["rows"]) == 2 * 2                      # 2 speakers x 2 held-out utterances
    assert {r["set"] for r in report["rows"]} == {"kokoro-heldout", "flite"}
    assert report["targets"][names[0]]["reference"].endswith(reference_file_name(names[0]))
    assert report["targets"][names[1]]["reference"] == str(targets / names[1])
    overall = report["overall"]
    metrics = ["sim_target", "sim_source", "target_wins", "f0_corr", "f0_rmse_cents", "mos_output", "mos_input",
               "mos_target", "rtf", "latency_ms"]
    if HAVE_ESPEAK:  # tones have no words: the rate is undefined (null) without real speech
        assert overall["words_in"] > 0
        metrics.append("wer")
    for metric in metrics:
        assert overall[metric] is not None and math.isfinite(overall[metric]), metric
        for name in names:
            # a random pack's output may have no voiced frame for one speaker: its F0 scores are undefined
            if metric not in ("mos_input", "latency_ms", "f0_corr", "f0_rmse_cents"):
                assert math.isfinite(report["targets"][name][metric]), (name, metric)
    assert overall["f0_scored"] >= 1
    assert all(r["transcript_in"] == report["inputs"][i % 2]["transcript"] for i, r in enumerate(report["rows"]))
    assert 1.0 <= overall["mos_output"] <= 5.0 and -1.0 <= overall["sim_target"] <= 1.0
    assert set(report["acceptance"]) == {"target_wins", "sim_target", "f0_corr", "mos_output", "wer"}
    # keys: each target's reference median over the source speaker's median (female source -> male target: down)
    keys = report["targets"][names[1]]["keys"]
    assert keys["flite:kal16"] > keys["kokoro:af_nova"] and keys["kokoro:af_nova"] < -6
    setup = report["setup"]
    assert setup["block_ms"] == pytest.approx(20.0) and setup["core"] == "StatefulCore"
    assert setup["latency_ms"]["algorithmic"] == pytest.approx(setup["latency_ms"]["converter"] + 20.0)


def test_target_audio_is_found_under_the_speaker_name_or_the_kokoro_voice_it_is_named_after(tmp_path):
    from types import SimpleNamespace

    from models.demo.pack_eval import EvalError, reference_files
    from models.demo.targets import display_name

    targets = tmp_path / "targets"
    (targets / "af_heart").mkdir(parents=True)
    for i in range(3):
        (targets / "af_heart" / f"af_heart-{i}.flac").write_bytes(b"")
    (tmp_path / "pack").mkdir()
    manifest = SimpleNamespace(folder=str(tmp_path / "pack"), references={
        "Sky (American female)": SimpleNamespace(file="reference/sky.wav")})
    heart = reference_files(manifest, display_name("af_heart"), targets)
    assert [p.name for p in heart] == ["af_heart-0.flac", "af_heart-1.flac", "af_heart-2.flac"]
    assert reference_files(manifest, "Sky (American female)", targets) == [tmp_path / "pack" / "reference/sky.wav"]
    with pytest.raises(EvalError, match="no preview clip"):
        reference_files(manifest, "Eric (American male)", targets)
