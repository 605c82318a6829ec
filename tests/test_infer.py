"""models.infer: the reference offline converter, end to end on tiny random official-layout checkpoints."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from models.audio import rms_volume
from models.content import align_units, load_content_encoder
from models.comosvc import load_official
from models.infer import (Converter, InputError, Slice, load_audio, main, output_length, plan_slices,
                          slice_weights)
from models.pitch import DioPitch, shift_f0
from models.vocoder import load_vocoder
from tests.fixtures.contentvec import write_contentvec
from tests.fixtures.official import write_official_checkpoint
from tests.fixtures.vocoder import write_vocoder

SR = 24000
REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tone(seconds: float, sr: int = SR, channels: int = 1) -> np.ndarray:
    """A vibrato tone with an amplitude envelope (voiced, so DIO finds f0): [N] or [N, channels]."""
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * (200 * t + 3 * np.sin(2 * np.pi * 2 * t))) * (0.6 + 0.4 * np.sin(2 * np.pi * 1.5 * t))
    x = x.astype(np.float32)
    if channels == 1:
        return x
    return np.stack([x * (0.5 + 0.5 * c) for c in range(channels)], axis=1)


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("infer")
    student, _ = write_official_checkpoint(root / "como", kind="student", size="tiny", n_spk=2)
    teacher, _ = write_official_checkpoint(root / "teacher", kind="teacher", size="tiny", n_spk=2, seed=1)
    paths = {
        "student": student, "teacher": teacher,
        "content": write_contentvec(root / "contentvec", "fairseq", "tiny"),
        "vocoder": write_vocoder(root / "vocoder", "m4singer", "tiny"),
        "in": root / "in.wav", "root": root,
    }
    sf.write(paths["in"], tone(1.0), SR, subtype="FLOAT")
    return paths


def cli(assets: dict[str, Path], out: Path, *extra: str, ckpt: str = "student", inp: Path | None = None) -> list[str]:
    return [str(inp or assets["in"]), str(out), "--ckpt", str(assets[ckpt]), "--vocoder", str(assets["vocoder"]),
            "--content", str(assets["content"]), *extra]


def run_ok(assets, tmp_path: Path, name: str, *extra: str, **kw) -> np.ndarray:
    out = tmp_path / name
    assert main(cli(assets, out, "-q", *extra, **kw)) == 0
    info = sf.info(str(out))
    assert info.samplerate == SR and info.channels == 1 and info.subtype == "FLOAT"
    audio, _ = sf.read(str(out), dtype="float32")
    assert np.all(np.isfinite(audio)) and np.abs(audio).max() > 1e-3
    return audio


# ---- end to end ----------------------------------------------------------------------------------------

def test_student_one_step(assets, tmp_path: Path, capsys) -> None:
    out = tmp_path / "s.wav"
    assert main(cli(assets, out)) == 0
    err = capsys.readouterr().err
    assert "consistency with 1 step" in err and "wrote" in err and "Traceback" not in err
    audio, sr = sf.read(str(out), dtype="float32")
    assert sr == SR and len(audio) == SR // 128 * 128 == output_length(SR)


def test_teacher_checkpoint_uses_euler_sampler(assets, tmp_path: Path, capsys) -> None:
    audio = run_ok(assets, tmp_path, "t.wav", "--steps", "3", ckpt="teacher")
    assert len(audio) == output_length(SR)
    assert main(cli(assets, tmp_path / "t2.wav", "--steps", "3", ckpt="teacher")) == 0
    assert "teacher Euler with 3 step(s)" in capsys.readouterr().err


def test_teacher_flag_on_student_changes_sampler(assets, tmp_path: Path) -> None:
    student = run_ok(assets, tmp_path, "a.wav", "--steps", "3")
    euler = run_ok(assets, tmp_path, "b.wav", "--steps", "3", "--teacher")
    assert len(student) == len(euler) and not np.allclose(student, euler, atol=1e-4)


def test_matches_the_pipeline_step_by_step(assets, tmp_path: Path) -> None:
    """The single-slice path is the official pipeline: f0 shifted for conditioner and vocoder, units at
    16 kHz aligned 'nearest', noise drawn [1, 80, T] then transposed, re-noise, then vocoder noise."""
    audio = run_ok(assets, tmp_path, "ref.wav", "--steps", "2", "--key", "3", "--speaker", "1", "--seed", "7")
    wav = load_audio(assets["in"])
    t = len(wav) // 128
    f0 = torch.from_numpy(shift_f0(DioPitch()(wav), 3.0).astype(np.float32))[None]
    volume = rms_volume(torch.from_numpy(wav)[None])
    model = load_official(assets["student"]).model
    content = load_content_encoder(assets["content"])
    vocoder = load_vocoder(assets["vocoder"])
    gen = torch.Generator().manual_seed(7)
    with torch.inference_mode():
        wav16 = soxr.resample(wav, SR, 16000, quality="HQ")
        units = align_units(content(torch.from_numpy(wav16)[None]), t, "nearest")
        noise = torch.randn(1, 80, t, generator=gen).transpose(1, 2)
        renoise = torch.randn(1, 1, t, 80, generator=gen)
        mel = model.infer_mel(units, f0, volume, torch.tensor([1]), noise, steps=2, renoise=renoise)
        expected = vocoder(mel, f0, torch.zeros(1, 9), torch.randn(1, t * 128, 9, generator=gen))[0].numpy()
    np.testing.assert_allclose(audio, expected, rtol=0, atol=1e-6)


def test_key_changes_output(assets, tmp_path: Path) -> None:
    base = run_ok(assets, tmp_path, "k0.wav")
    up = run_ok(assets, tmp_path, "k5.wav", "--key", "5")
    assert len(base) == len(up) and np.abs(base - up).max() > 1e-3


def test_speaker_by_name_and_id(assets, tmp_path: Path) -> None:
    by_name = run_ok(assets, tmp_path, "n.wav", "--speaker", "singer1")
    by_id = run_ok(assets, tmp_path, "i.wav", "--speaker", "1")
    other = run_ok(assets, tmp_path, "o.wav", "--speaker", "singer0")
    np.testing.assert_array_equal(by_name, by_id)
    assert np.abs(by_name - other).max() > 1e-4


def test_resamples_44k1_stereo(assets, tmp_path: Path, capsys) -> None:
    src = tmp_path / "stereo.wav"
    sf.write(src, tone(1.3, 44100, channels=2), 44100, subtype="PCM_16")
    out = tmp_path / "r.wav"
    assert main(cli(assets, out, inp=src)) == 0
    err = capsys.readouterr().err
    assert "44100 Hz: resampled to 24000 Hz" in err and "2 channels: mixed to mono" in err
    n24 = len(soxr.resample(np.zeros(int(1.3 * 44100), np.float32), 44100, SR, quality="HQ"))
    audio, sr = sf.read(str(out), dtype="float32")
    assert sr == SR and len(audio) == n24 // 128 * 128


def test_deterministic_for_a_seed(assets, tmp_path: Path) -> None:
    a = run_ok(assets, tmp_path, "d1.wav", "--seed", "3", "--steps", "2")
    b = run_ok(assets, tmp_path, "d2.wav", "--seed", "3", "--steps", "2")
    c = run_ok(assets, tmp_path, "d3.wav", "--seed", "4", "--steps", "2")
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-4


def test_shortest_clips(assets, tmp_path: Path) -> None:
    """One frame (128 samples) is enough: the content encoder's 25 ms window is zero padded."""
    src = tmp_path / "short.wav"
    sf.write(src, tone(1.0)[:200], SR, subtype="FLOAT")
    audio = run_ok(assets, tmp_path, "short_out.wav", inp=src)
    assert len(audio) == 128


