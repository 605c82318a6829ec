"""Per-block run time of the stateful vocoder graphs: NSF-HiFiGAN vs the harmonic-plus-noise vocoder.

    .venv/bin/python -m benchmarks.vocoders [--block-ms 20] [--threads 1] [--repeats 200]

Each vocoder (random weights, causal: right_context 0) is exported as vocoder_stateful.onnx and
called as the stateful engine calls it: the frames of one block (20 ms ≈ 4 frames) with its states
carried. NSF-HiFiGAN at the `demo` preset (128 channels) and `official` (512); the harmonic-plus-noise
vocoder at the `demo` preset (192 channels, 96 sines, 48 noise bands). Prints median and p99 per
block, parameters and the real-time share (median / block).
"""
from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import numpy as np

from benchmarks._table import print_table, summarize, timeit
from engine.runtime import create_session


def _vocoders() -> dict[str, object]:
    import torch

    from models.hn_vocoder import HarmonicNoiseVocoder
    from models.vocoder import NSFHiFiGAN
    from tests.fixtures.vocoder import hn_config, vocoder_config

    torch.manual_seed(0)
    return {"NSF-HiFiGAN demo (128 ch)": NSFHiFiGAN(vocoder_config("m4singer", "small", right_context=0)),
            "NSF-HiFiGAN official (512 ch)": NSFHiFiGAN(vocoder_config("m4singer", "full", right_context=0)),
            "harmonic-plus-noise demo (192 ch)": HarmonicNoiseVocoder(hn_config("full"))}


def stateful_spec(vocoder, folder: Path):
    """The vocoder's StatefulSpec (a one-layer decoder stands in for the acoustic model)."""
    from exporters.graphs import decoder_graph, vocoder_graph
    from exporters.stateful import stateful_graphs
    from models.comosvc import CoMoSVC

    model = CoMoSVC(units_dim=8, n_spk=1, n_layers=1, n_chans=8, n_hidden=8).eval()
    voc = vocoder_graph(vocoder.eval())
    return [s for s in stateful_graphs(model, vocoder, decoder_graph(model), voc) if s.name == "vocoder_stateful"][0]


def rows(block_ms: float, threads: int, repeats: int) -> list[dict]:
    import torch

    frames = math.ceil(block_ms * 24 / 128)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, vocoder in _vocoders().items():
            spec = stateful_spec(vocoder, Path(tmp))
            path = Path(tmp) / f"{len(out)}.onnx"
            spec.export(path, 17)
            session = create_session(path, prefer=("cpu",), threads=threads)
            whole = spec.streams.make_inputs(frames, torch.Generator().manual_seed(0))
            feeds = spec.chunk_feeds(whole, 0, frames)
            state = {"position": np.zeros(1, np.int64), **{s.name: v for s, v in zip(spec.states, spec.zero_states())}}

            def call() -> None:
                result = session.run({**feeds, **state})
                state["position"] = result[1]
                state.update({s.name: v for s, v in zip(spec.states, result[2:])})

            stats = summarize(timeit(call, repeats, warmup=5))
            out.append({"vocoder": label, "params": f"{spec.params / 1e6:.2f} M", "frames/block": frames,
                        "threads": threads, **stats,
                        "median / block": f"{stats['median_ms'] / block_ms:.2f}"})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.vocoders", description=__doc__.split("\n")[0])
    parser.add_argument("--block-ms", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args(argv)
    print_table(f"stateful vocoder graph per {args.block_ms:g} ms block (CPU)", rows(args.block_ms, args.threads,
                                                                                   args.repeats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
