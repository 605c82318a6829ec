"""The acoustic model's own one-step mels of the prepared items, for fine-tuning a vocoder on them.

A vocoder trained on recorded mels meets smoother, less detailed mels in a voice pack (the one-step
student's); fine-tuned on the mels the acoustic model makes from each item's own features (aligned
with the item's audio, so the spectral losses still apply), it learns to render those. Measured on
the demo voices: DistillMOS 1.57 -> 1.81 and WER 0.56 -> 0.47 after 600 steps (docs/demo-voice.md).

`<folder>/<speaker>/<item>.npy` holds the log10 mel [T, 80] of item `<speaker>/<item>`, the same T as
its recorded mel; `<folder>/source.json` names the checkpoint (and its SHA-256) they came from, so a
different checkpoint rewrites them.
"""
from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.voicepack import sha256_file
from models.train.dataset import item_tensors, read_list
from models.train.errors import TrainError

SOURCE_FILE = "source.json"


def _item_seed(name: str) -> int:
    """The noise of an item's one-step sample: fixed by its name, whatever the order or the process."""
    return zlib.crc32(name.encode("utf-8"))


def one_step_mel(model, feats: dict[str, torch.Tensor], seed: int) -> torch.Tensor:
    """The one-step (consistency) sample of `model` for a batch of one -> log10 mel [1, T, 80]."""
    from models.audio import denormalize_mel
    from models.edm import consistency_sample

    noise = torch.randn(feats["mel"].shape, generator=torch.Generator().manual_seed(seed)).to(feats["mel"].device)
    cond = model.condition(feats["units"], feats["f0"], feats["volume"], feats["speaker"])
    return denormalize_mel(consistency_sample(lambda x, sigma: model.decoder(x, sigma, cond), noise, 1))


@torch.no_grad()
def write_generated_mels(work_dir: Path, cfg: dict[str, Any], checkpoint: str | os.PathLike, folder: Path,
                         device: torch.device | str = "cpu") -> Path:
    """One-step mels of every train and val item of `work_dir` by the acoustic model in `checkpoint`
    (teacher or student, official layout) into `folder`, unless they are there from that checkpoint.
    TrainError with one sentence when the checkpoint cannot be used."""
    from models.checkpoints import CheckpointError
    from models.comosvc import load_official

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise TrainError(f"--mels-from {checkpoint}: no such file")
    source = {"checkpoint": str(checkpoint.resolve()), "sha256": sha256_file(checkpoint)}
    marker = folder / SOURCE_FILE
    if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) == source:
        return folder
    try:
        loaded = load_official(checkpoint)
    except (CheckpointError, OSError) as exc:
        raise TrainError(f"--mels-from {checkpoint}: {exc}") from None
    names = read_list(work_dir, "train") + read_list(work_dir, "val")
    missing = sorted({n.split("/")[0] for n in names} - set(loaded.speakers))
    if missing:
        raise TrainError(f"--mels-from {checkpoint}: the acoustic model has no speaker(s) {missing}")
    model = loaded.model.to(device).eval()
    cfg = {**cfg, "spk": dict(loaded.speakers)}   # the model's own speaker ids
    marker.unlink(missing_ok=True)
    for name in names:
        feats = item_tensors(work_dir, cfg, name, device)
        mel = one_step_mel(model, feats, _item_seed(name))[0].float().cpu().numpy()
        path = folder / f"{name}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, mel)
        os.replace(tmp, path)
    marker.write_text(json.dumps(source), encoding="utf-8")
    return folder

