"""The harmonic-plus-noise vocoder: its pitch is the f0 it is given, it streams exactly (chunks with
carried phase, the stateful module, the exported graphs and the engine), the vocoder stage trains it
into a checkpoint that loads and exports, and bad checkpoints give one clear sentence."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoints import CheckpointError
from models.hn_vocoder import HarmonicNoiseVocoder, StatefulHarmonicNoiseVocoder, load_hn_vocoder
from models.nsf_source import advance_phase
from models.vocoder import VocoderConfigError, load_vocoder
from tests.fixtures.vocoder import hn_config, write_hn_vocoder
from tests.test_stateful import convert_sung, stream_vocoder

HOP, SR = 128, 24000
CHUNKS = [1, 3, 7, 2, 11, 16, 1, 1, 5, 20]


def _rel(reference: torch.Tensor, value: torch.Tensor) -> float:
    return float((value - reference).norm() / reference.norm())


def _inputs(frames: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """mel [1,T,80], f0 [1,T] with an unvoiced stretch, noise [1,T·hop,9]."""
    g = torch.Generator().manual_seed(seed)
    mel = -4 + torch.randn(1, frames, 80, generator=g)
    f0 = 100 + 400 * torch.rand(1, frames, generator=g)
    f0[:, 10:15] = 0
    return mel, f0, torch.randn(1, frames * HOP, 9, generator=g)


def _random(right_context: int = 0) -> HarmonicNoiseVocoder:
    torch.manual_seed(0)
    vocoder = HarmonicNoiseVocoder(hn_config("tiny", right_context=right_context)).eval()
    for p in vocoder.parameters():
        p.data.normal_(0, 0.2)
    return vocoder


# ------------------------------------------------------------------------------------------- pitch
def _glide(frames: int, low: float, high: float) -> torch.Tensor:
    return torch.from_numpy(np.geomspace(low, high, frames).astype(np.float32))[None]


def test_output_pitch_is_the_f0_it_is_given() -> None:
    """YIN on the output of a randomly initialised vocoder follows a glide it was given; the same
    measure against the reversed glide is strongly negative, so ignoring f0 fails this test."""
    from models.pitch import f0_agreement, make_pitch_extractor

    torch.manual_seed(0)
    vocoder = HarmonicNoiseVocoder(hn_config("tiny")).eval()
    frames = 280
    rising, mel = _glide(frames, 120.0, 360.0), torch.full((1, frames, 80), -3.0)
    with torch.no_grad():
        wav = vocoder(mel, rising)[0].numpy()
    assert np.sqrt(np.mean(wav ** 2)) > 1e-4
    heard = make_pitch_extractor("yin").raw(wav)[0]
    voiced = np.ones(frames, np.float32)
    rmse, corr = f0_agreement(heard, rising[0].numpy(), voiced)
    assert corr > 0.9 and rmse < 100.0, (corr, rmse)
    assert f0_agreement(heard, rising[0].numpy()[::-1].copy(), voiced)[1] < -0.5


def test_unvoiced_frames_have_no_harmonics() -> None:
    vocoder = _random()
    mel = -4 + torch.zeros(1, 30, 80)
    with torch.no_grad():
        silent = vocoder(mel, torch.zeros(1, 30))     # no noise given, no harmonics: nothing
        voiced = vocoder(mel, torch.full((1, 30), 200.0))
    assert float(silent[:, HOP:].abs().max()) == 0.0 and float(voiced.abs().max()) > 0.0


# --------------------------------------------------------------------------------------- streaming
def test_windows_with_the_carried_phase_reproduce_the_whole_output() -> None:
    """As the engine's windowed path: each chunk run with its left receptive field and the phase at
    the window start gives the whole-sequence output; phase_out continues across calls."""
    vocoder = _random()
    left, right = vocoder.receptive_field
    assert right == 0 and left == 19
    t = sum(CHUNKS)
    mel, f0, noise = _inputs(t)
    with torch.no_grad():
        whole, whole_phase = vocoder.forward_stream(mel, f0, torch.zeros(1, 9), noise)
        pieces, start, carried = [], 0, torch.zeros(1, 9)
        for n in CHUNKS:
            lo = max(0, start - left)
            phase = advance_phase(torch.zeros(1, 9), f0[:, :lo], HOP, SR) if lo else torch.zeros(1, 9)
            wav, _ = vocoder.forward_stream(mel[:, lo:start + n], f0[:, lo:start + n], phase,
                                            noise[:, lo * HOP:(start + n) * HOP])
            pieces.append(wav[:, (start - lo) * HOP:])
            _, carried = vocoder.forward_stream(mel[:, start:start + n], f0[:, start:start + n], carried,
                                                noise[:, start * HOP:(start + n) * HOP])
            start += n
    assert _rel(whole, torch.cat(pieces, 1)) <= 1e-5
    assert float((carried[:, 0] - whole_phase[:, 0]).abs()) < 1e-5
    assert torch.equal(whole_phase[:, 1:], torch.zeros(1, 8))   # channels 1…8 pass through


@pytest.mark.parametrize("right_context", [0, 2])
def test_stateful_vocoder_streams_the_whole_vocoder(right_context: int) -> None:
    vocoder = _random(right_context)
    stateful = StatefulHarmonicNoiseVocoder(vocoder).eval()
    assert vocoder.receptive_field[1] == right_context and stateful.delay == right_context * HOP
    t = sum(CHUNKS)
    mel, f0, noise = _inputs(t)
    with torch.no_grad():
        whole = vocoder(mel, f0, None, noise)
    streamed, d = stream_vocoder(stateful, mel, f0, noise, CHUNKS), stateful.delay
    assert _rel(whole[:, : t * HOP - d], streamed[:, d:]) <= 1e-4


# ------------------------------------------------------------------------------------ export, engine
@pytest.fixture(scope="module")
def hn_pack(tmp_path_factory) -> Path:
    """The low-latency tiny pack with a harmonic-plus-noise vocoder and stateful graphs."""
    from tests.fixtures.packs import LOW_LATENCY, export_tiny_pack

    return export_tiny_pack(tmp_path_factory.mktemp("hn_pack"), stateful=True, vocoder="hn", **LOW_LATENCY)


def test_exported_graphs_keep_parity_and_the_manifest_describes_them(hn_pack: Path) -> None:
    manifest = json.loads((hn_pack / "voice.json").read_text())
    vocoder = manifest["networks"]["vocoder"]
    assert vocoder["extra"]["layout"] == "hn" and vocoder["receptive_field"] == [19, 0]
    assert [t["shape"] for t in vocoder["inputs"] if t["name"] in ("phase", "noise")] == [[1, 9], [1, "samples", 9]]
    for name in ("vocoder", "vocoder_stateful"):
        check = manifest["verification"][name]
        assert check["verified"] and max(check["max_rel_l2"].values()) <= 1e-4, name
    assert manifest["stateful"]["vocoder_stateful"]["delay_samples"] == 0


@pytest.fixture(scope="module")
def hn_whole(hn_pack: Path):
    return convert_sung(hn_pack, 1.2)


@pytest.mark.parametrize("block", [97, 960])
def test_engine_streams_the_pack_exactly(hn_whole, block: int) -> None:
    from engine.converter import convert_whole
    from tests.test_streaming import _snr

    conv, x, whole = hn_whole
    assert type(conv.core).__name__ == "StatefulCore" and conv.core.exact and conv.core.vocoder_delay == 0
    assert np.sqrt(np.mean(whole ** 2)) > 1e-3
    conv.reset()
    assert _snr(whole, convert_whole(conv, x, block=block)) >= 60.0


def test_windowed_core_runs_the_pack_as_the_stateful_core(hn_pack: Path, hn_whole) -> None:
    """vocoder.onnx through the engine's windowed path (phase counted back per window, position-locked
    noise) at its exact lookahead gives the stateful core's audio."""
    from engine.converter import Converter, convert_whole
    from engine.settings import Settings
    from engine.voicepack import load_manifest
    from engine.voices import open_neural_core
    from tests.test_streaming import _snr

    conv, x, whole = hn_whole
    manifest = load_manifest(hn_pack)
    probe = open_neural_core(manifest, Settings(), stateful=False)
    settings = Settings(gate_db=-120, crossfade_ms=0, lookahead_ms=probe.exact_lookahead_frames * 128 / 24)
    windowed = Converter(lambda s: open_neural_core(manifest, s, stateful=False), settings, 48000)
    assert _snr(convert_whole(windowed, x), whole) >= 60.0


