"""Training speed of `python -m models.train` stages: steps/s and seconds per epoch-hour of audio.

    .venv/bin/python -m benchmarks.training [--presets tiny demo] [--batch 8] [--repeats 5] [--device cpu]

Times one optimisation step (forward, backward, optimiser) of each stage on random batches shaped
like the stage's training crops, for the size presets of models.train.config (tiny: WaveNet 2x16,
vocoder 32 ch; demo: WaveNet 10x128, vocoder 128 ch). "epoch-hour" = seconds to pass one hour of
training audio through the stage once = 3600 / (batch x crop seconds) x seconds per step.
Stages: teacher (EDM loss), distill (consistency, teacher + EMA forward too), vocoder (mel + STFT
losses), vocoder+GAN (plus the discriminator step and adversarial losses, MPD + MRD).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from benchmarks._table import print_table, summarize, timeit
from models.audio import HOP, N_MELS, SAMPLE_RATE
from models.train.config import apply_overrides, default_config
from models.train.loop import Dist

UNITS = {"tiny": 16, "demo": 40, "official": 768}  # content width per preset (PPG small / ContentVec)


def acoustic_batch(cfg: dict, batch: int, units: int, device: torch.device) -> dict[str, torch.Tensor]:
    frames = int(float(cfg["data"]["duration"]) * SAMPLE_RATE) // HOP
    g = torch.Generator().manual_seed(0)
    out = {"units": torch.randn(batch, frames, units, generator=g), "f0": torch.full((batch, frames), 220.0),
           "volume": torch.rand(batch, frames, generator=g) * 0.1,
           "mel": torch.rand(batch, frames, N_MELS, generator=g) * 4 - 5,
           "speaker": torch.zeros(batch, dtype=torch.long), "keyshift": torch.zeros(batch)}
    return {k: v.to(device) for k, v in out.items()}


def vocoder_batch(cfg: dict, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
    frames = int(cfg["vocoder_train"]["segment_frames"])
    g = torch.Generator().manual_seed(0)
    out = {"mel": torch.rand(batch, frames, N_MELS, generator=g) * 4 - 5, "f0": torch.full((batch, frames), 220.0),
           "audio": torch.randn(batch, frames * HOP, generator=g) * 0.1}
    return {k: v.to(device) for k, v in out.items()}


def stages(preset: str, batch: int, device: torch.device, work: Path):
    """(name, step function, seconds of audio per step) for every stage of `preset`."""
    from models.train.acoustic import DistillStage, TeacherStage
    from models.train.vocoder_stage import VocoderStage

    cfg = default_config(preset)
    cfg = apply_overrides(cfg, [f"train.batch_size={batch}", f"vocoder_train.batch_size={batch}",
                                f"data.encoder_out_channels={UNITS[preset]}", "vocoder_train.adv_start_step=1"])
    cfg["spk"], cfg["model"]["n_spk"] = {"a": 0}, 1
    d = Dist(0, 1, device)
    acoustic = acoustic_batch(cfg, batch, UNITS[preset], device)
    crop = acoustic["mel"].shape[1] * HOP / SAMPLE_RATE * batch
    teacher = TeacherStage(work, cfg, d)
    ckpt = teacher.write_weights(0)
    student = DistillStage(work, cfg, d, str(ckpt))
    vocoder = VocoderStage(work, cfg, d)
    voc = vocoder_batch(cfg, batch, device)
    seg = voc["audio"].shape[1] / SAMPLE_RATE * batch
    return [("teacher", lambda: teacher.train_step(acoustic, 0), crop),
            ("distill", lambda: student.train_step(acoustic, 0), crop),
            ("vocoder", lambda: vocoder.train_step(voc, 0), seg),
            ("vocoder+GAN", lambda: vocoder.train_step(voc, 1), seg)]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.training", description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["tiny", "demo"], choices=["tiny", "demo", "official"])
    p.add_argument("--batch", type=int, default=8, help="batch size of every stage (default 8)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:  # one table per preset, printed as soon as it is measured
            rows = []
            for name, step, audio_seconds in stages(preset, args.batch, device, Path(tmp) / preset):
                def timed() -> None:
                    step()
                    if device.type == "cuda":
                        torch.cuda.synchronize()

                stats = summarize(timeit(timed, args.repeats, warmup=1))
                per_step = stats["median_ms"] / 1000
                rows.append({"stage": name, "batch": args.batch, "audio_s/step": audio_seconds, **stats,
                             "steps/s": 1 / per_step, "s/epoch-hour": 3600 / audio_seconds * per_step})
            print_table(f"training step speed, preset {preset}, on {device} ({torch.get_num_threads()} threads)",
                        rows, notes=["median/p99 of whole optimisation steps; s/epoch-hour = seconds to train on "
                                     "one hour of audio once (median step)"])


if __name__ == "__main__":
    main()
