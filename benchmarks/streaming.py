"""Streaming engine benchmark: latency, compute per block and streaming-vs-whole SNR.

    .venv/bin/python -m benchmarks.streaming [--pack DIR] [--seconds 6] [--threads 1] [--quick] [--full-size]

For every block × lookahead it prints the converter's latency (lookahead + crossfade + frame
rounding + resamplers, exact) and the algorithmic latency (that + one block, which the live runner
buffers before converting), the compute time of one block
(p50/p99) as a fraction of the block's duration (≤ 1 is real time; the goal is p99 ≤ 0.6), and the
SNR of the streamed output against the same voice converting the whole file at once. In the same
run, with the same voice and sessions, an RVC-style baseline re-runs 2.5 s of context through the
content encoder and the decoder every block (its vocoder runs on the new block plus context only,
as RVC's does); the last column is baseline time / our time.

A second table puts the stateful core (stateful decoder/vocoder graphs, only new frames per block,
exact) beside the windowed core at its exact lookahead, same pack and run, for 10/20/40/80 ms blocks;
the last column is windowed time / stateful time. `--full-size` adds the official-size decoder
(WaveNet 20×512) + vocoder (NSF-HiFiGAN 512 ch) with random weights, per 40 ms block, windowed
(block + both networks' receptive fields) vs stateful (the block's frames only).

Without `--pack` it exports a "small" random voice (PPG content encoder, WaveNet 10×128, and the
harmonic-plus-noise vocoder the demo plan trains — or with `--vocoder nsf` NSF-HiFiGAN 128 channels,
the small voice's vocoder until the demo plan changed) into a temporary folder: the size that is meant
to run live on 2 CPU cores. Random weights make the SNR a strict test (the output is noise-like, nothing hides errors).
`--layout low-latency` (default) gives it the front ends and right contexts of the project's own
voices (YIN F0, mel-grid PPG, decoder 1 frame, causal vocoder and PPG: tests/fixtures/packs.py
LOW_LATENCY); `--layout official` the official symmetric networks with DIO F0 and ContentVec framing.
The stateful table's last column is the algorithmic latency at that block with the adaptive budget
the live runner would set from these compute times (engine/budget.py): block + converter + budget.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._table import print_table
from engine import f0_track
from engine.budget import AdaptiveBudget
from engine.converter import Converter, convert_whole
from engine.neural_core import NeuralCore
from engine.settings import Settings
from engine.voicepack import load_manifest
from engine.voices import frames, open_neural_core, open_sessions

DEVICE_RATE = 48000
RVC_CONTEXT_S = 2.5


def sung(seconds: float, rate: int) -> np.ndarray:
    """A vibrato note with rests, like a singer's phrase."""
    t = np.arange(int(seconds * rate)) / rate
    phase = np.cumsum(220 * 2 ** (0.3 * np.sin(2 * np.pi * 1.3 * t)) / rate)
    x = 0.3 * np.sin(2 * np.pi * phase) + 0.1 * np.sin(4 * np.pi * phase)
    x += 0.003 * np.random.default_rng(0).standard_normal(len(t))
    x[(t % 2.0) > 1.7] = 0.0
    return x.astype(np.float32)


def snr_db(reference: np.ndarray, value: np.ndarray) -> float:
    err = float(np.sum((value.astype(np.float64) - reference) ** 2))
    return 10 * np.log10(float(np.sum(reference.astype(np.float64) ** 2)) / max(err, 1e-30))


def measure(manifest, sessions, block_ms: float, lookahead_ms: float, audio: np.ndarray) -> dict:
    settings = Settings(block_ms=block_ms, lookahead_ms=lookahead_ms, crossfade_ms=20, gate_db=-120)
    core = NeuralCore(manifest, sessions, frames(lookahead_ms), frames(settings.crossfade_ms))
    result = measure_core(lambda s: core, settings, block_ms, audio, skip_s=0.5)
    result["exact"] = core.exact_lookahead_frames is not None and core.lookahead_frames >= core.exact_lookahead_frames
    return result


