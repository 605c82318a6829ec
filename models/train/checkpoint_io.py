"""Checkpoint files of the training stages.

Weights go to the official layouts (they load wherever official ones do):
- acoustic (teacher / student): `logs/<stage>/model_<step>.pt` = {'global_step', 'model'} + `config.yaml`;
- vocoder: M4Singer `model_ckpt_steps_<step>.ckpt` = {'state_dict': {'model_gen'}, 'global_step'} +
  `config.yaml`, or openvpi `model_<step>` = {'generator'} + `config.json`; the harmonic-plus-noise
  vocoder (ours) `hn_vocoder_<step>.ckpt`, config inside (`models.hn_vocoder`).
The training state (optimisers, schedulers, discriminators, step) goes to `resume.pt` beside them,
which names the weights file it belongs to; both are written atomically, weights first, so a crash
at any moment leaves a consistent pair.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from models.checkpoints import CheckpointError, safe_load
from models.train.config import write_config
from models.train.errors import TrainError

RESUME_NAME = "resume.pt"


def save_atomic(obj: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path


def write_acoustic(folder: Path, step: int, state: dict[str, torch.Tensor], cfg: dict[str, Any]) -> Path:
    """model_<step>.pt in the official layout + the config.yaml it loads with."""
    write_config(cfg, folder / "config.yaml")
    return save_atomic({"global_step": step, "model": state}, folder / f"model_{step}.pt")


def write_vocoder(folder: Path, step: int, state: dict[str, torch.Tensor], layout: str,
                  config: dict[str, Any]) -> Path:
    """The generator state (weight-norm layout, see models.vocoder.to_checkpoint_state) + its config."""
    folder.mkdir(parents=True, exist_ok=True)
    if layout == "m4singer":
        write_config(config, folder / "config.yaml")
        return save_atomic({"state_dict": {"model_gen": state}, "global_step": step},
                           folder / f"model_ckpt_steps_{step}.ckpt")
    tmp = folder / "config.json.tmp"
    tmp.write_text(json.dumps(config, indent=1), encoding="utf-8")
    os.replace(tmp, folder / "config.json")
    return save_atomic({"generator": state}, folder / f"model_{step}")


def write_hn_vocoder(folder: Path, step: int, checkpoint: dict[str, Any]) -> Path:
    """hn_vocoder_<step>.ckpt: `HarmonicNoiseVocoder.checkpoint(step)` (its config inside)."""
    return save_atomic(checkpoint, folder / f"hn_vocoder_{step}.ckpt")


def write_resume(folder: Path, step: int, weights: Path, state: dict[str, Any]) -> Path:
    return save_atomic({"step": step, "weights": weights.name, "state": state}, folder / RESUME_NAME)


def read_resume(folder: Path) -> tuple[int, Path, dict[str, Any]] | None:
    """(step, weights path, stage state) of the latest checkpoint in `folder`, or None for a fresh start."""
    path = folder / RESUME_NAME
    if not path.is_file():
        return None
    try:
        obj = safe_load(path)
    except CheckpointError as exc:
        raise TrainError(f"cannot resume from {path}: {exc}; move it away to continue from the newest "
                         "weights file with a fresh optimiser, or move the stage's weights files away too to "
                         "start it afresh") from None
    if not isinstance(obj, dict) or not {"step", "weights", "state"} <= set(obj):
        raise TrainError(f"{path} is not a training resume file (expected step, weights and state)")
    weights = folder / str(obj["weights"])
    if not weights.is_file():
        raise TrainError(f"{path} belongs to {weights}, which is missing; restore it, or move {path.name} "
                         "away to continue from the newest weights file with a fresh optimiser")
    return int(obj["step"]), weights, obj["state"]


def weights_step(path: Path) -> int | None:
    """The step in a weights file's name (model_<step>.pt, model_ckpt_steps_<step>.ckpt, model_<step>,
    hn_vocoder_<step>.ckpt), or None."""
    tail = path.name.removesuffix(".ckpt").removesuffix(".pt").rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None


def newest_vocoder(folder: Path) -> Path | None:
    """The highest-step vocoder checkpoint `write_vocoder` left in `folder` (either layout), or None."""
    found = [p for p in list(folder.glob("model_ckpt_steps_*.ckpt")) + list(folder.glob("model_*"))
             + list(folder.glob("hn_vocoder_*.ckpt")) if weights_step(p) is not None and p.suffix in ("", ".ckpt")]
    return max(found, key=weights_step, default=None)


def newest_acoustic(folder: Path) -> Path | None:
    """The highest-step model_<step>.pt `write_acoustic` left in `folder`, or None."""
    found = [p for p in folder.glob("model_*.pt") if weights_step(p) is not None]
    return max(found, key=weights_step, default=None)