# ---------------------------------------------------------------------------------------- training
def test_vocoder_stage_trains_a_checkpoint_that_loads_and_exports(hn_pack: Path, tmp_path: Path) -> None:
    from exporters.onnx_export import export_pack
    from models.train.__main__ import main
    from models.train.checkpoint_io import newest_vocoder
    from models.train.logger import read_metrics
    from tests.test_train import write_speakers

    src = hn_pack.parent / "src"
    data = write_speakers(tmp_path / "data", {"alto": (220.0, 0.6)}, files=2)
    work = tmp_path / "work"
    tiny = ["--device", "cpu", "-q", "--set", "vocoder_model.type=hn", "--set", "train.interval_val=3",
            "--set", "train.interval_log=1", "--set", "vocoder_model.hn.noise_taps=64"]
    assert main(["prepare", str(data), str(work), "--content", str(src / "ppg" / "ppg.pt"), "--size", "tiny",
                 "--f0", "yin", "-q"]) == 0
    assert main(["vocoder", str(work), "--max-steps", "3", *tiny]) == 0
    folder = work / "logs" / "vocoder"
    ckpt = newest_vocoder(folder)
    assert ckpt == folder / "hn_vocoder_3.ckpt"
    assert not list(folder.glob("model_*"))
    metrics = read_metrics(folder / "metrics.csv")
    for name in ("val/vocoder_mel_l1", "val/vocoder_f0_corr", "val/vocoder_f0_rmse_cents", "train/loss_mel"):
        assert any(r["name"] == name for r in metrics), name
    assert not any(r["name"] == "train/loss_disc" for r in metrics)
    vocoder = load_vocoder(ckpt)
    assert isinstance(vocoder, HarmonicNoiseVocoder) and vocoder.config.channels == 16
    assert main(["vocoder", str(work), "--max-steps", "4", *tiny]) == 0      # resumes
    assert newest_vocoder(folder) == folder / "hn_vocoder_4.ckpt"
    pack, manifest, _ = export_pack(src / "como" / next((src / "como").glob("*.pt")).name, vocoder=str(ckpt),
                                    content=str(src / "ppg" / "ppg.pt"), out=tmp_path / "pack", quiet=True,
                                    stateful=False)
    assert manifest.networks["vocoder"].extra["layout"] == "hn"