def rvc_style_block(manifest, sessions, block_ms: float, repeats: int) -> float:
    """Median seconds per block when 2.5 s of context is re-run through content + decoder."""
    content, decoder, vocoder = sessions["content"], sessions["decoder"], sessions["vocoder"]
    width = int(manifest.content["width"])
    n16 = int(RVC_CONTEXT_S * 16000)
    t_ctx = int(RVC_CONTEXT_S * 24000) // 128
    t_block = int(np.ceil(block_ms * 24000 / 1000 / 128))
    left, right = manifest.networks["vocoder"].receptive_field or (0, 0)
    t_voc = t_block + left + right
    rng = np.random.default_rng(0)
    audio24 = sung(RVC_CONTEXT_S, 24000)
    n_harm = int(manifest.networks["vocoder"].inputs[2].shape[-1])
    feeds = {"units": rng.standard_normal((1, t_ctx, width)).astype(np.float32),
             "f0": np.full((1, t_ctx), 220, np.float32), "volume": np.full((1, t_ctx), 0.1, np.float32),
             "speaker": np.zeros(1, np.int64), "noise": rng.standard_normal((1, t_ctx, 80)).astype(np.float32)}
    feeds = {k: v for k, v in feeds.items() if k in decoder.input_names}
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f0_track.dio_frames(audio24[-(t_block + 40) * 128:], t_block + 40)  # f0 on the new block only
        content.run({"audio": rng.standard_normal((1, n16)).astype(np.float32) * 0.1})
        mel = decoder.run(feeds)[0]
        vocoder.run({"mel": mel[:, -t_voc:], "f0": feeds["f0"][:, -t_voc:], "phase": np.zeros((1, n_harm), np.float32),
                     "noise": np.zeros((1, t_voc * 128, n_harm), np.float32)})
        times.append(time.perf_counter() - t0)
    return float(np.median(times[2:]))


def measure_core(factory, settings: Settings, block_ms: float, audio: np.ndarray, skip_s: float = 0.0) -> dict:
    """Compute per block (fraction of the block; the first 5 blocks skipped), latency and SNR vs the
    same converter on the whole file (after `skip_s`) of one core."""
    conv = Converter(factory, settings, DEVICE_RATE)
    conv.reset()  # the core may be shared with an earlier measurement
    block = int(DEVICE_RATE * block_ms / 1000)
    times, pieces = [], []
    for start in range(0, len(audio), block):
        t0 = time.perf_counter()
        pieces.append(conv.process(audio[start: start + block]))
        times.append(time.perf_counter() - t0)
    pieces.append(conv.flush())
    lat = conv.latency()
    streamed = np.concatenate(pieces)[lat: lat + len(audio)]
    conv.reset()
    whole = convert_whole(conv, audio)
    skip = int(skip_s * DEVICE_RATE)
    steady = np.array(times[5:])
    budget = AdaptiveBudget(DEVICE_RATE, block).safe(steady)
    return {"latency_ms": 1000 * lat / DEVICE_RATE, "budget_ms": 1000 * budget / DEVICE_RATE, "p50": float(np.median(steady)) / (block / DEVICE_RATE),
            "p99": float(np.percentile(steady, 99)) / (block / DEVICE_RATE), "seconds_p50": float(np.median(steady)),
            "snr": snr_db(whole[skip:], streamed[skip:])}


