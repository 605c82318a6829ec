"""ONNX Runtime vs PyTorch: the check every exported file passes before a pack is written."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from exporters.graphs import GraphSpec, run_torch

FP32_BOUND = 1e-4
FP16_BOUND = 1e-2


class ParityError(RuntimeError):
    """An exported graph disagrees with PyTorch beyond the bound."""


@dataclass
class ParityResult:
    """Worst relative L2 error per output over the tested lengths."""

    network: str
    precision: str
    bound: float
    lengths: tuple[int, ...]
    errors: dict[str, float] = field(default_factory=dict)
    verified: bool = False
    note: str = ""

    @property
    def worst(self) -> float:
        return max(self.errors.values()) if self.errors else float("nan")

    def as_json(self) -> dict:
        return {"precision": self.precision, "bound": self.bound, "lengths": list(self.lengths),
                "max_rel_l2": self.errors, "verified": self.verified, "note": self.note}


def relative_l2(reference: np.ndarray, value: np.ndarray) -> float:
    """‖value − reference‖ / ‖reference‖ (absolute error when the reference is all zeros)."""
    reference = reference.astype(np.float64)
    diff = np.linalg.norm(value.astype(np.float64) - reference)
    norm = np.linalg.norm(reference)
    return float(diff / norm) if norm > 0 else float(diff)


def check(spec: GraphSpec, path: Path, precision: str = "fp32") -> ParityResult:
    """Run `path` with the CPU provider on random inputs of `spec.test_lengths` and compare."""
    bound = FP16_BOUND if precision == "fp16" else FP32_BOUND
    result = ParityResult(spec.name, precision, bound, spec.test_lengths)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - e.g. fp16 kernels missing on the CPU provider
        if precision == "fp32":  # an fp32 graph the CPU cannot open is broken, not unverifiable
            raise ParityError(f"{spec.name}.onnx cannot be opened by ONNX Runtime: {exc}") from exc
        result.note = f"not verified: the CPU provider cannot run it ({str(exc).splitlines()[0]})"
        return result
    graph_inputs = {i.name for i in session.get_inputs()}
    generator = torch.Generator().manual_seed(1234)
    for length in spec.test_lengths:
        inputs = spec.make_inputs(length, generator)
        expected = run_torch(spec, inputs)
        feeds = {name: t.numpy() for name, t in zip(spec.input_names, inputs) if name in graph_inputs}
        try:
            got = session.run(list(spec.output_names), feeds)
        except Exception as exc:  # noqa: BLE001 - a graph that opens but fails to run is broken
            raise ParityError(f"{spec.name}.onnx ({precision}) fails on an input of length {length}: "
                              f"{str(exc).splitlines()[0]}") from exc
        for name, ref, value in zip(spec.output_names, expected, got):
            if ref.shape != value.shape:
                raise ParityError(f"{spec.name}.onnx output {name!r} has shape {value.shape}, "
                                  f"PyTorch gives {ref.shape} (length {length})")
            result.errors[name] = max(result.errors.get(name, 0.0), relative_l2(ref, value))
    result.verified = True
    if result.worst > bound:
        raise ParityError(f"{spec.name}.onnx ({precision}) differs from PyTorch: relative L2 error "
                          f"{result.worst:.2e} > {bound:.0e} on lengths {spec.test_lengths}")
    return result
