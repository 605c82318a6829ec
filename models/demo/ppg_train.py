"""Train the PPG content encoder (models.content.ppg.PPGEncoder) on the synthesised corpus.

    python -m models.demo ppg WORK [--minutes 60] [--steps N] [--framing contentvec|mel] [--right-context R]

Resumable: WORK/ppg/state.pt (model, optimiser, step, RNG) is written every CHECKPOINT_SECONDS
and at the end, with WORK/ppg/ppg.pt (the encoder alone, `load_ppg`-able) beside it; a new run
continues from state.pt. New utterances from a data command still running are picked up every
REFRESH_SECONDS. Log lines go to stdout and WORK/ppg/train.log.

`--framing` / `--right-context` choose the encoder of a new run (`encoder_config`; default ContentVec's
framing with RIGHT_CONTEXT); a resumed run keeps its state's and refuses others. The corpus is read at
the encoder's rate, and every frame is labelled with the phone at the sample it describes
(`ContentEncoder.labelled_samples`: the window centre, or the mel frame's own position for "mel").
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from models.checkpoints import CheckpointError, safe_load
from models.content.ppg import PPGConfig, PPGEncoder
from models.demo.augment import Augmenter, load_room_responses
from models.demo.corpus import Clip, ClipStore
from models.demo.phones import PHONES, SIL

CROP_SECONDS = 2.0              # audio per training example
BATCH = 16
LR, LR_MIN, WARMUP, HALF_LIFE = 2e-3, 1e-4, 200, 600
LABEL_SMOOTHING = 0.05
CHECKPOINT_SECONDS = 180
REFRESH_SECONDS = 300
VALID_CLIPS = 24                # per test set, scored at each checkpoint
RIGHT_CONTEXT = 2               # content frames of lookahead (40 ms)

#: The encoders trained here, per framing. ContentVec's: causal blocks after a first symmetric one that
#: spends the 2-frame lookahead; left context 26 frames (520 ms), right 2 (40 ms). On the mel grid a
#: frame is 5.33 ms instead of 20: dilations 4x as wide keep about the same left context in time
#: (71 frames, 379 ms) at the same cost per frame; one frame (5.3 ms) of lookahead.
ENCODERS = {
    "contentvec": PPGConfig(width=len(PHONES), channels=192, kernels=(5, 5, 5, 5, 3, 3),
                            dilations=(1, 1, 2, 2, 1, 1), right_context=RIGHT_CONTEXT),
    "mel": PPGConfig(width=len(PHONES), channels=192, kernels=(5, 5, 5, 5, 3, 3), dilations=(1, 2, 4, 8, 4, 2),
                     right_context=1, framing="mel"),
}


def encoder_config(framing: str | None = None, right_context: int | None = None) -> PPGConfig:
    """The encoder of `framing` (default "contentvec") with another right context (None: its own)."""
    config = ENCODERS[framing or "contentvec"]
    return config if right_context is None else dataclasses.replace(config, right_context=right_context)


def crop_samples(model: PPGEncoder) -> int:
    """Samples of one training crop at the encoder's rate."""
    return int(round(CROP_SECONDS * model.sample_rate))


def learning_rate(step: int) -> float:
    warm = min(1.0, (step + 1) / WARMUP)
    return max(LR_MIN, LR * warm * 0.5 ** (max(0, step - WARMUP) / HALF_LIFE))


def make_batch(clips: list[Clip], aug: Augmenter, rng: np.random.Generator, model: PPGEncoder,
               batch: int = BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """Random augmented crops -> audio [B, crop_samples], labels [B, T_c] (the phone at each frame's
    labelled sample). The clips must be at the encoder's rate."""
    n_samples = crop_samples(model)
    n_frames = model.num_frames(n_samples)
    audio = np.zeros((batch, n_samples), dtype=np.float32)
    labels = np.full((batch, n_frames), SIL, dtype=np.int64)
    positions = model.labelled_samples(np.arange(n_frames))
    for b in range(batch):
        clip = clips[rng.integers(len(clips))]
        if clip.sample_rate != model.sample_rate:
            raise ValueError(f"clip {clip.id} is at {clip.sample_rate} Hz, the encoder reads {model.sample_rate} Hz")
        factor = aug.warp_factor()
        span = int(math.ceil(n_samples * factor)) + 2
        start = int(rng.integers(0, max(1, len(clip.audio) - span)))
        source = clip.float_audio()[start: start + span]
        source = np.pad(source, (0, span - len(source)))
        audio[b] = aug.colour(aug.resample(source, factor, n_samples))
        labels[b] = clip.labels_at(start + positions * factor)
    return torch.from_numpy(audio), torch.from_numpy(labels)


def train_step(model: PPGEncoder, opt: torch.optim.Optimizer, audio: torch.Tensor, labels: torch.Tensor,
               lr: float) -> float:
    """One optimiser step on audio [B, N] with frame labels [B, T_c]. -> the batch's loss."""
    model.train()
    for group in opt.param_groups:
        group["lr"] = lr
    logits = model.logits(audio)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), label_smoothing=LABEL_SMOOTHING)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    opt.step()
    return loss.item()