def stateful_rows(manifest, prefer, threads: int, audio: np.ndarray, blocks=(10, 20, 40, 80)) -> list[dict]:
    """Windowed (exact lookahead, no crossfade) vs stateful core on the same pack and audio."""
    sessions = open_sessions(manifest, prefer, threads, names=("content", "pitch", "decoder", "vocoder"))
    windowed = NeuralCore(manifest, sessions, lookahead_frames=0, crossfade_frames=0)
    # exact lookahead (may exceed the Settings limit, so the core is built directly)
    windowed = NeuralCore(manifest, sessions, lookahead_frames=windowed.exact_lookahead_frames, crossfade_frames=0)
    windowed_settings = Settings(crossfade_ms=0, gate_db=-120)
    stateful = open_neural_core(manifest, Settings(gate_db=-120), prefer, threads, stateful=True)
    rows = []
    for block_ms in blocks:
        w = measure_core(lambda s: windowed, windowed_settings, block_ms, audio)
        st = measure_core(lambda s: stateful, Settings(gate_db=-120), block_ms, audio)
        rows.append({"block ms": block_ms,
                     "windowed p50/p99 /block": f"{w['p50']:.2f} / {w['p99']:.2f}",
                     "stateful p50/p99 /block": f"{st['p50']:.2f} / {st['p99']:.2f}",
                     "windowed / stateful": f"{w['seconds_p50'] / st['seconds_p50']:.1f}x",
                     "SNR vs whole dB (w / s)": f"{w['snr']:.0f} / {st['snr']:.0f}",
                     "latency ms (w / s)": f"{w['latency_ms']:.1f} / {st['latency_ms']:.1f}",
                     "stateful: block + latency + budget ms": f"{block_ms:g} + {st['latency_ms']:.1f} + "
                     f"{st['budget_ms']:.1f} = {block_ms + st['latency_ms'] + st['budget_ms']:.1f}"})
    return rows


