"""Stateful ONNX graphs: the decoder and the vocoder on chunks of new frames with cached state.

decoder_stateful.onnx  `models.comosvc.StatefulDecoder`
    units [1,n,C], f0 [1,n], volume [1,n], speaker [1], noise [1,n,80], position [1] int64, *states
    -> mel [1,n,80], position_out, *<state>_out
vocoder_stateful.onnx  `models.vocoder.StatefulVocoder` (`models.hn_vocoder.StatefulHarmonicNoiseVocoder`)
    mel [1,n,80], f0 [1,n], noise [1,n·hop,H+1], position [1] int64, *states
    -> audio [1,n·hop], position_out, *<state>_out
content_stateful.onnx  `models.content.ppg.StatefulPPG` (PPG packs only; ContentVec's attention
    has no finite receptive field and keeps its windowed graph)
    audio [1,hop·n] at the encoder's rate, position [1] int64, *states -> units [1,n,C], position_out,
    *<state>_out

Every state is float32 [1, ...] and starts at zeros; `position` counts the frames given so far. The
output of a call is the whole-sequence graph's output `delay` samples (of the output) earlier; the
first `delay` output samples of a stream precede its start and are dropped by the engine.

Parity at export: the stateful graph run over several random chunkings (1 frame … 1 s, including
runs of single frames and one call for everything) must reproduce the whole-sequence graph (the
pack's decoder.onnx / vocoder.onnx, same precision) on every output sample both can compute:
relative L2 ≤ 1e-4 in fp32, ≤ 1e-2 in fp16.
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from engine.voicepack import StatefulGraph, StateTensor
from exporters.graphs import GraphSpec, _fix_output_batch
from exporters.parity import FP16_BOUND, FP32_BOUND, ParityError, ParityResult, relative_l2
from models.comosvc import CoMoSVC, StatefulDecoder
from models.content import ContentEncoder
from models.streaming import StateSpec
from models.vocoder import Vocoder

POSITION = "position"
ONE_SECOND_FRAMES = 188  # 24000 / 128, rounded up
PARITY_FRAMES = 400


class _Fp16Stateful(nn.Module):
    """Runs a stateful module in half precision; float inputs, outputs and states stay float32."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner.half()

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = self.inner(*(a.half() if a.is_floating_point() else a for a in args))
        return tuple(o.float() if o.is_floating_point() else o for o in outs)


@dataclass
class StatefulSpec:
    """One stateful graph and how its inputs map onto the whole-sequence graph it streams.

    `frame_inputs`: per new-frame input, (index in the whole graph's inputs, samples per frame on
    axis 1, or 0 for a per-call input such as the speaker). `zero_inputs`: whole-graph inputs that
    are the states' starting values (the vocoder's phase) and are zeros in the parity run."""

    name: str
    streams: GraphSpec
    module: nn.Module
    frame_inputs: dict[str, tuple[int, int]]
    zero_inputs: tuple[int, ...]
    output: str
    output_rate: int
    states: list[StateSpec]
    delay: int  # output samples
    samples_per_output: int  # 24 kHz samples per output sample (the manifest's delay unit)
    length_per_frame: int = 1  # whole-graph input length (its `make_inputs` unit) per frame

    # the attributes the exporter's NetworkSpec reads
    @property
    def receptive_field(self) -> tuple[int, int] | None:
        return self.streams.receptive_field

    @property
    def frame_unit(self) -> str:
        return self.streams.frame_unit

    @property
    def params(self) -> int:
        return self.streams.params

    @property
    def extra(self) -> dict:
        return dict(self.streams.extra)

    @property
    def input_names(self) -> list[str]:
        return [*self.frame_inputs, POSITION, *(s.name for s in self.states)]

    @property
    def output_names(self) -> list[str]:
        return [self.output, f"{POSITION}_out", *(f"{s.name}_out" for s in self.states)]

    def zero_states(self, dtype=np.float32) -> list[np.ndarray]:
        return [np.zeros((1, *s.shape), dtype=dtype) for s in self.states]

    def chunk_feeds(self, whole: tuple[torch.Tensor, ...], start: int, stop: int) -> dict[str, np.ndarray]:
        """Inputs of frames [start, stop) taken from whole-sequence inputs."""
        feeds = {}
        for name, (index, rate) in self.frame_inputs.items():
            tensor = whole[index]
            feeds[name] = (tensor if rate == 0 else tensor[:, start * rate: stop * rate]).numpy()
        return feeds

    def export(self, path: Path, opset: int, fp16: bool = False) -> None:
        module = _Fp16Stateful(copy.deepcopy(self.module)) if fp16 else self.module
        module.eval()
        whole = self.streams.make_inputs(8 * self.length_per_frame, torch.Generator().manual_seed(0))
        args = tuple(torch.from_numpy(v) for v in self.chunk_feeds(whole, 0, 8).values())
        args += (torch.zeros(1, dtype=torch.int64), *(torch.from_numpy(s) for s in self.zero_states()))
        axes = {name: {1: "frames" if rate == 1 else "samples"}
                for name, (_, rate) in self.frame_inputs.items() if rate}
        axes[self.output] = {1: "frames" if self.output_rate == 1 else "samples"}
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, str(path), dynamo=False, opset_version=opset,
                              input_names=self.input_names, output_names=self.output_names, dynamic_axes=axes)
        _fix_output_batch(path)

    def manifest_entry(self, hop: int, parity: ParityResult) -> StatefulGraph:
        """The manifest's record; delays in 24 kHz samples and in mel frames of `hop` samples."""
        samples = self.delay * self.samples_per_output
        return StatefulGraph(
            streams=self.streams.name, position=POSITION, output=self.output,
            states=[StateTensor(s.name, [1, *s.shape], "float32", "zeros") for s in self.states],
            delay_samples=samples, delay_frames=samples / hop, parity=parity.as_json())