def test_config_refuses_an_unknown_vocoder_type(tmp_path: Path, capsys) -> None:
    from models.train.config import TrainError, default_config, validate

    cfg = default_config("tiny")
    assert cfg["vocoder_model"]["type"] == "nsf-hifigan"     # the official path keeps NSF-HiFiGAN
    cfg["vocoder_model"]["type"] = "wavenet"
    with pytest.raises(TrainError, match="vocoder_model.type must be one of nsf-hifigan, hn"):
        validate(cfg)


def test_older_configs_get_the_keys_added_since() -> None:
    from models.train.config import default_config, with_added_keys

    old = default_config("demo")
    del old["vocoder_model"]["type"], old["vocoder_model"]["hn"]
    upgraded = with_added_keys(old)
    assert upgraded["vocoder_model"]["type"] == "nsf-hifigan" and upgraded["vocoder_model"]["hn"]["sines"] == 96


# ---------------------------------------------------------------------------------- bad checkpoints
def test_bad_checkpoints_give_one_clear_sentence(tmp_path: Path) -> None:
    good = write_hn_vocoder(tmp_path / "good")
    assert isinstance(load_hn_vocoder(good), HarmonicNoiseVocoder)

    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError):
        load_vocoder(truncated)

    checkpoint = torch.load(good, weights_only=True)
    checkpoint["hn_vocoder"]["state"]["head.weight"] = torch.zeros(3, 16, 1)
    torch.save(checkpoint, tmp_path / "shape.ckpt")
    with pytest.raises(VocoderConfigError, match=r"head\.weight \[3, 16, 1\]"):
        load_vocoder(tmp_path / "shape.ckpt")

    checkpoint = torch.load(good, weights_only=True)
    checkpoint["hn_vocoder"]["config"]["harmonics"] = 12
    torch.save(checkpoint, tmp_path / "key.ckpt")
    with pytest.raises(VocoderConfigError, match="unknown harmonic-plus-noise vocoder setting"):
        load_vocoder(tmp_path / "key.ckpt")

    torch.save({"hn_vocoder": {"config": {}}}, tmp_path / "partial.ckpt")
    with pytest.raises(CheckpointError, match="needs"):
        load_vocoder(tmp_path / "partial.ckpt")

    with pytest.raises(VocoderConfigError, match="carries its own config"):
        load_vocoder(good, tmp_path / "config.yaml")

    checkpoint = torch.load(good, weights_only=True)
    checkpoint["hn_vocoder"]["config"]["sample_rate"] = 44100
    torch.save(checkpoint, tmp_path / "rate.ckpt")
    with pytest.raises(VocoderConfigError, match="does not fit the acoustic model's audio"):
        load_vocoder(tmp_path / "rate.ckpt")