def full_size_rows(prefer, threads: int, block_ms: float = 40.0, repeats: int = 12) -> list[dict]:
    """Official-size decoder + vocoder per block (random weights): windowed vs stateful graphs."""
    import torch

    from exporters.graphs import decoder_graph, vocoder_graph
    from exporters.stateful import stateful_graphs
    from models.comosvc import CoMoSVC
    from models.vocoder import NSFHiFiGAN
    from tests.fixtures.vocoder import vocoder_config
    from engine.runtime import create_session

    torch.manual_seed(0)
    model = CoMoSVC(units_dim=768, n_spk=1, n_layers=20, n_chans=512, n_hidden=256).eval()
    vocoder = NSFHiFiGAN(vocoder_config("m4singer", "full")).eval()
    dec, voc = decoder_graph(model), vocoder_graph(vocoder)
    n = int(np.ceil(block_ms * 24 / 128))
    (ld, rd), (lv, rv) = dec.receptive_field, voc.receptive_field
    t_voc = n + lv + rv
    t_dec = t_voc + ld + rd
    g = torch.Generator().manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        sessions = {}
        for spec in (dec, voc, *stateful_graphs(model, vocoder, dec, voc)):
            path = Path(tmp) / f"{spec.name}.onnx"
            spec.export(path, 17)
            sessions[spec.name] = (spec, create_session(path, prefer=prefer, threads=threads))

        def windowed() -> None:
            feeds = dict(zip(dec.input_names, (t.numpy() for t in dec.make_inputs(t_dec, g))))
            sessions["decoder"][1].run({k: v for k, v in feeds.items() if k in sessions["decoder"][1].input_names})
            sessions["vocoder"][1].run(dict(zip(voc.input_names, (t.numpy() for t in voc.make_inputs(t_voc, g)))))

        state = {}

        def stateful() -> None:
            for name, whole in (("decoder_stateful", dec), ("vocoder_stateful", voc)):
                spec, session = sessions[name]
                feeds = spec.chunk_feeds(whole.make_inputs(n, g), 0, n)
                position, states = state.get(name, (np.zeros(1, np.int64), spec.zero_states()))
                feeds = {k: v for k, v in feeds.items() if k in session.input_names}
                feeds.update({"position": position, **{s.name: v for s, v in zip(spec.states, states)}})
                out = session.run(feeds)
                state[name] = (out[1], out[2:])

        rows = []
        results = {}
        for label, fn in (("windowed", windowed), ("stateful", stateful)):
            times = []
            for i in range(repeats + 2):
                t0 = time.perf_counter()
                fn()
                if i >= 2:
                    times.append(time.perf_counter() - t0)
            results[label] = times
            rows.append({"path": label, "frames decoded / vocoded": f"{t_dec} / {t_voc}" if label == "windowed"
                         else f"{n} / {n}", "p50 ms": f"{1000 * np.median(times):.1f}",
                         "p99 ms": f"{1000 * np.percentile(times, 99):.1f}",
                         "p50 /block": f"{np.median(times) / (block_ms / 1000):.2f}"})
        ratio = np.median(results["windowed"]) / np.median(results["stateful"])
        rows.append({"path": "windowed / stateful", "p50 ms": f"{ratio:.1f}x"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pack", type=Path, help="voice pack to measure (default: export a small random one)")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per ONNX session")
    parser.add_argument("--provider", default="cpu", choices=("cpu", "cuda", "tensorrt"))
    parser.add_argument("--quick", action="store_true", help="fewer configurations")
    parser.add_argument("--layout", choices=("low-latency", "official"), default="low-latency",
                        help="the random voice's front ends and right contexts (without --pack)")
    parser.add_argument("--vocoder", choices=("hn", "nsf"), default="hn",
                        help="the random voice's vocoder (without --pack): the harmonic-plus-noise vocoder the "
                             "demo plan trains (default) or NSF-HiFiGAN 128 channels")
    parser.add_argument("--full-size", action="store_true",
                        help="also time the official-size decoder+vocoder per 40 ms block, windowed vs stateful")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pack = args.pack
        if pack is None:
            from tests.fixtures.packs import LOW_LATENCY, export_tiny_pack

            layout = LOW_LATENCY if args.layout == "low-latency" else {}
            pack = export_tiny_pack(Path(tmp), size="small", stateful=True, vocoder=args.vocoder,
                                    name=f"small random voice, {args.layout} layout, {args.vocoder} vocoder",
                                    **layout)
        manifest = load_manifest(pack)
        prefer = {"cpu": ("cpu",), "cuda": ("cuda", "cpu"), "tensorrt": ("tensorrt", "cuda", "cpu")}[args.provider]
        sessions = open_sessions(manifest, prefer, threads=args.threads)
        audio = sung(args.seconds, DEVICE_RATE)
        blocks = (40, 160) if args.quick else (20, 40, 80, 160)
        lookaheads = (0, 40, 200) if args.quick else (0, 20, 40, 80, 120, 160, 200)
        rows = []
        for block_ms in blocks:
            baseline = rvc_style_block(manifest, sessions, block_ms, repeats=12)
            for la in lookaheads:
                r = measure(manifest, sessions, block_ms, la, audio)
                rows.append({"block ms": block_ms, "lookahead ms": la,
                             "converter latency ms": f"{r['latency_ms']:.1f}",
                             "algorithmic ms (+block)": f"{r['latency_ms'] + block_ms:.1f}",
                             "compute p50 /block": f"{r['p50']:.2f}", "compute p99 /block": f"{r['p99']:.2f}",
                             "SNR vs whole dB": f"{r['snr']:.1f}" + (" (exact)" if r["exact"] else ""),
                             "RVC-style / ours": f"{baseline / r['seconds_p50']:.1f}x"})
        title = (f"streaming engine, voice '{manifest.name}' ({manifest.content['kind']} content, "
                 f"{manifest.f0['method']} F0), "
                 f"device rate {DEVICE_RATE} Hz, crossfade 20 ms, provider {sessions['decoder'].provider}, "
                 f"{args.threads} thread(s)/session, {args.seconds:g} s of sung audio")
        print_table(title, rows)
        if manifest.stateful:
            print_table(f"stateful vs windowed core (exact lookahead, no crossfade), voice '{manifest.name}', "
                        f"provider {sessions['decoder'].provider}, {args.threads} thread(s)/session",
                        stateful_rows(manifest, prefer, args.threads, audio))
        if args.full_size:
            print_table(f"official-size decoder + vocoder per 40 ms block (random weights), "
                        f"{args.threads} thread(s)/session", full_size_rows(prefer, args.threads))


if __name__ == "__main__":
    main()
