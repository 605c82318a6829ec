"""ONNX Runtime sessions on the fastest provider the machine has: TensorRT → CUDA → CPU.

`create_session` returns the session together with the provider that *actually* runs it and one
human sentence on why a faster one was not used. onnxruntime-gpu on a machine without CUDA prints
a wall of C++ and Python errors before falling back to the CPU; that text is captured here (at the
file-descriptor level, since the C++ logger writes to fd 2 directly), condensed into the sentence,
and kept in full in the debug log — the user never sees it raw and never gets a silent fallback.
"""
from __future__ import annotations

import io
import logging
import os
import re
import sys
import tempfile
import threading
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import onnxruntime as ort

log = logging.getLogger(__name__)

PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
LABELS = {"TensorrtExecutionProvider": "TensorRT", "CUDAExecutionProvider": "CUDA", "CPUExecutionProvider": "CPU"}
_capture_lock = threading.Lock()


@dataclass
class RuntimeSession:
    """An ONNX Runtime session plus the truth about where it runs."""

    session: ort.InferenceSession
    provider: str                 # "TensorRT" | "CUDA" | "CPU"
    why_not_faster: str = ""      # "" when the fastest requested provider runs it
    path: str = ""
    input_names: list[str] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run the graph; outputs in graph order (host arrays).

        On a GPU provider the inputs and outputs are bound explicitly (IO binding), so ONNX Runtime
        copies each tensor once instead of staging it per call.
        """
        if self.provider == "CPU":
            return self.session.run(self.output_names, feeds)
        binding = self.session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        for name in self.output_names:
            binding.bind_output(name, "cuda")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()

    def warmup(self, feeds: dict[str, np.ndarray], times: int = 2) -> None:
        """Run a few times at load so the first live block does not pay for lazy initialisation."""
        for _ in range(times):
            self.run(feeds)


def default_cache_dir() -> Path:
    """Per-user folder for TensorRT engine caches."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("como-live", appauthor=False)) / "tensorrt"


@contextmanager
def _captured_output() -> Iterator[list[str]]:
    """Capture everything written to fds 1 and 2 (C++ and Python) into the yielded list."""
    sink: list[str] = []
    with _capture_lock, tempfile.TemporaryFile(mode="w+b") as tmp:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = [os.dup(1), os.dup(2)]
        py_text = io.StringIO()  # onnxruntime prints its "EP Error" block from Python
        try:
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            with redirect_stdout(py_text), redirect_stderr(py_text):
                yield sink
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            tmp.seek(0)
            sink.append(tmp.read().decode("utf-8", "replace") + py_text.getvalue())


def _reason(label: str, text: str) -> str:
    """One sentence on why provider `label` failed, from the captured ORT output."""
    lib = re.search(
        rf"providers_{label.lower()}\S* with error: (\S+?)(?:: cannot open shared object file)", text
    )
    if lib:
        return f"{lib.group(1)} was not found (its NVIDIA libraries are not installed)"
    if label == "TensorRT" and "TensorRT libraries" in text:
        return "the TensorRT libraries (libnvinfer) are not installed"
    if re.search(r"no CUDA-capable device|cudaErrorNoDevice|CUDA failure 100", text):
        return "no NVIDIA GPU was found"
    if "Require cuDNN" in text and label == "CUDA":
        return "CUDA 13 and cuDNN 9 libraries were not found"
    return "onnxruntime could not start it (see the debug log)"


def _provider_options(name: str, fp16: bool, cache_dir: Path | None, workspace_gb: float) -> dict[str, str]:
    if name == "TensorrtExecutionProvider":
        cache = cache_dir or default_cache_dir()
        cache.mkdir(parents=True, exist_ok=True)
        return {
            "trt_fp16_enable": "True" if fp16 else "False",
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": "True",
            "trt_max_workspace_size": str(int(workspace_gb * (1 << 30))),
        }
    if name == "CUDAExecutionProvider":
        return {"cudnn_conv_algo_search": "EXHAUSTIVE", "do_copy_in_default_stream": "True"}
    return {}


def session_options(threads: int) -> ort.SessionOptions:
    """CPU-friendly options: a fixed thread count and no spinning (spinning threads of several
    sessions fight over 2 cores and ran 1.4–2.4× slower in our measurements)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


def create_session(
    path: str | os.PathLike,
    prefer: Sequence[str] = ("tensorrt", "cuda", "cpu"),
    threads: int = 1,
    fp16: bool = False,
    cache_dir: Path | None = None,
    workspace_gb: float = 2.0,
    model: bytes | None = None,
) -> RuntimeSession:
    """Open `path` on the first provider of `prefer` that works; say why faster ones did not.

    With `model` (the file's bytes, already verified) the graph is built from those bytes and may
    read no other file: external data is looked up in an empty private folder, so a graph that
    refers to weights outside itself fails to load instead of reading whatever lies around.
    """
    wanted = [PROVIDERS[p] for p in prefer]
    if wanted[-1] != PROVIDERS["cpu"]:
        wanted.append(PROVIDERS["cpu"])
    available = set(ort.get_available_providers())
    tried = [n for n in wanted if n in available]
    providers = [(n, _provider_options(n, fp16, cache_dir, workspace_gb)) for n in tried]
    options = session_options(threads)
    with tempfile.TemporaryDirectory(prefix="como-no-external-data-") as nowhere, _captured_output() as captured:
        if model is not None:
            options.add_session_config_entry("session.model_external_initializers_file_folder_path", nowhere)
        session = ort.InferenceSession(model if model is not None else os.fspath(path), sess_options=options,
                                       providers=providers)
    text = captured[0] if captured else ""
    if text.strip():
        log.debug("onnxruntime output while opening %s:\n%s", path, text)
    active = session.get_providers()[0]
    reasons = []
    for name in wanted[: wanted.index(active)] if active in wanted else wanted:
        if name not in available:
            reasons.append(f"{LABELS[name]} is not used: this onnxruntime build has no {LABELS[name]} support")
        else:
            reasons.append(f"{LABELS[name]} is not used: {_reason(LABELS[name], text)}")
    why = "; ".join(reasons)
    if why:
        log.info("%s runs on %s. %s.", Path(path).name, LABELS.get(active, active), why)
    return RuntimeSession(
        session=session,
        provider=LABELS.get(active, active),
        why_not_faster=why,
        path=os.fspath(path),
        input_names=[i.name for i in session.get_inputs()],
        output_names=[o.name for o in session.get_outputs()],
    )
