"""Turning a voice spec into a running `VoiceCore`: the built-in DSP voice or a voice pack.

A spec is `"builtin:dsp"` (always available, no model), a voice pack shipped with the program
(`"builtin:<name>"`: the folder `voices/<name>` of the checkout or of the installer bundle, e.g.
`BUILTIN_DEMO`) or a voice-pack folder. A shipped pack that is missing or broken is an error that
names its folder, never a silent switch to another voice. Opening a pack
validates its manifest, reads each network file once, checks those bytes against the manifest's
sha256 and builds the ONNX Runtime session from them (on the fastest provider, with no access to
any other file: a graph referring to external weights is refused), checks each graph's inputs and
outputs against the manifest and against what the engine feeds, and test-runs the whole voice with
the live block shapes and the highest speaker id — which also warms the sessions up so the first
live block is not slow. Every failure is a `VoicePackError` with one clear sentence.
"""
from __future__ import annotations

import math
import os
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

from engine.model_audio import HOP, MODEL_RATE
from engine.settings import Settings
from engine.voicepack import MANIFEST_NAME, VoiceManifest, VoicePackError, load_manifest, read_verified

if TYPE_CHECKING:   # numpy and onnxruntime load with the first voice: the app reads the constants at start
    from engine.runtime import RuntimeSession
    from engine.voice_core import VoiceCore

BUILTIN_PREFIX = "builtin:"
BUILTIN_DSP = "builtin:dsp"
#: The multi-speaker demo voice pack shipped with the program in `voices/demo` (issue 12).
BUILTIN_DEMO = "builtin:demo"
#: The voice of a fresh install of the app, of `engine.convert` and of `engine.live`. It becomes
#: BUILTIN_DEMO when the trained pack is committed in voices/demo (issue 12).
DEFAULT_VOICE = BUILTIN_DSP
#: The `--voice` help of the command-line tools (argparse fills in the default).
VOICE_HELP = (f"{BUILTIN_DSP} (the built-in WORLD voice, no model), {BUILTIN_DEMO} (the demo voice pack shipped "
              "in voices/demo) or a voice-pack folder (default: %(default)s)")
#: A shipped pack's folder name (no path separators, no "..": a spec from a settings file stays inside).
_BUNDLED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ORT_TYPES = {"tensor(float)": "float32", "tensor(int64)": "int64", "tensor(float16)": "float16"}
#: What the cores feed each network (decoder `speaker` only when the voice has several; a stateful
#: graph also takes its `position` and state tensors, which the manifest's `stateful` section names).
ENGINE_INPUTS = {"content": ("audio",), "decoder": ("units", "f0", "volume", "noise"),
                 "vocoder": ("mel", "f0", "phase", "noise"), "pitch": ("audio",),
                 "content_stateful": ("audio",), "decoder_stateful": ("units", "f0", "volume", "noise"),
                 "vocoder_stateful": ("mel", "f0", "noise")}
MAX_HARMONICS = 256


@dataclass(frozen=True)
class VoiceInfo:
    """What the app lists in its voice picker; `references`: the speakers with a preview clip; `notice`:
    the pack has a SOURCES.md (`engine.voicepack.read_notice`)."""

    spec: str
    name: str
    speakers: dict[str, int]
    references: frozenset[str] = frozenset()
    notice: bool = False


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


def is_bundled(spec: str) -> bool:
    """Whether `spec` names a voice pack shipped with the program (`builtin:<name>`, not the DSP voice)."""
    return spec.startswith(BUILTIN_PREFIX) and spec not in (BUILTIN_DSP, "builtin")


def pack_folder(spec: str) -> Path:
    """The voice-pack folder `spec` names: a shipped pack's folder in the program, else the spec as a path."""
    if not is_bundled(spec):
        return Path(spec)
    name = spec[len(BUILTIN_PREFIX):]
    if not _BUNDLED_NAME.fullmatch(name):
        raise VoicePackError(f"{spec!r} is not a voice name: after {BUILTIN_PREFIX!r} comes the folder name of a "
                             f"voice shipped with the program (e.g. {BUILTIN_DEMO}) or use {BUILTIN_DSP}")
    return bundled_voices_dir() / name


