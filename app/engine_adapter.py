"""The app's only door into engine/: devices, voices, voice packs, virtual cables, the session.

Every other app module reaches the engine through this one (a test checks it): the bridge calls an
`EngineAdapter` (tests replace it with a fake), panels see only `app.values`, and the engine's
objects are translated into those values here (`latency_view`, `readouts_from_stats`). Engine
modules are imported inside the methods, so the window opens fast and even when the engine cannot
load (no PortAudio, no onnxruntime); `Settings`, `LIVE_SAFE`, the safe writers (`engine.safe_write`)
and `engine.voices` (voice specs and listings; it loads numpy and onnxruntime only to open a voice)
are plain and come at once.
"""
from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from app.values import SILENCE_DB, DeviceInfo, LatencyRow, LatencyView, LATENCY_PARTS, Readouts, VoiceInfo
from engine.safe_write import OutputError, fsync_tree, write_bytes, write_text
from engine.settings import LIVE_SAFE, Settings
from engine import voices
from engine.voicepack import MANIFEST_NAME, unlisted_paths
from engine.voices import BUILTIN_DSP

if TYPE_CHECKING:
    from engine.latency import LatencyBreakdown
    from engine.session import LiveStats, SessionConfig

__all__ = ["BUILTIN_DSP", "LIVE_SAFE", "MANIFEST_NAME", "EngineAdapter", "OutputError", "Session", "Settings", "latency_view", "readouts_from_stats",
           "default_voice", "fsync_tree", "unlisted_paths", "write_bytes", "write_text"]


def default_voice() -> str:
    """The voice of a fresh install: the engine's `DEFAULT_VOICE` (read when asked, so it has one home)."""
    return voices.DEFAULT_VOICE


class Session(Protocol):
    """What the bridge uses of `engine.session.LiveSession` (tests pass fakes of this shape).

    `on_state(state, message)` is called from any thread; `stats()` is cheap and thread-safe; the
    other calls block (load a voice, open devices) and only ever run on the bridge's job thread.
    """

    on_state: Callable[[str, str], None] | None

    @property
    def running(self) -> bool: ...

    def estimate_latency(self, cfg: SessionConfig) -> LatencyBreakdown: ...

    def start(self, cfg: SessionConfig) -> None: ...

    def stop(self) -> None: ...

    def update(self, **changes: Any) -> None: ...

    def stats(self) -> LiveStats: ...


class EngineAdapter:
    """Everything the app needs from engine/. Subclass or duck-type it for tests.

    `backend`: an `engine.audio.streams` backend (e.g. `SimulatedBackend` for demos and tests); None =
    the real sound system through PortAudio.
    """

    _preview: Any = None   # engine.audio.preview.PreviewPlayer, made on the first preview

    def __init__(self, backend: Any = None) -> None:
        self.backend = backend

    def list_devices(self) -> list[DeviceInfo]:
        from engine.audio import devices, virtual_cable

        found = list(self.backend.devices()) if self.backend is not None else devices.list_devices(include_pulse=True)
        virtual = {(d.name, d.hostapi) for d in virtual_cable.find_virtual_devices(found)}
        suggested = virtual_cable.suggest_output(found)
        return [
            DeviceInfo(**{f.name: getattr(d, f.name) for f in fields(devices.DeviceInfo)},
                       is_virtual=(d.name, d.hostapi) in virtual,
                       is_suggested_output=suggested is not None and (d.name, d.hostapi) == (suggested.name,
                                                                                              suggested.hostapi))
            for d in found
        ]

    def rescan_devices(self) -> None:
        """Make PortAudio see devices plugged in since it started (only with no stream open)."""
        if self.backend is not None:
            self.backend.refresh()
            return
        from engine.audio import devices

        devices.refresh()

    def make_session(self) -> Session:
        from engine.session import LiveSession

        return LiveSession(backend=self.backend)

    def make_session_config(self, **kwargs: Any) -> SessionConfig:
        from engine.session import SessionConfig

        return SessionConfig(**kwargs)

    def voice_info(self, spec: str, verify: bool = True) -> VoiceInfo:
        """Validate a voice; raises with a user-readable message (VoicePackError) when it is bad.

        verify=True also checks every file's sha256 (a user just picked it); False is the quick
        check used when listing and restoring (the session verifies again when it loads the pack).
        """
        return _voice_info(voices.describe(spec, verify_hashes=verify))

    def installed_voices(self) -> list[VoiceInfo]:
        """Built-in voice first, then the valid packs shipped with the program, then those in the voices folder."""
        return [_voice_info(info) for info in voices.list_installed()]

    def open_converter(self, spec: str, settings: Settings, rate: int) -> tuple[str, Any]:
        """(the voice's name, an `engine.converter.Converter` of `spec` at `rate` Hz): the object live
        audio runs, for converting offline (the self-test). Raises `VoicePackError` for a bad voice."""
        from engine.converter import Converter

        return voices.describe(spec).name, Converter(lambda s: voices.load_voice(spec, s), settings, rate)

    def validate_pack(self, folder: Path) -> set[str]:
        """Raise when `folder` is not a valid pack; return the names of the files it consists of."""
        from engine.voicepack import load_manifest

        return load_manifest(folder, verify_hashes=True).files()

    def play_preview(self, spec: str, speaker: str, device: int | str | None) -> str:
        """Play the preview clip of `speaker` in the pack `spec` once on the output `device` (None = the
        default), cutting any preview still playing; returns the device's name. Blocks while the device
        opens (job thread only). Raises `VoicePackError` (no such clip, a bad one) or `DeviceError`."""
        from engine.audio.preview import PreviewPlayer
        from engine.audio.streams import SoundDeviceBackend
        from engine.reference import load_reference
        from engine.voicepack import VoicePackError

        def clip_at(rate: int) -> Any:
            clip = load_reference(voices.pack_folder(spec), speaker, rate)
            if clip is None:
                raise VoicePackError(f"this voice has no preview clip for {speaker!r}")
            return clip

        if self._preview is None:
            self._preview = PreviewPlayer(self.backend if self.backend is not None else SoundDeviceBackend())
        return self._preview.play(device, clip_at)

    def read_notice(self, spec: str) -> str:
        """The text of the pack's SOURCES.md (its sources and licences), checked against its manifest.
        Raises `VoicePackError` (none, a bad one)."""
        from engine.voicepack import VoicePackError, read_notice

        text = read_notice(spec)
        if text is None:
            raise VoicePackError("this voice does not name its sources and licences")
        return text

    def stop_preview(self) -> None:
        """Cut the preview playing, if any."""
        if self._preview is not None:
            self._preview.stop()

    def voices_dir(self) -> Path:
        return voices.voices_dir()

    def virtual_mic_support(self) -> tuple[bool, str]:
        """(can create/remove a virtual mic here, reason when not)."""
        if not sys.platform.startswith("linux"):
            return False, ("Creating a virtual mic from the app works on Linux (PulseAudio/PipeWire) only. "
                           "On Windows install VB-Cable, on macOS BlackHole, then pick it as Output.")
        from engine.audio import virtual_cable

        return virtual_cable.can_create_virtual_mic()

    def create_virtual_mic(self) -> str:
        from engine.audio import virtual_cable

        return virtual_cable.create_virtual_mic()

    def remove_virtual_mic(self) -> str:
        from engine.audio import virtual_cable

        return virtual_cable.remove_virtual_mic()