@torch.no_grad()
def frame_accuracy(model: PPGEncoder, clips: list[Clip]) -> tuple[float, float]:
    """(top-1, top-3) frame accuracy over whole clips; model in eval mode."""
    hits1 = hits3 = total = 0
    for clip in clips:
        x = torch.from_numpy(clip.float_audio())[None]
        if x.shape[1] < model.window:
            continue
        logits = model.logits(x)[0]
        target = torch.from_numpy(clip.labels_at(model.labelled_samples(np.arange(logits.shape[0]))))
        top3 = logits.topk(3, dim=-1).indices
        hits1 += int((top3[:, 0] == target).sum())
        hits3 += int((top3 == target[:, None]).any(dim=-1).sum())
        total += len(target)
    return hits1 / max(1, total), hits3 / max(1, total)


def save_state(folder: Path, model: PPGEncoder, opt: torch.optim.Optimizer, step: int, rng: np.random.Generator,
               cpu_seconds: float) -> None:
    """state.pt (for resuming; never committed) and ppg.pt (the encoder alone), each written atomically."""
    state = {"model": model.checkpoint(), "optimizer": opt.state_dict(), "step": step,
             "rng": rng.bit_generator.state, "cpu_seconds": cpu_seconds}
    for name, obj in (("state.pt", state), ("ppg.pt", model.checkpoint())):
        tmp = folder / f"{name}.tmp"
        torch.save(obj, tmp)
        os.replace(tmp, folder / name)


def load_state(path: Path) -> dict[str, Any]:
    state = safe_load(path)
    if not isinstance(state, dict) or not {"model", "optimizer", "step", "rng"} <= set(state):
        raise CheckpointError(f"{path}: not a PPG training state")
    return state


def train(work: Path, minutes: float = 60.0, max_steps: int = 0, seed: int = 0, threads: int = 2,
          log_every: int = 25, framing: str | None = None, right_context: int | None = None,
          mbrola: bool = True) -> PPGEncoder:
    """Train for `minutes` of wall clock (or until `max_steps` total). -> the encoder (eval mode).

    `framing` / `right_context`: the new encoder's (see `encoder_config`); a resumed run must match.
    `mbrola=False` leaves the MBROLA voices (and WORLD copies of them) out of the training clips."""
    torch.set_num_threads(threads)
    data, folder = work / "data", work / "ppg"
    folder.mkdir(parents=True, exist_ok=True)
    logfile = open(folder / "train.log", "a")

    def log(msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        logfile.write(line + "\n")
        logfile.flush()

    state_path = folder / "state.pt"
    if state_path.exists():
        state = load_state(state_path)
        model = PPGEncoder.from_checkpoint(state["model"])
        asked = encoder_config(framing, right_context)
        for name, given in (("framing", framing), ("right_context", right_context)):
            if given is not None and getattr(model.config, name) != getattr(asked, name):
                raise CheckpointError(f"{state_path} trains an encoder with {name} {getattr(model.config, name)!r}, "
                                      f"not {given!r}: use another WORK folder for a new encoder")
        step, cpu_before = int(state["step"]), float(state.get("cpu_seconds", 0.0))
        rng = np.random.default_rng()
        rng.bit_generator.state = state["rng"]
    else:
        state, step, cpu_before = None, 0, 0.0
        torch.manual_seed(seed)
        model = PPGEncoder(encoder_config(framing, right_context))
        rng = np.random.default_rng(seed)
    rate = model.sample_rate
    # MBROLA's voices are for non-commercial use only: an encoder that ships is trained without them
    train_clips = ClipStore(data, "train", rate, exclude=frozenset() if mbrola else frozenset({"mbrola"}))
    if train_clips.refresh() == 0:
        raise FileNotFoundError(f"no training utterances in {data / 'train'}: run `python -m models.demo data {work}` first")
    valid = {name: ClipStore(data, name, rate) for name in ("kokoro-heldout", "flite")}
    for store in valid.values():
        store.refresh()
    rooms = load_room_responses(work / "downloads" / "impulses", rate)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-2)
    if state is not None:
        opt.load_state_dict(state["optimizer"])
    aug = Augmenter(rng, rooms, rate)
    log(f"step {step}: {len(train_clips.clips)} clips ({train_clips.seconds / 60:.1f} min), config {model.config}, "
        f"receptive field {model.receptive_field}, {sum(p.numel() for p in model.parameters())} parameters")

    t_start = time.monotonic()
    cpu_start = time.process_time()
    last_ckpt = last_refresh = t_start
    running = []
    while True:
        audio, labels = make_batch(train_clips.clips, aug, rng, model, BATCH)
        running.append(train_step(model, opt, audio, labels, learning_rate(step)))
        step += 1
        if step % log_every == 0:
            log(f"step {step} loss {np.mean(running):.3f} lr {learning_rate(step):.2e}")
            running = []
        now = time.monotonic()
        done = (max_steps and step >= max_steps) or now - t_start >= minutes * 60
        if now - last_refresh >= REFRESH_SECONDS:
            added = train_clips.refresh()
            for store in valid.values():
                store.refresh()
            log(f"refresh: +{added} clips, {train_clips.seconds / 60:.1f} min of training audio")
            last_refresh = now
        if done or now - last_ckpt >= CHECKPOINT_SECONDS:
            model.eval()
            scores = {name: frame_accuracy(model, store.clips[:VALID_CLIPS]) for name, store in valid.items()}
            cpu = cpu_before + time.process_time() - cpu_start
            save_state(folder, model, opt, step, rng, cpu)
            log(f"checkpoint step {step}, process CPU {cpu / 60:.1f} min, " +
                ", ".join(f"{k} top1 {a:.3f} top3 {b:.3f}" for k, (a, b) in scores.items()))
            last_ckpt = now
        if done:
            break
    logfile.close()
    return model.eval()
