"""Training commands (`python -m models.train ...`) on tiny synthetic data the tests make themselves.

One prepared WORK_DIR (two synthetic "voices": harmonic tones with vibrato, different range and
timbre; plus one corrupt file) is shared by the module; the trained teacher, student and vocoder are
module fixtures too, so each is trained once.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from models.train.__main__ import main
from models.train.logger import read_metrics

SR = 24000
TINY = ["--set", "train.interval_log=1"]


def harmonic_voice(f0: float, tilt: float, seconds: float, seed: int) -> np.ndarray:
    """A sung vowel stand-in: 11 harmonics with vibrato, a random key, a silent gap in the middle."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    track = f0 * 2 ** (rng.uniform(-3, 3) / 12) * (1 + 0.05 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(track) / SR
    y = sum(tilt ** k * np.sin(k * phase) for k in range(1, 12)) * np.sin(np.pi * t / seconds) ** 0.5
    y = np.concatenate([y[: len(y) // 2], np.zeros(int(0.8 * SR)), y[len(y) // 2:]])
    return (0.3 * y / np.max(np.abs(y))).astype(np.float32)


def write_speakers(root: Path, voices: dict[str, tuple[float, float]], files: int = 3) -> Path:
    for name, (f0, tilt) in voices.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(files):
            sf.write(folder / f"song{i}.wav", harmonic_voice(f0, tilt, 2.0, i), SR)
    return root


def losses(metrics: Path, name: str = "train/loss") -> list[float]:
    return [r["value"] for r in read_metrics(metrics) if r["name"] == name]


def run_cli(*args: str) -> int:
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def ppg(tmp_path_factory) -> Path:
    from models.content.ppg import PPGConfig, PPGEncoder

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("enc") / "ppg.pt"
    PPGEncoder(PPGConfig(width=16, channels=16, kernels=(3,), dilations=(1,))).eval().save(path)
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = write_speakers(tmp_path_factory.mktemp("data"), {"alto": (220.0, 0.6), "bass": (110.0, 0.8)})
    (root / "alto" / "broken.wav").write_bytes(b"RIFF this is not audio")
    return root


@pytest.fixture(scope="module")
def work(tmp_path_factory, data_dir, ppg) -> Path:
    work = tmp_path_factory.mktemp("work")
    assert run_cli("prepare", data_dir, work, "--content", ppg, "--size", "tiny", "--workers", "2", "-q") == 0
    return work


@pytest.fixture(scope="module")
def teacher_ckpt(work) -> Path:
    assert run_cli("teacher", work, "--max-steps", 200, "--device", "cpu", "-q", *TINY,
                   "--set", "train.lr=3e-3", "--set", "train.interval_val=200") == 0
    return work / "logs" / "teacher" / "model_200.pt"


@pytest.fixture(scope="module")
def student_ckpt(work, teacher_ckpt) -> Path:
    assert run_cli("distill", work, "--teacher", teacher_ckpt, "--max-steps", 150, "--device", "cpu", "-q", *TINY,
                   "--set", "train.comolr=1e-3", "--set", "train.interval_val=150") == 0
    return work / "logs" / "como" / "model_150.pt"


@pytest.fixture(scope="module")
def vocoder_ckpts(work) -> tuple[Path, Path]:
    """Checkpoints of step 1 and step 120 of one generator-only run (stopped after step 1)."""
    common = ["--device", "cpu", "-q", *TINY, "--set", "vocoder_train.lr=2e-3", "--set", "train.interval_val=1000"]
    assert run_cli("vocoder", work, "--max-steps", 1, *common) == 0
    assert run_cli("vocoder", work, "--max-steps", 120, *common) == 0
    folder = work / "logs" / "vocoder"
    return folder / "model_ckpt_steps_1.ckpt", folder / "model_ckpt_steps_120.ckpt"


# ------------------------------------------------------------------------------------------ prepare

def test_prepare_writes_items_config_and_names_the_corrupt_file(work, data_dir, ppg, capsys):
    from models.train.config import load_config

    cfg = load_config(work / "config.yaml")
    assert cfg["spk"] == {"alto": 0, "bass": 1} and cfg["model"]["n_spk"] == 2
    assert cfg["data"]["encoder_out_channels"] == 16 and cfg["content"]["kind"] == "ppg"
    skipped = (work / "skipped.txt").read_text()
    assert "broken.wav" in skipped and skipped.count("\n") == 1
    train = (work / "filelists" / "train.txt").read_text().split()
    val = (work / "filelists" / "val.txt").read_text().split()
    assert len(val) == 4 and len(train) == 8 and not set(train) & set(val)  # each file cut in two at the gap
    item = work / "data" / train[0]
    audio, mel = np.load(item / "audio.npy"), np.load(item / "mel.npy")
    assert mel.shape == (len(audio) // 128, 80)
    for key in ("f0", "uv", "volume", "aug_vol"):
        assert np.load(item / f"{key}.npy").shape == (len(mel),)
    assert np.load(item / "units.npy").shape[1] == 16 and np.max(np.abs(audio)) <= 0.95 + 1e-6

    # a rerun skips finished files (their items are not rewritten) and names the corrupt one again
    stamp = (item / "mel.npy").stat().st_mtime_ns
    capsys.readouterr()
    assert run_cli("prepare", data_dir, work, "-q") == 0
    assert (item / "mel.npy").stat().st_mtime_ns == stamp
    err = capsys.readouterr().err
    assert "skipped 1 file(s)" in err and "broken.wav" in err


def test_prepare_refuses_data_with_no_usable_audio(tmp_path, ppg, capsys):
    (tmp_path / "data" / "x").mkdir(parents=True)
    (tmp_path / "data" / "x" / "bad.flac").write_bytes(b"fLaC garbage")
    assert run_cli("prepare", tmp_path / "data", tmp_path / "work", "--content", ppg, "--size", "tiny", "-q") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no usable audio") and "bad.flac" in err[0]


def test_missing_or_invalid_config_is_one_sentence_and_nothing_is_lost(work, tmp_path, capsys):
    assert run_cli("teacher", tmp_path, "--max-steps", 1, "-q") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no training config" in err[0] and "prepare" in err[0]

    broken = tmp_path / "w"
    broken.mkdir()
    (broken / "config.yaml").write_text("train: {batch_size: many}\n")
    assert run_cli("teacher", broken, "-q") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lacks the section" in err[0]

    before = (work / "config.yaml").read_bytes()
    assert run_cli("teacher", work, "--set", "train.batch_size=many", "-q") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.batch_size must be int" in err[0]
    assert (work / "config.yaml").read_bytes() == before


def test_right_context_is_validated(work, capsys):
    assert run_cli("teacher", work, "--set", "model.right_context=-1", "-q") == 2
    assert "non-negative integer" in capsys.readouterr().err


def test_bounded_right_context_trains_networks_that_look_that_far_ahead(work, data_dir, ppg, tmp_path, capsys):
    """`right_context` k builds causal networks with k frames of lookahead; the checkpoints say so."""
    import shutil

    from models.comosvc import load_official
    from models.vocoder import load_vocoder

    copy = tmp_path / "work"
    shutil.copytree(work, copy, ignore=shutil.ignore_patterns("logs"))
    common = ["--max-steps", 2, "--device", "cpu", "-q"]
    assert run_cli("teacher", copy, *common, "--set", "model.right_context=1") == 0
    teacher = load_official(copy / "logs" / "teacher" / "model_2.pt").model
    assert teacher.decoder.denoise_fn.receptive_field[1] == 1
    assert run_cli("vocoder", copy, *common, "--set", "vocoder_model.right_context=2") == 0
    vocoder = load_vocoder(copy / "logs" / "vocoder" / "model_ckpt_steps_2.ckpt")
    assert vocoder.receptive_field[1] == 2
    # the content encoder is given, not built: one that looks further ahead than promised is refused
    capsys.readouterr()
    assert run_cli("prepare", data_dir, tmp_path / "w2", "--content", ppg, "--size", "tiny", "-q",
                   "--set", "content.right_context=0") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "content.right_context=0" in err[0] and "1 frames of right context" in err[0]


def test_prepare_with_a_mel_framed_ppg_and_yin_gives_one_unit_per_mel_frame(tmp_path, one_torch_thread):
    """The low-latency front ends: a PPG on the mel grid reads the 24 kHz audio (no resampling) and
    gives content frame j for mel frame j; YIN's f0 is the engine's, held through unvoiced frames."""
    from models.content import load_content_encoder
    from models.content.ppg import PPGConfig, PPGEncoder
    from models.pitch import YinPitch, hold_unvoiced
    from models.train.config import load_config
    from models.train.dataset import AcousticItems, content_rate, item_tensors, read_list

    torch.manual_seed(0)
    enc_path = tmp_path / "ppg-mel.pt"
    PPGEncoder(PPGConfig(width=16, channels=16, kernels=(3,), dilations=(1,), framing="mel",
                         right_context=1)).eval().save(enc_path)
    data = write_speakers(tmp_path / "data", {"alto": (220.0, 0.6)}, files=2)
    work = tmp_path / "work"
    assert run_cli("prepare", data, work, "--content", enc_path, "--f0", "yin", "--size", "tiny", "-q") == 0
    cfg = load_config(work / "config.yaml")
    assert content_rate(cfg) == (128, 24000) and cfg["data"]["f0_extractor"] == "yin"
    enc = load_content_encoder(enc_path)
    names = read_list(work, "train") + read_list(work, "val")
    for name in names:
        item = work / "data" / name
        audio, mel, units = (np.load(item / f"{k}.npy") for k in ("audio", "mel", "units"))
        assert units.shape == (len(mel), 16)  # one content frame per mel frame
        with torch.no_grad():
            expected = enc(enc.stream_input(torch.from_numpy(audio)[None]))[0].numpy()
        np.testing.assert_allclose(units, expected, atol=1e-5)
        raw, _ = YinPitch().raw(audio)
        np.testing.assert_array_equal(np.load(item / "f0.npy"), hold_unvoiced(raw)[0])
        feats = item_tensors(work, cfg, name)
        assert torch.equal(feats["units"][0], torch.from_numpy(units))  # aligned = identity
    crop = AcousticItems(work, names[:1], cfg["spk"], 0, 32, 0.0, "nearest", content_rate(cfg))[(0, 0)]
    whole = item_tensors(work, cfg, names[0])
    start = int(np.flatnonzero((whole["mel"][0] == crop["mel"][0]).all(-1))[0])
    assert torch.equal(crop["units"], whole["units"][0, start:start + 32])  # crops keep units and mels together


# ------------------------------------------------------------------------------------------ training

def test_teacher_loss_falls(teacher_ckpt):
    curve = losses(teacher_ckpt.parent / "metrics.csv")
    assert len(curve) == 200
    assert np.mean(curve[-50:]) < 0.85 * np.mean(curve[:50])


def test_prior_phase_learns_the_one_step_mel_faster_than_edm_then_hands_over(work):
    """train.prior_steps: the first steps regress D(sigma_max eps) on the mel, then the EDM objective
    takes over; at the end of that phase the one-step sample is nearer the ground truth than after as
    many EDM steps (tiny model, so a high learning rate)."""
    common = ["--max-steps", 60, "--device", "cpu", "-q", *TINY, "--set", "train.interval_val=15",
              "--set", "train.lr=1e-2"]
    assert run_cli("teacher", work, *common, "--set", "env.expdir=prior", "--set", "train.prior_steps=45") == 0
    assert run_cli("teacher", work, *common, "--set", "env.expdir=edm") == 0
    assert losses(work / "prior" / "teacher" / "metrics.csv", "train/prior") == [1.0] * 45 + [0.0] * 15
    assert losses(work / "edm" / "teacher" / "metrics.csv", "train/prior") == [0.0] * 60
    prior, edm = (losses(work / d / "teacher" / "metrics.csv", "val/one_step_mel_l1") for d in ("prior", "edm"))
    assert len(prior) == len(edm) == 4                  # validation at steps 15, 30, 45, 60
    assert prior[2] < 0.8 * edm[2]                      # step 45: the end of the prior phase


def test_prior_steps_must_not_be_negative(work, capsys):
    assert run_cli("teacher", work, "--set", "train.prior_steps=-1", "-q") == 2
    assert "train.prior_steps must be 0 or more" in capsys.readouterr().err


def test_interrupted_run_resumes_with_same_steps_and_loss_curve(work):
    import shutil

    from models.checkpoints import safe_load

    common = ["--device", "cpu", "-q", *TINY, "--set", "train.interval_force_save=3"]
    assert run_cli("teacher", work, "--max-steps", 6, "--set", "env.expdir=straight", *common) == 0
    folder = work / "stopped" / "teacher"
    assert run_cli("teacher", work, "--max-steps", 3, "--set", "env.expdir=stopped", *common) == 0
    shutil.copy(folder / "resume.pt", work / "resume_3.pt")
    assert run_cli("teacher", work, "--max-steps", 5, "--set", "env.expdir=stopped", *common) == 0
    # the process "died" after logging step 5 but before any checkpoint after step 3's
    shutil.copy(work / "resume_3.pt", folder / "resume.pt")
    assert run_cli("teacher", work, "--max-steps", 6, "--set", "env.expdir=stopped", *common) == 0
    assert safe_load(folder / "resume.pt")["step"] == 6
    straight = read_metrics(work / "straight" / "teacher" / "metrics.csv")
    resumed = read_metrics(folder / "metrics.csv")
    assert [r["step"] for r in resumed if r["name"] == "train/loss"] == [1, 2, 3, 4, 5, 6]
    assert resumed == straight
    a = safe_load(work / "straight" / "teacher" / "model_6.pt")["model"]
    b = safe_load(folder / "model_6.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_stage_continues_from_its_weights_alone(work, vocoder_ckpts, capsys):
    """Committed weights (no resume.pt) copied into a new folder: the stage continues at their step,
    with its learning-rate schedule where that step has it, and says so."""
    import shutil

    common = ["--device", "cpu", "-q", *TINY, "--set", "train.decay_step=2", "--set", "train.interval_force_save=3"]
    assert run_cli("teacher", work, "--max-steps", 5, "--set", "env.expdir=straight5", *common) == 0
    continued = work / "continued" / "teacher"
    continued.mkdir(parents=True)
    for name in ("model_3.pt", "config.yaml"):        # what weights/demo/teacher holds
        shutil.copy(work / "straight5" / "teacher" / name, continued)
    capsys.readouterr()
    assert run_cli("teacher", work, "--max-steps", 5, "--set", "env.expdir=continued", *common) == 0
    assert "continuing from the weights of step 3 (model_3.pt) with a fresh optimiser" in capsys.readouterr().err
    rows, straight = read_metrics(continued / "metrics.csv"), read_metrics(work / "straight5" / "teacher" / "metrics.csv")
    lr = lambda rs: [(r["step"], r["value"]) for r in rs if r["name"] == "train/lr"]   # noqa: E731
    assert [r["step"] for r in rows if r["name"] == "train/loss"] == [4, 5]
    assert lr(rows) == lr(straight)[3:] and lr(rows)[0][1] < lr(straight)[0][1]     # halved twice by step 4
    # the weights were loaded: step 4's loss (before its update, same batch and noise) is the straight run's
    loss = lambda rs: {r["step"]: r["value"] for r in rs if r["name"] == "train/loss"}   # noqa: E731
    assert loss(rows)[4] == pytest.approx(loss(straight)[4], rel=1e-5)
    # weights that do not load are one sentence naming the file, not a traceback
    damaged = work / "damaged" / "teacher"
    damaged.mkdir(parents=True)
    shutil.copy(continued / "config.yaml", damaged)
    (damaged / "model_3.pt").write_bytes(b"not a checkpoint")
    assert run_cli("teacher", work, "--max-steps", 5, "--set", "env.expdir=damaged", *common) == 2
    err = capsys.readouterr().err
    assert "model_3.pt" in err and "Traceback" not in err
    # the vocoder: its checkpoint (with config.yaml beside it, as written) continues too
    folder = work / "voc_continued" / "vocoder"
    folder.mkdir(parents=True)
    for f in (vocoder_ckpts[1], vocoder_ckpts[1].parent / "config.yaml"):
        shutil.copy(f, folder)
    assert run_cli("vocoder", work, "--max-steps", 122, "--device", "cpu", "-q", *TINY,
                   "--set", "env.expdir=voc_continued", "--set", "train.interval_val=1000") == 0
    assert "continuing from the weights of step 120" in capsys.readouterr().err
    assert (folder / "model_ckpt_steps_122.ckpt").is_file()
    # resumed with its optimiser state, a vocoder run takes the learning rate it is given now
    # (the demo plan's tune-vocoder stage continues the vocoder run at a lower rate)
    assert run_cli("vocoder", work, "--max-steps", 123, "--device", "cpu", "-q", *TINY, "--set", "vocoder_train.lr=3e-5",
                   "--set", "env.expdir=voc_continued", "--set", "train.interval_val=1000") == 0
    lrs = [(r["step"], r["value"]) for r in read_metrics(folder / "metrics.csv") if r["name"] == "train/lr"]
    assert lrs[-1] == (123, pytest.approx(3e-5)) and lrs[-2][1] != pytest.approx(3e-5)


def test_distillation_loss_falls_and_student_moves_towards_the_teacher(work, teacher_ckpt, student_ckpt):
    from models.comosvc import load_official
    from models.train.config import load_config
    from models.train.dataset import item_tensors, read_list

    curve = losses(student_ckpt.parent / "metrics.csv")
    assert np.mean(curve[-30:]) < np.mean(curve[:30])
    teacher, student = load_official(teacher_ckpt), load_official(student_ckpt)
    assert student.kind == "student" and teacher.kind == "teacher"
    cfg = load_config(work / "config.yaml")
    at_init, trained = [], []
    for name in read_list(work, "train") + read_list(work, "val"):
        f = item_tensors(work, cfg, name)
        noise = torch.randn(f["mel"].shape, generator=torch.Generator().manual_seed(0))
        args = (f["units"], f["f0"], f["volume"], f["speaker"], noise)
        with torch.no_grad():
            reference = teacher.model.infer_mel(*args, steps=25, teacher=True)
            at_init.append(float((teacher.model.infer_mel(*args, steps=1) - reference).abs().mean()))
            trained.append(float((student.model.infer_mel(*args, steps=1) - reference).abs().mean()))
    assert np.mean(trained) < np.mean(at_init)


def test_distill_with_zero_steps_makes_the_teacher_the_one_step_student(work, teacher_ckpt, capsys):
    """`distill --max-steps 0` (the demo plan's student): a student checkpoint of step 0 whose one-step
    sample is the teacher's, validated once; a negative count is one sentence."""
    from models.comosvc import load_official
    from models.train.config import load_config
    from models.train.dataset import item_tensors, read_list

    assert run_cli("distill", work, "--teacher", teacher_ckpt, "--max-steps", 0, "--device", "cpu", "-q", *TINY,
                   "--set", "env.expdir=zero") == 0
    folder = work / "zero" / "como"
    assert sorted(p.name for p in folder.glob("model_*.pt")) == ["model_0.pt"]
    teacher, student = load_official(teacher_ckpt), load_official(folder / "model_0.pt")
    assert student.kind == "student"
    cfg = load_config(work / "config.yaml")
    f = item_tensors(work, cfg, read_list(work, "val")[0])
    noise = torch.randn(f["mel"].shape, generator=torch.Generator().manual_seed(0))
    args = (f["units"], f["f0"], f["volume"], f["speaker"], noise)
    with torch.no_grad():
        assert torch.equal(student.model.infer_mel(*args, steps=1), teacher.model.infer_mel(*args, steps=1))
    assert len(losses(folder / "metrics.csv", "val/student_mel_l1")) == 1
    assert run_cli("distill", work, "--teacher", teacher_ckpt, "--max-steps", -1, "-q") == 2
    assert "--max-steps must be >= 0, got -1" in capsys.readouterr().err


def test_vocoder_loss_falls(work, vocoder_ckpts):
    from models.audio import mel_spectrogram
    from models.train.dataset import load_item, read_list
    from models.vocoder import load_vocoder

    first, last = (load_vocoder(p) for p in vocoder_ckpts)
    errors = {0: [], 1: []}
    for name in read_list(work, "train"):
        item = load_item(work, name, ("mel", "f0"))
        mel, f0 = torch.from_numpy(item["mel"])[None], torch.from_numpy(item["f0"])[None].float()
        with torch.no_grad():
            for i, voc in enumerate((first, last)):
                errors[i].append(float((mel_spectrogram(voc(mel, f0)) - mel).abs().mean()))
    # on whole items: the 2 x 16-frame training crops make the logged loss too noisy to compare
    assert np.mean(errors[1]) < 0.95 * np.mean(errors[0])
    assert len(losses(vocoder_ckpts[1].parent / "metrics.csv", "train/loss_mel")) == 120


def test_vocoder_learns_from_an_acoustic_models_own_mels(work, teacher_ckpt, capsys):
    """--mels-from: the one-step mels of that acoustic model for every item are made once (the recorded
    mel's length, not its values) and are what the vocoder is fed; a missing checkpoint is one sentence."""
    from models.comosvc import load_official
    from models.train.config import load_config
    from models.train.dataset import VocoderItems, item_tensors, read_list, vocoder_item
    from models.train.generated_mels import _item_seed, one_step_mel

    common = ["--device", "cpu", "-q", *TINY, "--set", "vocoder_model.type=hn", "--set", "train.interval_val=2",
              "--set", "env.expdir=fromacoustic"]
    assert run_cli("vocoder", work, "--max-steps", 2, "--mels-from", teacher_ckpt, *common) == 0
    mel_dir = work / "fromacoustic" / "vocoder" / "generated_mels"
    for name in read_list(work, "train") + read_list(work, "val"):
        made, recorded = vocoder_item(work, name, mel_dir)["mel"], vocoder_item(work, name)["mel"]
        assert made.shape == recorded.shape and np.abs(made - recorded).mean() > 0.05
    name = read_list(work, "train")[0]
    loaded, cfg = load_official(teacher_ckpt), load_config(work / "config.yaml")
    with torch.no_grad():
        expected = one_step_mel(loaded.model.eval(), item_tensors(work, cfg, name), _item_seed(name))[0].numpy()
    made = vocoder_item(work, name, mel_dir)["mel"]
    np.testing.assert_allclose(made, expected, atol=1e-5)
    fed = VocoderItems(work, [name], cfg["spk"], 0, len(made), mel_dir)[(0, 0)]["mel"].numpy()
    np.testing.assert_array_equal(fed, made)
    assert losses(work / "fromacoustic" / "vocoder" / "metrics.csv", "val/vocoder_mel_l1")
    assert run_cli("vocoder", work, "--max-steps", 3, "--mels-from", work / "nowhere.pt", *common) == 2
    assert "--mels-from" in capsys.readouterr().err


def test_teacher_validation_renders_audio_with_a_trained_vocoder(work, vocoder_ckpts):
    """The build trains the vocoder before the teacher, so the teacher's validation has one to render
    its samples with (it once failed there: the vocoder's output still required grad)."""
    assert run_cli("teacher", work, "--max-steps", 1, "--device", "cpu", "-q", *TINY, "--set", "env.expdir=withvoc",
                   "--set", "train.interval_val=1", "--set", f"vocoder.ckpt={vocoder_ckpts[1]}") == 0
    assert list((work / "withvoc" / "teacher" / "val" / "step_1").glob("*.wav"))


def test_vocoder_adversarial_phase_with_every_discriminator(work):
    assert run_cli("vocoder", work, "--max-steps", 2, "--device", "cpu", "-q", *TINY, "--set", "env.expdir=gan",
                   "--set", "vocoder_train.adv_start_step=0", "--set", "vocoder_train.discriminators=[mpd,mrd,msd]",
                   "--set", "train.interval_val=2") == 0
    folder = work / "gan" / "vocoder"
    disc = losses(folder / "metrics.csv", "train/loss_disc")
    assert len(disc) == 2 and all(np.isfinite(disc))
    assert len(losses(folder / "metrics.csv", "train/loss_fm")) == 2
    assert list((folder / "val" / "step_2").glob("*.wav")) and list((folder / "val" / "step_2").glob("*.png"))
    # validation says whether the output's pitch follows the f0 it was given (a vocoder can learn to
    # ignore its harmonic source and keep a good mel L1)
    for name in ("val/vocoder_mel_l1", "val/vocoder_f0_corr", "val/vocoder_f0_rmse_cents"):
        assert len(losses(folder / "metrics.csv", name)) == 1, name


def test_init_from_adds_new_speakers_to_a_base(tmp_path, teacher_ckpt, ppg):
    from models.checkpoints import safe_load
    from models.comosvc import load_official

    data = write_speakers(tmp_path / "data", {"tenor": (165.0, 0.7), "alto": (220.0, 0.6)}, files=2)
    work = tmp_path / "work"
    assert run_cli("prepare", data, work, "--content", ppg, "--size", "tiny", "-q") == 0
    assert run_cli("teacher", work, "--init-from", teacher_ckpt, "--max-steps", 2, "--device", "cpu", "-q") == 0
    tuned = load_official(work / "logs" / "teacher" / "model_2.pt")
    assert tuned.speakers == {"alto": 0, "bass": 1, "tenor": 2}
    base = safe_load(teacher_ckpt)["model"]["spk_embed.weight"]
    fresh = load_official(work / "logs" / "teacher" / "model_2.pt").model.spk_embed.weight.detach()
    assert fresh.shape == (3, base.shape[1])
    assert torch.equal(fresh[1], base[1])  # bass has no data here: its row is untouched


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(work, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "models.train", "teacher", str(work),
           "--max-steps", "2", "--device", "cpu", "-q", "--set", f"env.expdir={tmp_path}/ddp"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr[-2000:]
    folder = tmp_path / "ddp" / "teacher"
    assert sorted(p.name for p in folder.glob("model_*.pt")) == ["model_2.pt"]
    assert (folder / "resume.pt").is_file()


# ------------------------------------------------------------------------------------------ the chain

def test_trained_checkpoints_load_convert_and_export(work, data_dir, student_ckpt, vocoder_ckpts, ppg, tmp_path):
    from exporters.onnx_export import export_pack
    from models import infer
    from models.comosvc import load_official

    loaded = load_official(student_ckpt)
    assert loaded.kind == "student" and loaded.speakers == {"alto": 0, "bass": 1} and loaded.global_step == 150
    out = tmp_path / "out.wav"
    assert infer.main([str(data_dir / "bass" / "song0.wav"), str(out), "--ckpt", str(student_ckpt),
                       "--vocoder", str(vocoder_ckpts[1]), "--content", str(ppg), "--speaker", "alto", "-q"]) == 0
    wav, sr = sf.read(out)
    assert sr == SR and len(wav) > SR and np.isfinite(wav).all()
    pack, manifest, _ = export_pack(student_ckpt, vocoder=str(vocoder_ckpts[1]), content=str(ppg),
                                    out=tmp_path / "pack", quiet=True)
    assert {"decoder.onnx", "vocoder.onnx", "content.onnx", "voice.json"} <= {p.name for p in pack.iterdir()}


@pytest.mark.slow
def test_evaluate_writes_report_with_every_metric(work, student_ckpt, vocoder_ckpts, tmp_path):
    assert run_cli("evaluate", work, "--ckpt", student_ckpt, "--vocoder", vocoder_ckpts[1], "--steps", 4,
                   "--out", tmp_path / "eval", "--device", "cpu", "-q") == 0
    report = (tmp_path / "eval" / "report.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| teacher") or line.startswith("| student")]
    assert len(rows) == 2
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        float(cells[1]), float(cells[4]), float(cells[5])  # mel L1, speaker similarity, RTF are numbers
    assert (tmp_path / "eval" / "report.png").stat().st_size > 10_000
    assert len(list((tmp_path / "eval" / "audio").glob("*.wav"))) == 8


@pytest.mark.slow
def test_sigterm_checkpoints_the_current_step(work, tmp_path):
    import signal
    import time

    from models.checkpoints import safe_load

    folder = tmp_path / "term" / "teacher"
    cmd = [sys.executable, "-m", "models.train", "teacher", str(work), "--device", "cpu", "-q", *TINY,
           "--set", f"env.expdir={tmp_path}/term"]
    proc = subprocess.Popen(cmd, cwd=Path(__file__).parents[1], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not (
            (folder / "metrics.csv").exists() and len(losses(folder / "metrics.csv")) >= 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    step = safe_load(folder / "resume.pt")["step"]
    assert step >= 3 and (folder / f"model_{step}.pt").is_file() and "interrupted" in err
