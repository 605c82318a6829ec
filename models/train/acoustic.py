"""The acoustic-model stages: `teacher` (EDM, spec §5) and `distill` (consistency student, spec §6).

Sizes and speakers: a fresh teacher takes them from WORK_DIR/config.yaml; `--init-from CKPT` starts
from a base checkpoint (its sizes) and adds the speakers of WORK_DIR that the base lacks (new rows of
`spk_embed` start at the mean of the base's); `distill` takes everything from `--teacher`. A resumed
run takes them from the config.yaml written beside its checkpoints.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.audio import HOP
from models.checkpoints import CheckpointError, load_yaml
from models.comosvc import CoMoSVC, LoadedModel, load_official, model_from_config
from models.train.checkpoint_io import newest_acoustic, newest_vocoder, read_resume, write_acoustic
from models.train.dataset import AcousticItems, content_rate, item_tensors, read_list
from models.train.distill import DistillObjective
from models.train.errors import TrainError
from models.train.logger import TrainLogger
from models.train.loop import Dist, Stage
from models.train.teacher import TeacherObjective


def load_checkpoint(path: str | Path, option: str) -> LoadedModel:
    try:
        return load_official(path)
    except (CheckpointError, OSError) as exc:
        raise TrainError(f"{option} {path}: {exc}") from None


def merge_speakers(base: dict[str, int], new: dict[str, int]) -> dict[str, int]:
    """Base speakers keep their ids; speakers only in `new` are appended in name order."""
    merged = dict(base)
    for name in sorted(new, key=lambda n: new[n]):
        merged.setdefault(name, len(merged))
    return merged


def adopt(cfg: dict[str, Any], base_cfg: dict[str, Any], speakers: dict[str, int]) -> dict[str, Any]:
    """cfg with the network sizes of `base_cfg` and the speaker map `speakers`."""
    cfg = copy.deepcopy(cfg)
    for key in ("n_layers", "n_chans", "n_hidden"):
        cfg["model"][key] = int(base_cfg["model"][key])
    units = int(base_cfg["data"]["encoder_out_channels"])
    if units != int(cfg["data"]["encoder_out_channels"]):
        raise TrainError(f"the base checkpoint was trained on {units}-dim content units but this WORK_DIR's "
                         f"were prepared with {cfg['data']['encoder_out_channels']}-dim ones; prepare with the "
                         "same content encoder as the base")
    cfg["spk"] = dict(speakers)
    cfg["model"]["n_spk"] = len(speakers)
    return cfg


def grow_speakers(model: CoMoSVC, base: LoadedModel) -> None:
    """Copy the base weights into `model` (same sizes, n_spk >= base's); new speaker rows = base mean."""
    state = {k: v for k, v in base.model.state_dict().items() if not k.startswith("spk_embed.")}
    model.load_state_dict(state, strict=False)
    if model.spk_embed is not None:
        with torch.no_grad():
            if base.model.spk_embed is not None:
                rows = base.model.spk_embed.weight
                model.spk_embed.weight[: len(rows)] = rows
                model.spk_embed.weight[len(rows):] = rows.mean(0)
            else:  # a single-speaker base has no table: every speaker starts from the same point
                model.spk_embed.weight.zero_()


class AcousticStage(Stage):
    """What teacher and distill share: data, config bookkeeping, validation mels and audio."""

    objective: TeacherObjective | DistillObjective

    def __init__(self, work_dir: Path, cfg: dict[str, Any], dist_: Dist) -> None:
        super().__init__(work_dir, cfg, dist_)
        self._vocoder = None

    @property
    def model(self) -> CoMoSVC:
        return self.objective.model

    def resumed_config(self) -> dict[str, Any] | None:
        """The config.yaml beside this stage's checkpoints when it will resume (sizes, speakers); from
        weights alone without one (committed weights copied in), WORK's."""
        if read_resume(self.folder) is None and (newest_acoustic(self.folder) is None
                                                 or not (self.folder / "config.yaml").is_file()):
            return None
        try:
            saved = load_yaml(self.folder / "config.yaml")
        except CheckpointError as exc:
            raise TrainError(f"cannot resume {self.name}: {exc}") from None
        return adopt(self.cfg, saved, saved.get("spk") or {})

    def dataset(self) -> tuple[AcousticItems, int]:
        frames = int(float(self.cfg["data"]["duration"]) * self.cfg["data"]["sampling_rate"]) // HOP
        names = read_list(self.work_dir, "train")
        self._check_speakers(names)
        ds = AcousticItems(self.work_dir, names, self.cfg["spk"], int(self.cfg["train"]["seed"]), frames,
                           float(self.cfg["train"]["aug_prob"]), self.cfg["data"]["unit_interpolate_mode"],
                           content_rate(self.cfg))
        return ds, int(self.cfg["train"]["batch_size"])

    def _check_speakers(self, names: list[str]) -> None:
        missing = sorted({n.split("/")[0] for n in names} - set(self.cfg["spk"]))
        if missing:
            raise TrainError(f"the model has no speaker(s) {missing} (its speakers: {sorted(self.cfg['spk'])}); "
                             "train a teacher that has them (teacher --init-from BASE adds speakers)")

    def set_optimiser(self, params, lr: float) -> None:
        """AdamW (train.weight_decay) + StepLR (train.decay_step, train.gamma), as the official training."""
        t = self.cfg["train"]
        self.optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=float(t["weight_decay"]))
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, int(t["decay_step"]), float(t["gamma"]))

    def optimise(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """Objective -> AdamW step -> StepLR step; the scalars to log."""
        with self.precision.autocast():
            loss = self.trainer(batch)
        self.precision.step(loss, self.optimizer)
        self.scheduler.step()
        return {"loss": float(loss.detach()), "lr": self.scheduler.get_last_lr()[0]}

    def state(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def newest_weights(self) -> Path | None:
        return newest_acoustic(self.folder)

    def restart_at(self, step: int) -> None:
        """The StepLR schedule where `step` has it (the optimiser's moments start from zero)."""
        t = self.cfg["train"]
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * float(t["gamma"]) ** (step // int(t["decay_step"]))
        self.scheduler.last_epoch = step
        self.scheduler._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def load_state(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    def write_weights(self, step: int) -> Path:
        return write_acoustic(self.folder, step, self.weights_state(), self.cfg)

    def weights_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    # ------------------------------------------------------------------ validation
    def val_features(self) -> list[tuple[str, dict[str, torch.Tensor]]]:
        names = read_list(self.work_dir, "val")[: int(self.cfg["train"]["val_items"])]
        return [(n, item_tensors(self.work_dir, self.cfg, n, self.dist.device)) for n in names]

    def vocoder(self):
        """The vocoder named by vocoder.ckpt in the config, else the newest one `vocoder` trained here,
        else None (then validation writes mel images only)."""
        trained = newest_vocoder(self.work_dir / self.cfg["env"]["expdir"] / "vocoder")
        path = self.cfg["vocoder"].get("ckpt") or trained
        if not path or not Path(path).is_file():
            return None
        if self._vocoder is None:
            from models.vocoder import load_vocoder

            self._vocoder = load_vocoder(path).to(self.dist.device)
        return self._vocoder

    @torch.no_grad()
    def sample(self, feats: dict[str, torch.Tensor], steps: int, teacher: bool,
               decoder: torch.nn.Module | None = None) -> torch.Tensor:
        """Mel [1,T,80] of the validation features: the Euler teacher sampler or the consistency sampler
        with `decoder` (default: the model's own), fixed noise."""
        from models.audio import denormalize_mel
        from models.edm import consistency_sample, teacher_sample

        decoder = decoder if decoder is not None else self.model.decoder
        noise = torch.randn(feats["mel"].shape, generator=torch.Generator().manual_seed(0)).to(self.dist.device)
        cond = self.model.condition(feats["units"], feats["f0"], feats["volume"], feats["speaker"])

        def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            return decoder(x, sigma, cond)

        x = teacher_sample(denoise, noise, steps) if teacher else consistency_sample(
            denoise, noise, steps, generator=torch.Generator().manual_seed(1))
        return denormalize_mel(x)

    @torch.no_grad()
    def log_item(self, logger: TrainLogger, step: int, name: str, feats: dict[str, torch.Tensor],
                 mels: dict[str, torch.Tensor]) -> None:
        logger.mel_image(step, f"mel/{name}", {k: v[0].cpu().numpy() for k, v in mels.items()})
        voc = self.vocoder()
        if voc is not None:
            from models.vocoder import seeded_source_noise

            for label, mel in mels.items():
                if label != "ground truth":
                    wav = voc(mel, feats["f0"], None, seeded_source_noise(voc, mel.shape[1], 0, mel.device))
                    wav = wav[0].cpu().numpy()
                    logger.audio(step, f"audio/{name}/{label}", wav)


class TeacherStage(AcousticStage):
    name = "teacher"

    def __init__(self, work_dir: Path, cfg: dict[str, Any], dist_: Dist, init_from: str | None = None) -> None:
        super().__init__(work_dir, cfg, dist_)
        base = None
        resumed = self.resumed_config()
        if resumed is not None:
            self.cfg = resumed
        elif init_from:
            base = load_checkpoint(init_from, "--init-from")
            self.cfg = adopt(cfg, base.config, merge_speakers(base.speakers, cfg["spk"]))
        model = model_from_config(self.cfg, use_pitch_aug=True)
        if base is not None:
            grow_speakers(model, base)
        self.objective = TeacherObjective(model).to(dist_.device)
        self.trainer = dist_.wrap(self.objective)
        self.set_optimiser(model.parameters(), float(self.cfg["train"]["lr"]))

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        self.objective.train()
        self.objective.prior = step < int(self.cfg["train"]["prior_steps"])  # step: those done before
        return {**self.optimise(batch), "prior": float(self.objective.prior)}

    def load_weights(self, path: Path) -> None:
        loaded = load_checkpoint(path, "resume")
        self.model.load_state_dict(loaded.model.state_dict())

    def validate(self, step: int, logger: TrainLogger) -> dict[str, float]:
        self.model.eval()
        steps = int(self.cfg["train"]["val_teacher_steps"])
        errors, one_step_errors = [], []
        for name, feats in self.val_features():
            mel = self.sample(feats, steps, teacher=True)
            one_step = self.sample(feats, 1, teacher=False)  # D(sigma_max eps): what the prior phase trains
            errors.append(float((mel - feats["mel"]).abs().mean()))
            one_step_errors.append(float((one_step - feats["mel"]).abs().mean()))
            self.log_item(logger, step, name, feats, {"ground truth": feats["mel"], f"teacher {steps} steps": mel,
                                                      "one step": one_step})
        if not errors:
            return {}
        return {"val/teacher_mel_l1": float(np.mean(errors)), "val/one_step_mel_l1": float(np.mean(one_step_errors))}


class DistillStage(AcousticStage):
    name = "como"  # the official student folder (logs/como)

    def __init__(self, work_dir: Path, cfg: dict[str, Any], dist_: Dist, teacher: str | None,
                 init_from: str | None = None) -> None:
        super().__init__(work_dir, cfg, dist_)
        resumed = self.resumed_config()
        if resumed is not None:
            self.cfg = resumed
            student = model_from_config(self.cfg, use_pitch_aug=True)
        else:
            if not teacher:
                raise TrainError("distill needs --teacher CKPT (a teacher model_<step>.pt written by "
                                 "`python -m models.train teacher`)")
            loaded = load_checkpoint(teacher, "--teacher")
            if loaded.kind != "teacher":
                raise TrainError(f"--teacher {teacher} is a student checkpoint; pass the teacher's model_<step>.pt")
            self.cfg = adopt(cfg, loaded.config, loaded.speakers)
            student = loaded.model.train()
        self.objective = DistillObjective(student, float(self.cfg["distill"]["loss_scale"])).to(dist_.device)
        if resumed is None and init_from:
            base = load_checkpoint(init_from, "--init-from")
            try:
                self.model.decoder.denoise_fn.load_state_dict(base.model.decoder.denoise_fn.state_dict())
            except RuntimeError:
                raise TrainError(f"--init-from {init_from}: its denoiser sizes differ from the teacher's") from None
            self.objective.ema.denoise_fn.load_state_dict(base.model.decoder.denoise_fn.state_dict())
        self.trainer = dist_.wrap(self.objective)
        self.set_optimiser(self.model.decoder.denoise_fn.parameters(), float(self.cfg["train"]["comolr"]))

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        self.objective.update_ema(float(self.cfg["distill"]["ema"]))  # spec §6: EMA first
        self.model.decoder.train()
        return self.optimise(batch)

    def weights_state(self) -> dict[str, torch.Tensor]:
        return {k: v.cpu() for k, v in self.objective.student_state().items()}

    def load_weights(self, path: Path) -> None:
        from models.checkpoints import safe_load

        self.objective.load_student_state(safe_load(path)["model"])

    def validate(self, step: int, logger: TrainLogger) -> dict[str, float]:
        self.model.eval()
        steps = int(self.cfg["train"]["val_teacher_steps"])
        to_gt, to_teacher = [], []
        for name, feats in self.val_features():
            student = self.sample(feats, 1, teacher=False)
            teacher = self.sample(feats, steps, teacher=True, decoder=self.objective.teacher)
            to_gt.append(float((student - feats["mel"]).abs().mean()))
            to_teacher.append(float((student - teacher).abs().mean()))
            self.log_item(logger, step, name, feats, {"ground truth": feats["mel"], f"teacher {steps} steps": teacher,
                                                      "student 1 step": student})
        if not to_gt:
            return {}
        return {"val/student_mel_l1": float(np.mean(to_gt)), "val/student_vs_teacher_l1": float(np.mean(to_teacher))}