@contextmanager
def _shipped_pack_errors(spec: str) -> Iterator[None]:
    """Turn a `VoicePackError` about a shipped pack into one sentence naming the voice, its folder and the remedy."""
    if not is_bundled(spec):
        yield
        return
    folder = pack_folder(spec)
    try:
        yield
    except VoicePackError as exc:
        remedy = ("reinstall CoMo Live" if getattr(sys, "_MEIPASS", None)
                  else f"rebuild it with `python -m models.demo build WORK --pack {folder}`")
        problem = (f"is broken ({exc})" if (folder / MANIFEST_NAME).is_file()
                   else f"is missing: {folder} has no {MANIFEST_NAME}")
        raise VoicePackError(f"the voice {spec} shipped with the program {problem}; {remedy} "
                             f"or choose {BUILTIN_DSP}") from exc


def builtin_info() -> VoiceInfo:
    from engine.dsp_voice import PRESETS

    return VoiceInfo(BUILTIN_DSP, "Built-in voice (DSP, no model)", {p.name: i for i, p in enumerate(PRESETS)})


def list_installed(folder: Path | None = None) -> list[VoiceInfo]:
    """The built-in voice, then every valid pack in `folder` (default: the shipped voices, then the
    user's voices folder); invalid packs are skipped."""
    packs = _packs_in(folder) if folder else [*list_shipped(), *_packs_in(voices_dir())]
    return [builtin_info(), *packs]


def list_shipped() -> list[VoiceInfo]:
    """The valid voice packs shipped with the program, by their `builtin:<name>` specs."""
    def spec_of(folder: Path) -> str | None:
        spec = BUILTIN_PREFIX + folder.name
        return spec if _BUNDLED_NAME.fullmatch(folder.name) and is_bundled(spec) else None

    return _packs_in(bundled_voices_dir(), spec_of)


def _packs_in(root: Path, spec_of: Callable[[Path], str | None] = str) -> list[VoiceInfo]:
    """The valid packs in the subfolders of `root`, each named by `spec_of(folder)` (None: skipped)."""
    found = []
    for path in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        spec = spec_of(path)
        if spec is None:
            continue
        try:
            manifest = load_manifest(path, verify_hashes=False)
        except VoicePackError:
            continue
        found.append(_info(spec, manifest))
    return found


def manifest_of(spec: str, verify_hashes: bool = False) -> VoiceManifest:
    """The validated manifest of the pack `spec` names (a shipped voice or a folder); `VoicePackError` if bad."""
    with _shipped_pack_errors(spec):
        return load_manifest(pack_folder(spec), verify_hashes=verify_hashes)


def describe(spec: str, verify_hashes: bool = False) -> VoiceInfo:
    """Name and speakers of a spec without opening any session (`verify_hashes`: every file's sha256 too)."""
    if spec in (BUILTIN_DSP, "builtin"):
        return builtin_info()
    return _info(spec, manifest_of(spec, verify_hashes))


def _info(spec: str, manifest: VoiceManifest) -> VoiceInfo:
    return VoiceInfo(spec, manifest.name, manifest.speakers, frozenset(manifest.references),
                     manifest.notice is not None)


def frames(ms: float) -> int:
    """Milliseconds → whole mel frames at 24 kHz / hop 128 (rounded up: never less than asked)."""
    return int(math.ceil(ms * MODEL_RATE / 1000.0 / HOP - 1e-9))


def open_sessions(manifest: VoiceManifest, prefer: Sequence[str], threads: int = 1,
                  names: Sequence[str] | None = None) -> dict[str, RuntimeSession]:
    """One validated session per network of the pack (or per network in `names`)."""
    from engine.runtime import create_session

    sessions = {}
    for name, spec in manifest.networks.items():
        if names is not None and name not in names:
            continue
        path = manifest.path(name)
        model = read_verified(path, spec.sha256, spec.size)
        try:
            session = create_session(path, prefer=prefer, threads=threads, model=model)
        except Exception as exc:  # noqa: BLE001 - ORT raises several types for a bad file
            text = str(exc)
            if "external data" in text.lower():
                raise VoicePackError(f"{spec.file} refers to weights in other files, which a voice pack may not "
                                     "do (re-export the voice: every network must be one file)") from exc
            raise VoicePackError(f"{spec.file} is not a valid ONNX model (corrupt or truncated): "
                                 f"{_first_line(text)}") from exc
        del model
        _check_io(spec.file, "input", spec.inputs, session.session.get_inputs())
        _check_io(spec.file, "output", spec.outputs, session.session.get_outputs())
        sessions[name] = session
    _check_engine_inputs(manifest, sessions)
    return sessions


