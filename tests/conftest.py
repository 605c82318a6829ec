"""Shared fixtures: tiny voice packs exported once per test session."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs the property tests with a fixed seed: a red CI must be reproducible, not a dice roll.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def ppg_pack(tmp_path_factory) -> Path:
    """A tiny pack with a finite-receptive-field (PPG) content encoder: streaming can be exact."""
    from tests.fixtures.packs import export_tiny_pack

    return export_tiny_pack(tmp_path_factory.mktemp("ppg_pack"), content="ppg")


@pytest.fixture(scope="session")
def contentvec_pack(tmp_path_factory) -> Path:
    """A tiny pack with a (tiny) ContentVec: attention, unbounded receptive field."""
    from tests.fixtures.packs import export_tiny_pack

    return export_tiny_pack(tmp_path_factory.mktemp("cv_pack"), content="contentvec")


@pytest.fixture(scope="session")
def low_latency_pack(tmp_path_factory) -> Path:
    """A tiny pack in the low-latency layout (YIN F0, mel-grid PPG, decoder 1 frame, causal vocoder),
    with stateful graphs."""
    from tests.fixtures.packs import LOW_LATENCY, export_tiny_pack

    return export_tiny_pack(tmp_path_factory.mktemp("low_latency_pack"), stateful=True, **LOW_LATENCY)


@pytest.fixture()
def shipped_voices(tmp_path: Path, monkeypatch) -> Path:
    """An empty stand-in for the voices folder shipped with the program (`engine.voices.bundled_voices_dir`):
    a pack copied into `<it>/demo` is `builtin:demo`."""
    from engine import voices

    folder = tmp_path / "shipped-voices"
    folder.mkdir()
    monkeypatch.setattr(voices, "bundled_voices_dir", lambda: folder)
    return folder


@pytest.fixture()
def shipped_demo(shipped_voices: Path, ppg_pack: Path) -> Path:
    """The tiny PPG pack shipped as the demo voice (`builtin:demo`); returns its folder."""
    return Path(shutil.copytree(ppg_pack, shipped_voices / "demo"))


@pytest.fixture()
def one_torch_thread():
    """Torch on one thread: small models run faster and steadier on the 2 shared cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
