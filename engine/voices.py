"""Turning a voice spec into a running `VoiceCore`: the built-in DSP voice or a voice pack.

A spec is `"builtin:dsp"` (always available, no model) or a voice-pack folder. Opening a pack
validates its manifest, opens one ONNX Runtime session per network on the fastest provider, checks
each graph's inputs and outputs against the manifest, and warms the sessions up so the first live
block is not slow. Every failure is a `VoicePackError` with one clear sentence.
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from engine.core import VoiceCore
from engine.runtime import RuntimeSession, create_session
from engine.settings import Settings
from engine.voicepack import VoiceManifest, VoicePackError, load_manifest

BUILTIN_DSP = "builtin:dsp"
SAMPLE_RATE = 24000
HOP = 128
_ORT_TYPES = {"tensor(float)": "float32", "tensor(int64)": "int64", "tensor(float16)": "float16"}


@dataclass(frozen=True)
class VoiceInfo:
    """What the app lists in its voice picker."""

    spec: str
    name: str
    speakers: dict[str, int]


def voices_dir() -> Path:
    """The per-user folder where imported voice packs live."""
    from platformdirs import user_data_dir

    env = os.environ.get("COMO_LIVE_VOICES")
    return Path(env) if env else Path(user_data_dir("como-live", appauthor=False)) / "voices"


def bundled_voices_dir() -> Path:
    """Voice packs shipped with the program: `voices/` beside the code, i.e. in the repository
    checkout, or in the installer bundle's library folder (`sys._MEIPASS` when frozen)."""
    base = getattr(sys, "_MEIPASS", None)
    return (Path(base) if base else Path(__file__).resolve().parents[1]) / "voices"


def builtin_info() -> VoiceInfo:
    from engine.dsp_voice import PRESETS

    return VoiceInfo(BUILTIN_DSP, "Built-in voice (DSP, no model)", {p.name: i for i, p in enumerate(PRESETS)})


def list_installed(folder: Path | None = None) -> list[VoiceInfo]:
    """The built-in voice, then every valid pack in `folder` (default: the bundled voices, then the
    user's voices folder); invalid packs are skipped."""
    found = [builtin_info()]
    for root in [folder] if folder else [bundled_voices_dir(), voices_dir()]:
        if not root.is_dir():
            continue
        for path in sorted(p for p in root.iterdir() if p.is_dir()):
            try:
                manifest = load_manifest(path, verify_hashes=False)
            except VoicePackError:
                continue
            found.append(VoiceInfo(str(path), manifest.name, manifest.speakers))
    return found


def describe(spec: str) -> VoiceInfo:
    """Name and speakers of a spec without opening any session."""
    if spec == BUILTIN_DSP:
        return builtin_info()
    manifest = load_manifest(spec, verify_hashes=False)
    return VoiceInfo(spec, manifest.name, manifest.speakers)


def frames(ms: float) -> int:
    """Milliseconds → whole mel frames at 24 kHz / hop 128 (rounded up: never less than asked)."""
    return int(math.ceil(ms * SAMPLE_RATE / 1000.0 / HOP - 1e-9))


def open_sessions(manifest: VoiceManifest, prefer: Sequence[str], threads: int = 1) -> dict[str, RuntimeSession]:
    """One validated session per network of the pack."""
    sessions = {}
    for name, spec in manifest.networks.items():
        path = manifest.path(name)
        try:
            session = create_session(path, prefer=prefer, threads=threads)
        except Exception as exc:  # noqa: BLE001 - ORT raises several types for a bad file
            raise VoicePackError(f"{spec.file} is not a valid ONNX model (corrupt or truncated): {exc}") from exc
        _check_io(spec.file, "input", spec.inputs, session.session.get_inputs())
        _check_io(spec.file, "output", spec.outputs, session.session.get_outputs())
        sessions[name] = session
    return sessions


def _check_io(file: str, kind: str, expected, actual) -> None:
    got = {a.name: a for a in actual}
    for tensor in expected:
        if tensor.name not in got:
            raise VoicePackError(f"{file} has no {kind} named {tensor.name!r} (it has {', '.join(got)})")
        arg = got[tensor.name]
        dtype = _ORT_TYPES.get(arg.type, arg.type)
        if dtype != tensor.dtype:
            raise VoicePackError(f"{file} {kind} {tensor.name!r} is {dtype}, the manifest says {tensor.dtype}")
        if len(arg.shape) != len(tensor.shape):
            raise VoicePackError(f"{file} {kind} {tensor.name!r} has shape {arg.shape}, the manifest says {tensor.shape}")
        for have, want in zip(arg.shape, tensor.shape):
            if isinstance(want, int) and isinstance(have, int) and have != want:
                raise VoicePackError(
                    f"{file} {kind} {tensor.name!r} has shape {arg.shape}, the manifest says {tensor.shape}")


def load_voice(spec: str, settings: Settings, prefer: Sequence[str] = ("tensorrt", "cuda", "cpu"),
               threads: int = 1) -> VoiceCore:
    """Open the voice `spec` with `settings` (lookahead, crossfade, context, pitch, speaker)."""
    if spec in (BUILTIN_DSP, "builtin"):
        from engine.dsp_voice import DspCore

        # The DSP voice synthesises one continuous stream (no seams to crossfade); its speakers
        # are presets (bright, deep, identity), on top of which the user's pitch applies.
        core = DspCore(speaker=settings.speaker)
        core.set_pitch(settings.pitch)
        return core
    from engine.neural_core import NeuralCore

    manifest = load_manifest(spec)
    sessions = open_sessions(manifest, prefer, threads)
    if settings.speaker not in manifest.speakers.values():
        raise VoicePackError(f"speaker {settings.speaker} does not exist in voice {manifest.name!r} "
                             f"(it has {', '.join(f'{k}={v}' for k, v in manifest.speakers.items())})")
    core = NeuralCore(manifest, sessions, lookahead_frames=frames(settings.lookahead_ms),
                      crossfade_frames=frames(settings.crossfade_ms), context_ms=settings.context_ms,
                      pitch=settings.pitch, speaker=settings.speaker)
    # Warm-up with the shapes live blocks will have (a TensorRT engine is built per input shape
    # range): the first block is larger (it fills the context), then blocks of the live size.
    block = max(HOP, int(round(settings.block_ms * SAMPLE_RATE / 1000)))
    for size in (SAMPLE_RATE // 4, block, block, block):
        core.process(np.zeros(size, dtype=np.float32))
    core.reset()
    return core