def _first_line(text: str, limit: int = 300) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[:limit] + "…"


def _check_engine_inputs(manifest: VoiceManifest, opened: Iterable[str]) -> None:
    """Every opened network takes what the engine will feed it (names; the vocoder's harmonic count).

    Called once the manifest's tensors are known to match the graphs'."""
    opened = set(opened)
    for name, spec in manifest.networks.items():
        if name not in opened:
            continue
        have = [t.name for t in spec.inputs]
        missing = [n for n in ENGINE_INPUTS[name] if n not in have]
        if missing:
            raise VoicePackError(f"{spec.file} lacks the input(s) {', '.join(missing)} the engine feeds a {name} "
                                 f"network (it has {', '.join(have)})")
    if "vocoder" not in opened:
        return
    phase = next(t for t in manifest.networks["vocoder"].inputs if t.name == "phase")
    harmonics = phase.shape[-1] if phase.shape else None
    if not isinstance(harmonics, int) or not 1 <= harmonics <= MAX_HARMONICS:
        raise VoicePackError(f"{manifest.networks['vocoder'].file} input 'phase' must end in a fixed number of "
                             f"harmonics (1..{MAX_HARMONICS}), the manifest says {phase.shape}")


def open_neural_core(manifest: VoiceManifest, settings: Settings, prefer: Sequence[str] = ("cpu",),
                     threads: int = 1, stateful: bool | None = None) -> VoiceCore:
    """The stateful core when the pack has stateful graphs (or `stateful` says so), else the
    windowed `NeuralCore`; each opens only the sessions it runs."""
    from engine.neural_core import NeuralCore
    from engine.stateful_core import StatefulCore

    if stateful is None:
        stateful = bool(manifest.stateful)
    if stateful:
        content = "content_stateful" if "content_stateful" in manifest.stateful else "content"
        sessions = open_sessions(manifest, prefer, threads,
                                 names=(content, "pitch", "decoder_stateful", "vocoder_stateful"))
        return StatefulCore(manifest, sessions, lookahead_frames=frames(settings.lookahead_ms),
                            context_ms=settings.context_ms, pitch=settings.pitch, speaker=settings.speaker)
    sessions = open_sessions(manifest, prefer, threads, names=("content", "pitch", "decoder", "vocoder"))
    return NeuralCore(manifest, sessions, lookahead_frames=frames(settings.lookahead_ms),
                      crossfade_frames=frames(settings.crossfade_ms), context_ms=settings.context_ms,
                      pitch=settings.pitch, speaker=settings.speaker)


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
    with _shipped_pack_errors(spec):
        return _load_pack(load_manifest(pack_folder(spec), verify_hashes=False), settings, prefer, threads)


def _load_pack(manifest: VoiceManifest, settings: Settings, prefer: Sequence[str], threads: int) -> VoiceCore:
    """`load_voice` of a pack whose manifest was read without hashes (open_sessions hashes the bytes it loads)."""
    if settings.speaker not in manifest.speakers.values():
        raise VoicePackError(f"speaker {settings.speaker} does not exist in voice {manifest.name!r} "
                             f"(it has {', '.join(f'{k}={v}' for k, v in manifest.speakers.items())})")
    try:
        core = open_neural_core(manifest, settings, prefer, threads)
        smoke_run(core, settings, max(manifest.speakers.values()))
    except VoicePackError:
        raise
    except Exception as exc:  # noqa: BLE001 - ORT shape errors, sizes that do not fit: the pack is at fault
        raise VoicePackError(f"voice {manifest.name!r} failed its test run with the live block size "
                             f"({type(exc).__name__}: {_first_line(str(exc))}); the pack does not match "
                             "this engine — re-export it") from exc
    return core


def smoke_run(core: VoiceCore, settings: Settings, top_speaker: int) -> None:
    """Run every network with the shapes live blocks will have, then reset.

    Warm-up too (a TensorRT engine is built per input shape range): the first block is larger (it
    fills the context), then blocks of the live size; the last block uses the highest speaker id so
    a speaker table smaller than the manifest claims fails here, not on air.
    """
    import numpy as np

    block = max(HOP, int(round(settings.block_ms * MODEL_RATE / 1000)))
    for size in (MODEL_RATE // 4, block, block):
        core.process(np.zeros(size, dtype=np.float32))
    core.set_speaker(top_speaker)
    core.process(np.zeros(block, dtype=np.float32))
    core.set_speaker(settings.speaker)
    core.reset()