def stateful_graphs(model: CoMoSVC, vocoder: Vocoder, decoder: GraphSpec, voc: GraphSpec,
                    encoder: ContentEncoder | None = None, content: GraphSpec | None = None) -> list[StatefulSpec]:
    """The stateful decoder and vocoder (and PPG content encoder, when `encoder` is one) of a pack,
    streaming its whole-sequence specs."""
    dec_module = StatefulDecoder(model).eval()
    voc_module = vocoder.stateful().eval()
    hop = vocoder.hop_size
    specs = [
        StatefulSpec("decoder_stateful", decoder, dec_module,
                     {"units": (0, 1), "f0": (1, 1), "volume": (2, 1), "speaker": (3, 0), "noise": (4, 1)},
                     (), "mel", 1, dec_module.state_specs, dec_module.delay, hop),
        StatefulSpec("vocoder_stateful", voc, voc_module, {"mel": (0, 1), "f0": (1, 1), "noise": (3, hop)},
                     (2,), "audio", hop, voc_module.state_specs, voc_module.delay, 1),
    ]
    if encoder is not None and encoder.kind == "ppg" and content is not None:
        from models.content.ppg import StatefulPPG

        ppg = StatefulPPG(encoder).eval()
        to_24k = encoder.hop * vocoder.sample_rate // encoder.sample_rate
        specs.append(StatefulSpec("content_stateful", content, ppg, {"audio": (0, encoder.hop)}, (), "units", 1,
                                  ppg.state_specs, ppg.delay, to_24k, length_per_frame=encoder.hop))
    return specs


def chunkings(frames: int, seed: int = 0) -> list[list[int]]:
    """Chunk sizes covering `frames`: random 1 frame … 1 s, single frames then random, one call."""
    rng = np.random.default_rng(seed)

    def fill(sizes: list[int], high: int) -> list[int]:
        while sum(sizes) < frames:
            sizes.append(int(rng.integers(1, high + 1)))
        sizes[-1] -= sum(sizes) - frames
        return sizes

    return [fill([], ONE_SECOND_FRAMES), fill([1] * 24, 17), [frames]]


def run_stream(spec: StatefulSpec, session: ort.InferenceSession, whole: tuple[torch.Tensor, ...],
               sizes: list[int]) -> np.ndarray:
    """The stateful graph over `whole`'s frames in chunks of `sizes`; returns the joined output."""
    states = spec.zero_states()
    position = np.zeros(1, dtype=np.int64)
    pieces, start = [], 0
    accepted = {i.name for i in session.get_inputs()}  # a single-speaker graph has no `speaker`
    for n in sizes:
        feeds = {k: v for k, v in spec.chunk_feeds(whole, start, start + n).items() if k in accepted}
        feeds[POSITION] = position
        feeds.update({s.name: v for s, v in zip(spec.states, states)})
        out = session.run(spec.output_names, feeds)
        pieces.append(out[0][0])
        position, states = out[1], out[2:]
        start += n
    return np.concatenate(pieces, axis=0)


def check(spec: StatefulSpec, path: Path, whole_path: Path, precision: str = "fp32",
          frames: int = PARITY_FRAMES) -> ParityResult:
    """Stateful `path` over `chunkings` vs the whole-sequence graph `whole_path` (ORT CPU)."""
    bound = FP16_BOUND if precision == "fp16" else FP32_BOUND
    result = ParityResult(spec.name, precision, bound, (frames,))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        stateful = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        whole_session = ort.InferenceSession(str(whole_path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - e.g. fp16 kernels missing on the CPU provider
        if precision == "fp32":
            raise ParityError(f"{path.name} cannot be opened by ONNX Runtime: {exc}") from exc
        result.note = f"not verified: the CPU provider cannot run it ({str(exc).splitlines()[0]})"
        return result
    whole = list(spec.streams.make_inputs(frames * spec.length_per_frame, torch.Generator().manual_seed(4321)))
    for index in spec.zero_inputs:
        whole[index] = torch.zeros_like(whole[index])
    names = [i.name for i in whole_session.get_inputs()]
    reference = whole_session.run([spec.output], {n: t.numpy() for n, t in zip(spec.streams.input_names, whole)
                                                  if n in names})[0][0]
    usable = len(reference) - spec.delay
    sizes_tried = []
    for sizes in chunkings(frames):
        streamed = run_stream(spec, stateful, tuple(whole), sizes)
        error = relative_l2(reference[:usable], streamed[spec.delay: spec.delay + usable])
        result.errors[f"{spec.output}/{len(sizes)} chunks"] = error
        sizes_tried.append(len(sizes))
    result.verified = True
    result.note = (f"{frames} frames in {', '.join(map(str, sizes_tried))} chunks (1 frame … 1 s) vs the "
                   f"whole-sequence graph, delay {spec.delay} output samples")
    if result.worst > bound:
        raise ParityError(f"{path.name} ({precision}) does not stream the whole-sequence graph: relative L2 "
                          f"{result.worst:.2e} > {bound:.0e}")
    return result
