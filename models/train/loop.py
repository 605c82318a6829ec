"""The training loop every stage shares: torchrun/DDP set-up, seeded steps, logging, checkpoints, resume.

Randomness is a function of (train.seed, step, rank): each step reseeds torch, and the batches come
from `StepBatches`. So a run resumed from the checkpoint of step s repeats exactly the steps an
uninterrupted run would have taken (same losses on CPU; on CUDA up to non-deterministic kernels).
"""
from __future__ import annotations

import abc
import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset

from models.train.checkpoint_io import RESUME_NAME, read_resume, weights_step, write_resume
from models.train.dataset import StepBatches, collate
from models.train.errors import TrainError
from models.train.logger import TrainLogger


@dataclass
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def wrap(self, module: nn.Module) -> nn.Module:
        """DistributedDataParallel around `module` when several processes train, else `module`."""
        if self.world == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)


def init_dist(device: str | None) -> Dist:
    """Read torchrun's RANK/WORLD_SIZE/LOCAL_RANK; start the process group (NCCL on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    want = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise TrainError(f"--device {want}: CUDA is not available on this machine")
    dev = torch.device(f"cuda:{local}") if want == "cuda" and world > 1 else torch.device(want)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank, world, dev)


class Precision:
    """Mixed precision on CUDA only (bf16 where supported, else fp16 with loss scaling); fp32 on CPU."""

    def __init__(self, device: torch.device, enabled: bool) -> None:
        self.enabled = enabled and device.type == "cuda"
        self.dtype = torch.bfloat16 if self.enabled and torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.enabled and self.dtype == torch.float16)

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.dtype)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()


class Stage(abc.ABC):
    """One training command. Subclasses build their networks in __init__ (on `dist.device`)."""

    name: str = ""

    def __init__(self, work_dir: Path, cfg: dict[str, Any], dist_: Dist) -> None:
        self.work_dir, self.cfg, self.dist = work_dir, cfg, dist_
        self.folder = work_dir / cfg["env"]["expdir"] / self.name
        self.precision = Precision(dist_.device, bool(cfg["train"]["amp"]))
        torch.manual_seed(int(cfg["train"]["seed"]))  # the initial weights are part of the run's seed

    @abc.abstractmethod
    def dataset(self) -> tuple[Dataset, int]:
        """(training dataset keyed by (index, epoch), batch size)."""

    @abc.abstractmethod
    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        """One optimisation step on `batch` (already on the device) -> scalars to log."""

    @abc.abstractmethod
    def write_weights(self, step: int) -> Path:
        """Write the official-layout weights (+ config) of `step`; return the weights file."""

    @abc.abstractmethod
    def load_weights(self, path: Path) -> None:
        """Load weights written by `write_weights` (resume)."""

    @abc.abstractmethod
    def newest_weights(self) -> Path | None:
        """The highest-step weights file `write_weights` left in the folder, or None."""

    def restart_at(self, step: int) -> None:
        """Continue at `step` from weights alone (no resume.pt: committed weights, a lost state): the
        optimisers start afresh; a subclass puts its schedules where `step` has them."""

    @abc.abstractmethod
    def state(self) -> dict[str, Any]:
        """Everything besides the weights that resuming needs (optimisers, schedulers, ...)."""

    @abc.abstractmethod
    def load_state(self, state: dict[str, Any]) -> None:
        ...

    @abc.abstractmethod
    def validate(self, step: int, logger: TrainLogger) -> dict[str, float]:
        """Validation scalars; may write audio and mel images through `logger` (rank 0 only)."""

    def save(self, step: int) -> Path:
        weights = self.write_weights(step)
        write_resume(self.folder, step, weights, self.state())
        return weights


def _load_weights(stage: Stage, path: Path) -> None:
    """`stage.load_weights`, any failure one sentence (a file of other sizes, another network, damage)."""
    try:
        stage.load_weights(path)
    except TrainError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the loader raised, the user gets the file and why
        raise TrainError(f"cannot continue {stage.name} from {path}: {type(exc).__name__}: {exc}".split("\n")[0]
                         + f" (move {path.parent}'s weights files away to start this stage afresh)") from None


def run(stage: Stage, max_steps: int | None, quiet: bool = False) -> int:
    """Train until `max_steps` (total, counted from the stage's start) or forever; returns the last step.
    `max_steps` 0 on a fresh folder writes (and validates) the initial weights as step 0.

    Ctrl-C writes a checkpoint of the current step before re-raising KeyboardInterrupt."""
    from tqdm import tqdm

    cfg, d = stage.cfg, stage.dist
    seed = int(cfg["train"]["seed"])
    step = 0
    resumed = read_resume(stage.folder)
    weights_only = stage.newest_weights() if resumed is None else None
    if resumed is not None:
        step, weights, state = resumed
        _load_weights(stage, weights)
        stage.load_state(state)
    elif weights_only is not None:
        # e.g. a stage's committed weights copied into a new WORK: the next session continues them
        step = weights_step(weights_only) or 0    # (newest_weights only finds files with a step)
        _load_weights(stage, weights_only)
        stage.restart_at(step)
    logger = TrainLogger(stage.folder) if d.main else None
    if logger is not None:
        logger.resume_at(step)
        if resumed is not None and not quiet:
            print(f"{stage.name}: resuming from step {step} ({resumed[1].name})", file=sys.stderr)
        if weights_only is not None:
            print(f"{stage.name}: no {RESUME_NAME} in {stage.folder}: continuing from the weights of step {step} "
                  f"({weights_only.name}) with a fresh optimiser", file=sys.stderr)
    if max_steps == 0 and resumed is None and weights_only is None:
        # The initial weights as the stage's checkpoint: for `distill`, the teacher as a one-step
        # student (its sample at sigma_max), the demo plan's student when distillation would only
        # pull it away from a regression-trained teacher (docs/demo-voice.md).
        if d.main:
            stage.save(0)
            if logger is not None:
                logger.scalars(0, stage.validate(0, logger))
                logger.close()
        return 0
    if max_steps is not None and step >= max_steps:
        if not quiet and d.main:
            print(f"{stage.name}: already at step {step} >= --max-steps {max_steps}; nothing to do", file=sys.stderr)
        return step
    dataset, batch_size = stage.dataset()
    batches = StepBatches(len(dataset), batch_size, d.rank, d.world, seed)
    workers = int(cfg["train"]["num_workers"])
    loader = DataLoader(dataset, batch_sampler=batches.from_step(step), collate_fn=collate, num_workers=workers,
                        persistent_workers=workers > 0)
    intervals = {k: int(cfg["train"][k]) for k in ("interval_log", "interval_val", "interval_force_save")}
    bar = tqdm(total=max_steps, initial=step, desc=stage.name, unit="step", disable=quiet or not d.main,
               file=sys.stderr)
    saved = step
    try:
        for batch in loader:
            torch.manual_seed(seed * 1_000_003 + step * 1_009 + d.rank)
            batch = {k: v.to(d.device, non_blocking=True) for k, v in batch.items()}
            scalars = stage.train_step(batch, step)
            step += 1
            bar.update()
            bar.set_postfix({k: f"{v:.4g}" for k, v in scalars.items() if k.startswith("loss")}, refresh=False)
            last = max_steps is not None and step >= max_steps
            if logger is not None and (step % intervals["interval_log"] == 0 or last):
                logger.scalars(step, {f"train/{k}": v for k, v in scalars.items()})
            if step % intervals["interval_force_save"] == 0 or last:
                if d.main:
                    stage.save(step)
                saved = step
                d.barrier()
            if logger is not None and step % intervals["interval_val"] == 0:
                logger.scalars(step, stage.validate(step, logger))
            if last:
                break
    except KeyboardInterrupt:
        if d.main and step > saved:
            stage.save(step)
            print(f"\n{stage.name}: interrupted; checkpoint of step {step} written to {stage.folder}",
                  file=sys.stderr)
        raise
    finally:
        bar.close()
        if logger is not None:
            logger.close()
    return step