def _voice_info(info: voices.VoiceInfo) -> VoiceInfo:
    """engine.voices.VoiceInfo (speakers as a name->id dict) -> the app's VoiceInfo."""
    speakers = tuple((str(name), int(sid)) for name, sid in sorted(info.speakers.items(), key=lambda item: item[1]))
    return VoiceInfo(spec=str(info.spec), name=str(info.name), speakers=speakers,
                     builtin=str(info.spec) == BUILTIN_DSP, shipped=voices.is_bundled(str(info.spec)),
                     previews=frozenset(str(name) for name in info.references), has_notice=bool(info.notice))


def latency_view(breakdown: LatencyBreakdown, measured: bool = False) -> LatencyView:
    """Turn an `engine.latency.LatencyBreakdown` (samples at the device rate) into rows in ms."""
    rows = tuple(LatencyRow(label, float(breakdown.ms(name)), tip) for name, label, tip in LATENCY_PARTS)
    return LatencyView(rows=rows, total_ms=float(breakdown.total_ms), measured=measured)


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def readouts_from_stats(stats: LiveStats) -> Readouts:
    """Turn an `engine.session.LiveStats` snapshot into `Readouts`."""
    return Readouts(
        state=str(stats.state),
        message=str(stats.error or ""),
        latency=latency_view(stats.latency, measured=True) if stats.latency is not None else None,
        compute_p50_ms=_finite(stats.compute_p50_ms),
        compute_p99_ms=_finite(stats.compute_p99_ms),
        block_budget_ms=_finite(stats.block_budget_ms),
        budget_auto=bool(stats.budget_auto),
        budget_note=str(stats.budget_note or ""),
        underruns=int(stats.underruns),
        queue_depth=int(stats.queue_depth),
        provider=str(stats.provider or ""),
        provider_note=str(stats.provider_note or ""),
        input_db=_finite(stats.input_level_db) or SILENCE_DB,
        output_db=_finite(stats.output_level_db) or SILENCE_DB,
        blocks=int(stats.blocks_processed),
        recording=tuple(str(p) for p in (stats.recording_paths or ())),
        device_xruns=int(stats.device_xruns),
        xruns_text=stats.xruns.describe(),
        latency_steps=tuple(str(step) for step in stats.latency_steps),
        waiting_for=str(stats.waiting_for) if stats.waiting_for else None,
        reconnects=int(stats.reconnects),
        sample_rate=int(stats.sample_rate) if stats.sample_rate else None,
        notes=tuple(str(n) for n in stats.notes),
    )
