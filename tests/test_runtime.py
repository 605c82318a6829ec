"""ONNX Runtime sessions: the provider reported is the one that runs, and a fallback is explained."""
from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from engine.runtime import create_session

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402


@pytest.fixture()
def scale_model(tmp_path: Path) -> Path:
    """y = 2 * x with a dynamic time axis, built directly with onnx.helper."""
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    node = helper.make_node("Mul", ["x", "two"], ["y"])
    graph = helper.make_graph(
        [node], "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "T"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "T"])],
        initializer=[two],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    path = tmp_path / "scale.onnx"
    onnx.save(model, path)
    return path


def test_reported_provider_is_the_active_one(scale_model: Path) -> None:
    rs = create_session(scale_model)
    assert rs.provider == {"CPUExecutionProvider": "CPU", "CUDAExecutionProvider": "CUDA",
                           "TensorrtExecutionProvider": "TensorRT"}[rs.session.get_providers()[0]]
    x = np.arange(5, dtype=np.float32)[None]
    np.testing.assert_array_equal(rs.run({"x": x})[0], 2 * x)


def test_fallback_is_explained_and_quiet(scale_model: Path, capfd) -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        rs = create_session(scale_model, prefer=("tensorrt", "cuda", "cpu"))
    captured = capfd.readouterr()
    assert "EP Error" not in out.getvalue() + captured.out + captured.err
    if rs.provider == "CPU":
        # On a machine without a working GPU stack both faster providers must be explained.
        assert "TensorRT is not used" in rs.why_not_faster
        assert "CUDA is not used" in rs.why_not_faster
    else:  # pragma: no cover - only on GPU machines
        assert rs.provider in ("TensorRT", "CUDA")


def test_cpu_only_request_has_no_excuse(scale_model: Path) -> None:
    rs = create_session(scale_model, prefer=("cpu",), threads=2)
    assert rs.provider == "CPU" and rs.why_not_faster == ""


def test_missing_provider_build_is_named(scale_model: Path, monkeypatch) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    rs = create_session(scale_model)
    assert "this onnxruntime build has no TensorRT support" in rs.why_not_faster
    assert "this onnxruntime build has no CUDA support" in rs.why_not_faster
