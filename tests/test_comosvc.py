"""models.comosvc: official key layout, parameter counts, loading teacher/student checkpoints (spec §7, §9)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from models.audio import denormalize_mel
from models.checkpoints import CheckpointError
from models.comosvc import CheckpointMismatchError, CoMoSVC, OneStepDecoder, load_official
from models.conditioner import Conditioner
from models.edm import SIGMA_MAX
from models.wavenet import WaveNet
from tests.fixtures.official import PE_BUFFER_SUFFIXES, official_state_dict, write_official_checkpoint


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---- full-size layout (built on the meta device: no memory, no init time) ---------------------------

def test_full_size_denoiser_parameters() -> None:
    with torch.device("meta"):
        net = WaveNet(in_dims=80, n_layers=20, n_chans=512, n_hidden=256)
    assert n_params(net) == 54_945_360
    assert len(net.state_dict()) == 170


@pytest.mark.parametrize("n_spk, expected", [(1, 198_144), (2, 198_656), (5, 198_144 + 5 * 256)])
def test_full_size_conditioner_parameters(n_spk: int, expected: int) -> None:
    with torch.device("meta"):
        cond = Conditioner(units_dim=768, n_hidden=256, n_spk=n_spk)
    assert n_params(cond) == expected
    assert ("spk_embed.weight" in cond.state_dict()) == (n_spk > 1)
    assert "aug_shift_embed.bias" not in cond.state_dict()


@pytest.mark.parametrize("kind, n_keys, n_total", [("teacher", 237, 58_401_107), ("student", 577, 168_291_827)])
def test_full_size_official_layout(kind: str, n_keys: int, n_total: int) -> None:
    sd = official_state_dict(kind, "full", n_spk=2, device="meta")
    assert len(sd) == n_keys
    assert sum(v.numel() for k, v in sd.items() if not k.endswith(PE_BUFFER_SUFFIXES)) == n_total
    with torch.device("meta"):
        model = CoMoSVC(units_dim=768, n_spk=2)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    inference = {k: tuple(v.shape) for k, v in sd.items()
                 if not k.startswith(("decoder.pe.", "decoder.denoise_fn_ema.", "decoder.denoise_fn_pretrained."))}
    assert ours == inference


# ---- loading tiny official checkpoints -----------------------------------------------------------------

@pytest.mark.parametrize("kind", ["teacher", "student"])
@pytest.mark.parametrize("n_spk", [1, 3])
def test_load_official(tmp_path: Path, kind: str, n_spk: int) -> None:
    ckpt, _ = write_official_checkpoint(tmp_path / kind, kind=kind, n_spk=n_spk, global_step=4000,
                                        with_optimizer=True)
    loaded = load_official(ckpt)
    assert loaded.kind == kind and loaded.global_step == 4000
    assert loaded.speakers == {f"singer{i}": i for i in range(n_spk)}
    assert loaded.config["model"]["n_spk"] == n_spk
    expected_ignored = {"decoder.pe.": 59}
    if kind == "student":
        expected_ignored |= {"decoder.denoise_fn_ema.": 26, "decoder.denoise_fn_pretrained.": 26}
    assert loaded.ignored == expected_ignored
    # every inference tensor came from the file, and the online denoise_fn (not the EMA) is used
    source = official_state_dict(kind, "tiny", n_spk)
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, source[key]), key
    assert not loaded.model.training


def test_explicit_config_path(tmp_path: Path) -> None:
    ckpt, cfg = write_official_checkpoint(tmp_path / "a", kind="teacher", n_spk=2)
    moved = tmp_path / "elsewhere.yaml"
    cfg.rename(moved)
    with pytest.raises(CheckpointError, match="config not found"):
        load_official(ckpt)
    assert load_official(ckpt, moved).kind == "teacher"


def _edit_config(cfg: Path, section: str, key: str, value: object) -> None:
    data = yaml.safe_load(cfg.read_text())
    data[section][key] = value
    cfg.write_text(yaml.safe_dump(data))


def test_shape_mismatch_is_explained(tmp_path: Path) -> None:
    ckpt, cfg = write_official_checkpoint(tmp_path / "s", kind="student", n_spk=2)
    _edit_config(cfg, "model", "n_spk", 4)
    with pytest.raises(CheckpointMismatchError, match=r"spk_embed\.weight: checkpoint \[2, 8\] vs model \[4, 8\]"):
        load_official(ckpt)
    _edit_config(cfg, "model", "n_spk", 2)
    _edit_config(cfg, "model", "n_chans", 32)
    with pytest.raises(CheckpointMismatchError) as err:
        load_official(ckpt)
    assert "decoder.denoise_fn.input_projection.weight: checkpoint [16, 80, 1] vs model [32, 80, 1]" in str(err.value)


def test_missing_and_unexpected_keys_are_named(tmp_path: Path) -> None:
    ckpt, _ = write_official_checkpoint(tmp_path / "t", kind="teacher", n_spk=2)
    data = torch.load(ckpt, weights_only=True)
    del data["model"]["decoder.denoise_fn.skip_projection.bias"]
    data["model"]["decoder.mystery.weight"] = torch.zeros(3)
    torch.save(data, ckpt)
    with pytest.raises(CheckpointMismatchError) as err:
        load_official(ckpt)
    msg = str(err.value)
    assert "missing keys (1): decoder.denoise_fn.skip_projection.bias" in msg
    assert "unexpected keys (1): decoder.mystery.weight" in msg


def test_single_speaker_config_with_speaker_table(tmp_path: Path) -> None:
    ckpt, cfg = write_official_checkpoint(tmp_path / "t", kind="teacher", n_spk=2)
    _edit_config(cfg, "model", "n_spk", 1)
    with pytest.raises(CheckpointMismatchError, match=r"unexpected keys \(1\): spk_embed\.weight"):
        load_official(ckpt)


def test_not_an_official_checkpoint(tmp_path: Path) -> None:
    ckpt, _ = write_official_checkpoint(tmp_path / "t", kind="teacher", n_spk=1)
    torch.save({"state_dict": {}}, ckpt)
    with pytest.raises(CheckpointError, match="'model' state dict"):
        load_official(ckpt)


# ---- inference ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def student(tmp_path_factory: pytest.TempPathFactory) -> CoMoSVC:
    ckpt, _ = write_official_checkpoint(tmp_path_factory.mktemp("como"), kind="student", n_spk=3)
    return load_official(ckpt).model


def _inputs(t: int = 25, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(1, t, 64, generator=g), 200 + 100 * torch.rand(1, t, generator=g),
            0.1 * torch.rand(1, t, generator=g), torch.randn(1, t, 80, generator=g))


def test_conditioner_formula(student: CoMoSVC) -> None:
    units, f0, vol, _ = _inputs()
    spk = torch.tensor([2])
    m = student
    manual = (units @ m.unit_embed.weight.T + m.unit_embed.bias
              + torch.log(1 + f0 / 700).unsqueeze(-1) * m.f0_embed.weight[:, 0] + m.f0_embed.bias
              + vol.unsqueeze(-1) * m.volume_embed.weight[:, 0] + m.volume_embed.bias
              + m.spk_embed.weight[2])
    with torch.no_grad():
        torch.testing.assert_close(m.condition(units, f0, vol, spk), manual)
        shifted = m.condition(units, f0, vol, spk, aug_shift=torch.tensor([5.0]))
    torch.testing.assert_close(shifted - manual, m.aug_shift_embed.weight[:, 0].expand_as(manual).detach())


def test_one_step_is_denoiser_at_sigma_max(student: CoMoSVC) -> None:
    units, f0, vol, noise = _inputs()
    spk = torch.tensor([1])
    with torch.no_grad():
        mel = student(units, f0, vol, spk, noise)
        cond = student.condition(units, f0, vol, spk)
        manual = denormalize_mel(student.decoder(noise * SIGMA_MAX, torch.tensor([SIGMA_MAX]), cond))
        again = student(units, f0, vol, spk, noise)
        other_spk = student(units, f0, vol, torch.tensor([0]), noise)
        wrapped = OneStepDecoder(student)(units, f0, vol, spk, noise)
    assert mel.shape == (1, 25, 80) and torch.isfinite(mel).all()
    torch.testing.assert_close(mel, manual)
    assert torch.equal(wrapped, mel)
    assert torch.equal(mel, again)
    assert not torch.allclose(mel, other_spk)


def test_teacher_and_multistep_paths(student: CoMoSVC) -> None:
    units, f0, vol, noise = _inputs(t=12)
    spk = torch.tensor([0])
    with torch.no_grad():
        teacher = student.infer_mel(units, f0, vol, spk, noise, steps=4, teacher=True)
        multi = student.infer_mel(units, f0, vol, spk, noise, steps=2, renoise=torch.zeros(1, 1, 12, 80))
    assert teacher.shape == multi.shape == (1, 12, 80)
    assert torch.isfinite(teacher).all() and torch.isfinite(multi).all()


def test_input_validation(student: CoMoSVC) -> None:
    units, f0, vol, noise = _inputs()
    with pytest.raises(ValueError, match="noise"):
        student(units, f0, vol, torch.tensor([0]), noise[:, :-1])
    with pytest.raises(ValueError, match="speaker"):
        student(units, f0, vol, None, noise)
    with pytest.raises(ValueError, match="units"):
        student(units[..., :10], f0, vol, torch.tensor([0]), noise)
