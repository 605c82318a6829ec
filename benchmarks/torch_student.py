"""CPU speed of the full-size CoMoSVC student (one step) + M4Singer NSF-HiFiGAN in PyTorch eager.

    .venv/bin/python -m benchmarks.torch_student [--lengths 1 2 4] [--threads 1 2] [--repeats N]

Random weights in the official full-size layouts (tests/fixtures: WaveNet 20 x 512, conditioner
768 -> 256, 2 speakers; vocoder upsample 8·4·2·2 from 512 channels). Times the decoder (conditioner +
one consistency step) and the vocoder separately, per input length and torch thread count, and
prints median / p99 per call, per second of audio, and the real-time factor (compute time / audio
time; < 1 is faster than real time). "total" pairs the i-th decoder and i-th vocoder run.
Default run: about 2-3 minutes on 2 cores (fewer repeats for longer inputs).
"""
from __future__ import annotations

import argparse

import torch

from benchmarks._table import print_table, summarize, timeit, usable_cores
from models.audio import HOP, N_MELS, SAMPLE_RATE
from models.comosvc import CoMoSVC, model_from_config
from models.vocoder import NSFHiFiGAN
from tests.fixtures.official import official_config, official_state_dict
from tests.fixtures.vocoder import random_checkpoint_state, vocoder_config

DEFAULT_REPEATS = {1.0: 10, 2.0: 6, 4.0: 3}  # seconds of audio -> timed runs (1 warm-up each)


def full_student(seed: int = 0) -> CoMoSVC:
    """The official full-size model with random official-layout weights (inference keys only)."""
    model = model_from_config(official_config("full", n_spk=2))
    state = official_state_dict("teacher", "full", n_spk=2, seed=seed)
    own = model.state_dict()
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=True)
    return model.eval()


def full_vocoder(seed: int = 0) -> NSFHiFiGAN:
    config = vocoder_config("m4singer", "full")
    model = NSFHiFiGAN(config)
    model.load_checkpoint_state(random_checkpoint_state(config, seed), source="<random full m4singer>")
    return model.eval()


def inputs(n_frames: int, units_dim: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n_frames, dtype=torch.float32)
    return {
        "units": torch.randn(1, n_frames, units_dim, generator=g),
        "f0": (220.0 * 2.0 ** (0.3 * torch.sin(t / 30.0)))[None],
        "volume": 0.05 + 0.05 * torch.rand(1, n_frames, generator=g),
        "speaker": torch.tensor([1]),
        "noise": torch.randn(1, n_frames, N_MELS, generator=g),
        "src_noise": torch.randn(1, n_frames * HOP, 9, generator=g),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", type=float, nargs="+", default=sorted(DEFAULT_REPEATS), help="seconds of audio")
    cores = usable_cores()
    p.add_argument("--threads", type=int, nargs="+", default=sorted({max(1, cores - 1), cores}))
    p.add_argument("--repeats", type=int, help="timed runs per case (default: 10 / 6 / 3 for 1 / 2 / 4 s)")
    p.add_argument("--warmup", type=int, default=1)
    args = p.parse_args(argv)

    torch.manual_seed(0)
    student, vocoder = full_student(), full_vocoder()
    n_dec = sum(v.numel() for v in student.parameters())
    n_voc = sum(v.numel() for v in vocoder.parameters())
    rows = []
    with torch.inference_mode():
        for threads in args.threads:
            torch.set_num_threads(threads)
            for seconds in args.lengths:
                n_frames = int(seconds * SAMPLE_RATE) // HOP
                audio_s = n_frames * HOP / SAMPLE_RATE
                x = inputs(n_frames, student.units_dim)
                repeats = args.repeats or DEFAULT_REPEATS.get(seconds, 3)
                mel = student.infer_mel(x["units"], x["f0"], x["volume"], x["speaker"], x["noise"], steps=1)
                stages = {
                    "decoder": timeit(lambda: student.infer_mel(x["units"], x["f0"], x["volume"], x["speaker"],
                                                                x["noise"], steps=1), repeats, args.warmup),
                    "vocoder": timeit(lambda: vocoder(mel, x["f0"], torch.zeros(1, 9), x["src_noise"]),
                                      repeats, args.warmup),
                }
                stages["total"] = [a + b for a, b in zip(stages["decoder"], stages["vocoder"])]
                for stage, times in stages.items():
                    s = summarize(times)
                    rows.append({"threads": threads, "audio_s": round(audio_s, 3), "stage": stage, "n": s["n"],
                                 "median_ms": s["median_ms"], "p99_ms": s["p99_ms"],
                                 "median_ms_per_s": s["median_ms"] / audio_s, "p99_ms_per_s": s["p99_ms"] / audio_s,
                                 "rtf_median": s["median_ms"] / 1000 / audio_s})
    print_table(
        "torch eager, CPU, fp32: CoMoSVC student 1 step + M4Singer NSF-HiFiGAN (random weights)", rows,
        notes=[f"config: decoder = conditioner (units 768 -> 256, 2 speakers) + WaveNet 20 x 512, "
               f"{n_dec / 1e6:.1f} M params, consistency sampler 1 NFE; vocoder = NSF-HiFiGAN m4singer, "
               f"upsample 8x4x2x2, 512 initial channels, resblock 1 (3,7,11), {n_voc / 1e6:.1f} M params; "
               f"{SAMPLE_RATE} Hz, hop {HOP}; torch.inference_mode; warm-up {args.warmup}; "
               f"p99 of n runs ~ the slowest run when n is small; 'total' = decoder_i + vocoder_i"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
