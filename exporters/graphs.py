"""Three of the four networks of a voice pack as ONNX graphs (content, decoder, vocoder): names,
dynamic axes, example inputs. The fourth, pitch.onnx (FCPE), is exported by `exporters.fcpe`.

decoder.onnx  conditioner + one-step consistency student (`models.comosvc.OneStepDecoder`)
vocoder.onnx  streaming NSF-HiFiGAN or harmonic-plus-noise vocoder with the harmonic phase as input/output
              (`StreamingVocoder`)
content.onnx  the content encoder (ContentVec or the PPG encoder)

Each `GraphSpec` knows how to make random inputs of any length, which the exporter uses both to
trace the graph and to check ONNX Runtime against PyTorch.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from models.comosvc import CoMoSVC, OneStepDecoder
from models.content import ContentEncoder
from models.vocoder import StreamingVocoder, Vocoder

N_MELS = 80


class _Fp16(nn.Module):
    """Runs `inner` in half precision with float32 inputs/outputs, so the engine's I/O never changes."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner.half()

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        cast = [a.half() if a.is_floating_point() else a for a in args]
        return self.inner(*cast).float()


@dataclass
class GraphSpec:
    """One exportable network.

    `make_inputs(n, generator)` returns example inputs for a length `n` in the network's own unit
    (mel frames, or 16 kHz samples for the content encoder).
    """

    name: str
    module: nn.Module
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]]
    make_inputs: Callable[[int, torch.Generator], tuple[torch.Tensor, ...]]
    receptive_field: tuple[int, int] | None
    frame_unit: str
    trace_length: int
    test_lengths: tuple[int, ...]
    extra: dict

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    def export(self, path: Path, opset: int, fp16: bool = False) -> None:
        module = _Fp16(_clone(self.module)) if fp16 else self.module
        module.eval()
        args = self.make_inputs(self.trace_length, torch.Generator().manual_seed(0))
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
            torch.onnx.export(module, args, str(path), dynamo=False, opset_version=opset,
                              input_names=list(self.input_names), output_names=list(self.output_names),
                              dynamic_axes=self.dynamic_axes)
        _fix_output_batch(path)


def _fix_output_batch(path: Path) -> None:
    """The tracer names the outputs' batch axis after an op (e.g. `Addmel_dim_0`); it is always 1."""
    import onnx

    model = onnx.load(str(path))
    for output in model.graph.output:
        dims = output.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].Clear()
            dims[0].dim_value = 1
    onnx.save(model, str(path))


def _clone(module: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(module)


def decoder_graph(model: CoMoSVC) -> GraphSpec:
    """units [1,T,C], f0 [1,T], volume [1,T], speaker [1], noise [1,T,80] -> mel [1,T,80]."""
    n_spk = model.n_spk
    units_dim = model.units_dim

    def make(t: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
        return (
            torch.randn(1, t, units_dim, generator=g),
            100.0 + 400.0 * torch.rand(1, t, generator=g),
            0.3 * torch.rand(1, t, generator=g),
            torch.randint(0, n_spk, (1,), generator=g),
            torch.randn(1, t, N_MELS, generator=g),
        )

    frames = {1: "frames"}
    return GraphSpec(
        name="decoder", module=OneStepDecoder(model).eval(),
        input_names=("units", "f0", "volume", "speaker", "noise"), output_names=("mel",),
        dynamic_axes={"units": frames, "f0": frames, "volume": frames, "noise": frames, "mel": frames},
        make_inputs=make, receptive_field=tuple(model.decoder.denoise_fn.receptive_field),
        frame_unit="mel_frames", trace_length=64, test_lengths=(7, 50, 301),
        extra={"n_spk": n_spk, "units_dim": units_dim, "steps": 1},
    )


def vocoder_graph(vocoder: Vocoder) -> GraphSpec:
    """mel [1,T,80], f0 [1,T], phase [1,H+1], noise [1,T·hop,H+1] -> audio [1,T·hop], phase_out."""
    wrapper = StreamingVocoder(vocoder).eval()
    hop, harmonics = vocoder.hop_size, vocoder.n_harmonics

    def make(t: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
        return (
            -4.0 + torch.randn(1, t, vocoder.num_mels, generator=g),
            100.0 + 400.0 * torch.rand(1, t, generator=g),
            torch.rand(1, harmonics, generator=g),
            torch.randn(1, t * hop, harmonics, generator=g),
        )

    return GraphSpec(
        name="vocoder", module=wrapper, input_names=tuple(wrapper.input_names),
        output_names=tuple(wrapper.output_names), dynamic_axes=dict(wrapper.dynamic_axes),
        make_inputs=make, receptive_field=tuple(vocoder.receptive_field), frame_unit="mel_frames",
        trace_length=16, test_lengths=(5, 40, 400),
        extra={"hop": hop, "harmonics": harmonics, **vocoder.describe()},
    )


def content_graph(encoder: ContentEncoder) -> GraphSpec:
    """audio [1,N] at the encoder's rate (16 kHz; 24 kHz for the mel-grid PPG) -> units [1,T_c,C]."""

    def make(n: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
        return (0.1 * torch.randn(1, n, generator=g),)

    rf = encoder.receptive_field
    return GraphSpec(
        name="content", module=encoder.eval(), input_names=("audio",), output_names=("units",),
        dynamic_axes={"audio": {1: "samples"}, "units": {1: "frames"}}, make_inputs=make,
        receptive_field=None if rf is None else tuple(rf), frame_unit="content_frames",
        trace_length=8000, test_lengths=(encoder.window, 5000, 23456),
        extra={"kind": encoder.kind, "width": encoder.width},
    )


def run_torch(spec: GraphSpec, inputs: tuple[torch.Tensor, ...]) -> list[np.ndarray]:
    with torch.no_grad():
        out = spec.module(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o.detach().float().numpy() for o in outs]