def test_loud_input_is_not_normalised(assets, tmp_path: Path, capsys) -> None:
    src = write_raw(tmp_path / "loud.wav", tone(0.3) * 5.0)  # float WAV peaking at 1.5
    assert main(cli(assets, tmp_path / "loud_out.wav", inp=src)) == 0
    assert "peaks at 1.500 (> 1.0): passed through unchanged" in capsys.readouterr().err


def test_fcpe_pitch(assets, tmp_path: Path) -> None:
    dio = run_ok(assets, tmp_path, "dio.wav")
    fcpe = run_ok(assets, tmp_path, "fcpe.wav", "--pitch", "fcpe")
    assert len(fcpe) == len(dio)


# ---- long files --------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_frames, slice_frames", [(1000, 200), (937, 281), (500, 500), (501, 500), (3, 188)])
def test_slice_plan_and_crossfade_weights_sum_to_one(n_frames: int, slice_frames: int) -> None:
    pieces = plan_slices(n_frames, slice_frames, context_frames=94, crossfade_frames=94)
    assert pieces[0].core_start == 0 and pieces[-1].core_stop == n_frames
    assert all(p.core_stop == q.core_start for p, q in zip(pieces, pieces[1:]))
    assert len(pieces) == -(-n_frames // slice_frames)
    total = np.zeros(n_frames * 128)
    half = 94 * 64
    for p in pieces:
        assert 0 <= p.start <= p.core_start < p.core_stop <= p.stop <= n_frames
        w = slice_weights(p, n_frames, half if len(pieces) > 1 else 0)
        assert w.shape == ((p.stop - p.start) * 128,) and w.min() >= 0
        # the slice covers its crossfade zones (weights reach 0 inside the computed range)
        if p.core_start > 0:
            assert w[0] == 0 and p.core_start * 128 - half - p.start * 128 >= 94 * 128
        total[p.start * 128:p.stop * 128] += w
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_plan_refuses_slices_shorter_than_the_crossfade() -> None:
    with pytest.raises(ValueError, match="too short"):
        plan_slices(1000, 100, 10, 94)
    assert plan_slices(10, 300, 94, 94) == [Slice(0, 10, 0, 10)]


def test_long_input_is_sliced_and_crossfaded(assets, tmp_path: Path, capsys) -> None:
    src = tmp_path / "long.wav"
    sf.write(src, tone(3.0), SR, subtype="FLOAT")
    whole = run_ok(assets, tmp_path, "whole.wav", inp=src)
    out = tmp_path / "sliced.wav"
    assert main(cli(assets, out, "--slice-seconds", "1", inp=src)) == 0
    assert "in 3 slices" in capsys.readouterr().err
    sliced, _ = sf.read(str(out), dtype="float32")
    assert len(sliced) == len(whole) == 3 * SR // 128 * 128
    # ContentVec attention sees only a slice, so the audio differs a little, but not the signal
    assert np.corrcoef(sliced, whole)[0, 1] > 0.95


# ---- bad input: clear message, exit code 2, no traceback ---------------------------------------------------

def expect_error(capsys, argv: list[str], *needles: str, code: int = 2) -> str:
    assert main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    return err


def write_raw(path: Path, data: np.ndarray, sr: int = SR) -> Path:
    sf.write(path, data, sr, subtype="FLOAT")
    return path


def test_missing_input(assets, tmp_path: Path, capsys) -> None:
    expect_error(capsys, cli(assets, tmp_path / "o.wav", inp=tmp_path / "nope.wav"), "input file not found", "nope.wav")


def test_corrupt_audio(assets, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEthis is not audio at all" * 3)
    expect_error(capsys, cli(assets, tmp_path / "o.wav", inp=bad), "cannot read audio", "bad.wav")
    text = tmp_path / "notes.wav"
    text.write_text("hello")
    expect_error(capsys, cli(assets, tmp_path / "o.wav", inp=text), "cannot read audio")


def test_empty_audio(assets, tmp_path: Path, capsys) -> None:
    src = write_raw(tmp_path / "empty.wav", np.zeros(0, np.float32))
    expect_error(capsys, cli(assets, tmp_path / "o.wav", inp=src), "contains no audio samples")


def test_shorter_than_one_frame(assets, tmp_path: Path, capsys) -> None:
    src = write_raw(tmp_path / "tiny.wav", tone(1.0)[:100])
    expect_error(capsys, cli(assets, tmp_path / "o.wav", inp=src), "too short", "100 samples", "128 samples")


def test_non_finite_samples(assets, tmp_path: Path, capsys) -> None:
    x = tone(0.5)
    x[[10, 500, 9000]] = np.nan
    x[42] = np.inf
    src = write_raw(tmp_path / "nan.wav", x)
    expect_error(capsys, cli(assets, tmp_path / "o.wav", inp=src), "4 non-finite sample", "NaN or inf")
    assert not (tmp_path / "o.wav").exists()


def test_unknown_speaker_lists_known(assets, tmp_path: Path, capsys) -> None:
    err = expect_error(capsys, cli(assets, tmp_path / "o.wav", "--speaker", "alice"),
                       "unknown speaker 'alice'", "singer0 (id 0)", "singer1 (id 1)")
    assert err.count("\n") == 2  # the model summary line + one error line
    expect_error(capsys, cli(assets, tmp_path / "o.wav", "--speaker", "7"), "out of range 0..1", "singer1")


def test_unsafe_checkpoint_is_refused(assets, tmp_path: Path, capsys) -> None:
    marker = tmp_path / "pwned.txt"
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "config.yaml").write_bytes((assets["student"].parent / "config.yaml").read_bytes())
    torch.save({"model": {}, "hook": os.system}, evil / "model_1.pt")
    argv = cli(assets, tmp_path / "o.wav")
    argv[argv.index("--ckpt") + 1] = str(evil / "model_1.pt")
    expect_error(capsys, argv, "refused to load", "Nothing from the file was executed", "system")
    assert not marker.exists()


def test_missing_and_mismatched_model_files(assets, tmp_path: Path, capsys) -> None:
    argv = cli(assets, tmp_path / "o.wav")
    argv[argv.index("--ckpt") + 1] = str(tmp_path / "missing.pt")
    expect_error(capsys, argv, "--ckpt: file not found")
    argv = cli(assets, tmp_path / "o.wav")
    argv[argv.index("--vocoder") + 1] = str(assets["student"])  # a CoMoSVC file is no vocoder
    expect_error(capsys, argv, "--vocoder:", "not a vocoder checkpoint")
    wide = write_contentvec(tmp_path / "wide", "fairseq", "full")  # 768-dim units vs the tiny model's 64
    argv = cli(assets, tmp_path / "o.wav")
    argv[argv.index("--content") + 1] = str(wide)
    expect_error(capsys, argv, "768-dim units", "expects 64")


def test_usage_errors(assets, tmp_path: Path, capsys) -> None:
    expect_error(capsys, cli(assets, tmp_path / "o.wav", "--steps", "0"), "--steps must be >= 1")
    expect_error(capsys, cli(assets, tmp_path / "o.wav", "--key", "nan"), "--key")
    expect_error(capsys, cli(assets, tmp_path / "no_dir" / "o.wav"), "output folder does not exist")
    expect_error(capsys, [str(assets["in"])], "required")  # argparse: exit 2, usage on stderr
    assert main(["--help"]) == 0
    help_text = capsys.readouterr().out
    assert "T*128 samples" in help_text and "floor(N / 128)" in help_text


def test_unexpected_failure_is_one_line_unless_verbose(assets, tmp_path: Path, capsys, monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("simulated internal failure\nsecond line")

    monkeypatch.setattr(Converter, "convert", boom)
    err = expect_error(capsys, cli(assets, tmp_path / "o.wav", "-q"), "unexpected failure: RuntimeError: "
                       "simulated internal failure", "--verbose", code=1)
    assert err.strip().count("\n") == 0
    assert main(cli(assets, tmp_path / "o.wav", "-q", "--verbose")) == 1
    assert "Traceback" in capsys.readouterr().err


def test_load_audio_errors_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a file"):
        load_audio(tmp_path)


# ---- module entry point ---------------------------------------------------------------------------------

def test_module_entry_point(assets, tmp_path: Path) -> None:
    out = tmp_path / "sub.wav"
    proc = subprocess.run([sys.executable, "-m", "models.infer", *cli(assets, out, "--seed", "1")],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stderr and proc.stdout == ""
    audio, sr = sf.read(str(out), dtype="float32")
    assert sr == SR and len(audio) == output_length(SR)


def test_single_speaker_model_needs_no_speaker(assets, tmp_path: Path) -> None:
    ckpt, _ = write_official_checkpoint(tmp_path / "solo", kind="student", size="tiny", n_spk=1,
                                        speakers={"alto": 0})
    conv = Converter.load(ckpt, assets["vocoder"], assets["content"])
    assert conv.resolve_speaker(None) is None and conv.resolve_speaker("alto") is None
    with pytest.raises(InputError, match="single-speaker model .*alto"):
        conv.resolve_speaker("bass")
    out = conv.convert(load_audio(assets["in"]), speaker=None)
    assert out.shape == (output_length(SR),) and np.all(np.isfinite(out))


# ---- the output: never the input, checked before work, written atomically ------------------------------

def test_output_that_is_the_input_is_refused(assets, tmp_path: Path, capsys) -> None:
    source = tmp_path / "take.wav"
    sf.write(source, tone(0.5), SR, subtype="FLOAT")
    before = source.read_bytes()
    link = tmp_path / "link.wav"
    link.symlink_to(source)
    for out in (source, link, tmp_path / "." / "take.wav"):
        expect_error(capsys, cli(assets, out, inp=source), "is the input file")
    assert source.read_bytes() == before


def test_output_checked_before_loading(assets, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(Converter, "load", lambda *a, **k: pytest.fail("models loaded before the output check"))
    expect_error(capsys, cli(assets, tmp_path / "o.xyz"), "cannot write audio as '.xyz'")
    expect_error(capsys, cli(assets, tmp_path), "is a folder")


def test_disk_full_leaves_the_old_output(assets, tmp_path: Path, capsys, monkeypatch) -> None:
    import errno
    import os

    out = tmp_path / "o.wav"
    out.write_bytes(b"earlier result")

    def full(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(sf.SoundFile, "write", full)
    expect_error(capsys, cli(assets, out, "-q"), "the disk is full")
    assert out.read_bytes() == b"earlier result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.wav"]


def test_a_progress_callback_that_returns_a_value_changes_nothing(assets) -> None:
    """tqdm's `update` returns True when it redraws (timing-dependent): counting decoder passes must not
    let that value replace the decoder's output (a forward hook's return value does)."""
    conv = Converter.load(assets["student"], assets["vocoder"], assets["content"])
    wav = load_audio(assets["in"])
    quiet = conv.convert(wav, speaker=0, seed=3)
    counted = []
    loud = conv.convert(wav, speaker=0, seed=3, progress=lambda n: counted.append(n) or 1.5)
    assert sum(counted) > 0
    np.testing.assert_array_equal(loud, quiet)
