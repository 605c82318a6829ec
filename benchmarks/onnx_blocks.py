"""Per-block run time of decoder.onnx and vocoder.onnx, as the streaming engine calls them.

    .venv/bin/python -m benchmarks.onnx_blocks [--sizes tiny small full] [--providers cpu cuda tensorrt]

For each model size and block length (40/80/160 ms) the decoder runs on block + its receptive field
on both sides, and the vocoder on block + its receptive field, which is what one live block costs.
Random-weight packs are exported on the fly in the official checkpoint layouts ('full' is the
official size: WaveNet 20×512, NSF-HiFiGAN 512 channels). GPU providers are measured when the
machine has them; a provider that is not available is listed with the reason.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from benchmarks._table import print_table, summarize, timeit
from engine.runtime import create_session
from engine.voicepack import load_manifest

BLOCKS_MS = (40, 80, 160)
PREFER = {"cpu": ("cpu",), "cuda": ("cuda", "cpu"), "tensorrt": ("tensorrt", "cuda", "cpu")}


def export(size: str, folder: Path) -> Path:
    from tests.fixtures.packs import export_tiny_pack

    return export_tiny_pack(folder / size, size=size, name=f"{size} random voice")


def feeds(manifest, frames: int, rng: np.random.Generator) -> tuple[dict, dict]:
    width = int(manifest.networks["decoder"].inputs[0].shape[-1])
    n_harm = int(manifest.networks["vocoder"].inputs[2].shape[-1])
    decoder = {"units": rng.standard_normal((1, frames, width)).astype(np.float32),
               "f0": np.full((1, frames), 220, np.float32), "volume": np.full((1, frames), 0.1, np.float32),
               "speaker": np.zeros(1, np.int64), "noise": rng.standard_normal((1, frames, 80)).astype(np.float32)}
    vocoder = {"mel": (-4 + rng.standard_normal((1, frames, 80))).astype(np.float32),
               "f0": np.full((1, frames), 220, np.float32), "phase": np.zeros((1, n_harm), np.float32),
               "noise": rng.standard_normal((1, frames * 128, n_harm)).astype(np.float32)}
    return decoder, vocoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small", "full"])
    parser.add_argument("--providers", nargs="+", default=["cpu"], choices=sorted(PREFER))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            pack = export(size, Path(tmp))
            manifest = load_manifest(pack)
            for provider in args.providers:
                sessions = {n: create_session(manifest.path(n), PREFER[provider], threads=args.threads)
                            for n in ("decoder", "vocoder")}
                actual = sessions["decoder"].provider
                if sessions["decoder"].why_not_faster:
                    notes.append(f"{size}/{provider}: runs on {actual}. {sessions['decoder'].why_not_faster}")
                dec_rf = manifest.networks["decoder"].receptive_field
                voc_rf = manifest.networks["vocoder"].receptive_field
                for block_ms in BLOCKS_MS:
                    block = int(np.ceil(block_ms * 24000 / 1000 / 128))
                    voc_frames = block + sum(voc_rf)
                    dec_frames = voc_frames + sum(dec_rf)
                    dec_in, _ = feeds(manifest, dec_frames, rng)
                    _, voc_in = feeds(manifest, voc_frames, rng)
                    dec_in = {k: v for k, v in dec_in.items() if k in sessions["decoder"].input_names}
                    repeats = max(5, args.repeats // (4 if size == "full" else 1))
                    for name, session, inputs, frames in (("decoder", sessions["decoder"], dec_in, dec_frames),
                                                          ("vocoder", sessions["vocoder"], voc_in, voc_frames)):
                        stats = summarize(timeit(lambda: session.run(inputs), repeats, warmup=2))
                        rows.append({"size": size, "provider": actual, "network": name, "block ms": block_ms,
                                     "frames run": frames, "median ms": stats["median_ms"],
                                     "p99 ms": stats["p99_ms"],
                                     "median / block": stats["median_ms"] / block_ms})
    print_table(f"ONNX Runtime per-block run time ({args.threads} thread(s)/session, fp32)", rows)
    for note in notes:
        print("note:", note)


if __name__ == "__main__":
    main()
