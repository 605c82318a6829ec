"""The app's one door to the engine: a QObject that owns the LiveSession and emits signals.

Friture's model: the audio backend is a QObject, widgets observe its signals, the audio thread never
touches a widget. Here:

- `EngineAdapter` is the only code that imports engine modules (devices, voices, voice packs,
  virtual cables, the LiveSession). Tests replace it with a fake; the lead's integration test passes
  a real `LiveSession` instance.
- `AudioBridge` keeps the user's `AppConfig`, resolves devices by (name, host API), runs every
  blocking session call (start, stop, restart, update) on one worker thread in order, and turns the
  session's any-thread `on_state` callbacks into queued Qt signals. A QTimer in the GUI thread polls
  `session.stats()` (cheap, thread-safe) 20 times a second and emits `readoutsUpdated` with a plain
  `Readouts` value, so panels never see engine types.
"""
from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from PyQt6.QtCore import QObject, QTimer, pyqtSignal, pyqtSlot

from app.settings_store import BUILTIN_VOICE, AppConfig, DeviceRef
from app.voice_import import VoiceImportError, clean_stale_imports, import_voice_zip
from engine.devices import DeviceInfo as EngineDeviceInfo
from engine.settings import LIVE_SAFE

#: Readout polling period. 50 ms = 20 updates/s: meters look fluid, cost is negligible.
POLL_MS = 50
ESTIMATE_DELAY_MS = 120  # coalesce slider drags into one estimate
SILENCE_DB = -120.0


# --- plain values the panels consume ----------------------------------------------------------------
@dataclass(frozen=True)
class DeviceInfo(EngineDeviceInfo):
    """One audio device as listed to the user: the engine's description plus what the app marks."""

    is_virtual: bool = False       # a virtual cable end (VB-Cable, BlackHole, PulseAudio null sink…)
    is_suggested_output: bool = False  # the cable side to play into (engine.virtual_cable.suggest_output)

    @property
    def ref(self) -> DeviceRef:
        return DeviceRef(self.name, self.hostapi)

    @property
    def session_spec(self) -> int | str:
        """What SessionConfig gets: the PortAudio index, or the name for `pulse:NAME` entries (index -1)."""
        return self.index if self.index >= 0 else self.name


@dataclass(frozen=True)
class VoiceInfo:
    """A voice the user can pick. `speakers` are (name, id) in the pack's order."""

    spec: str
    name: str
    speakers: tuple[tuple[str, int], ...]
    builtin: bool = False


@dataclass(frozen=True)
class LatencyRow:
    label: str
    ms: float
    tip: str


@dataclass(frozen=True)
class LatencyView:
    """End-to-end latency, decomposed. `measured` = includes latencies the devices reported."""

    rows: tuple[LatencyRow, ...]
    total_ms: float
    measured: bool = False


@dataclass(frozen=True)
class Readouts:
    """One snapshot of the running session, in display units."""

    state: str
    message: str = ""
    latency: LatencyView | None = None
    compute_p50_ms: float | None = None
    compute_p99_ms: float | None = None
    block_budget_ms: float | None = None
    underruns: int = 0
    queue_depth: int = 0
    provider: str = ""
    provider_note: str = ""
    input_db: float = SILENCE_DB
    output_db: float = SILENCE_DB
    blocks: int = 0
    recording: tuple[str, ...] = ()
    device_xruns: int = 0          # over/underflows the driver reported (vs. `underruns`: late blocks)
    sample_rate: int | None = None
    notes: tuple[str, ...] = ()    # e.g. "the monitor is the output device; ignored"


IDLE = Readouts(state="stopped")

# engine.latency.LatencyBreakdown part -> (label, tooltip). Order = the path the sound takes.
LATENCY_PARTS: tuple[tuple[str, str, str], ...] = (
    ("input_buffer", "Input buffer", "Audio waiting in the sound card / driver before we get it."),
    ("block", "Block", "We convert one block at a time: the first sample of a block waits for the last."),
    ("lookahead", "Lookahead", "Future audio the model hears for better quality; costs exactly this much delay."),
    ("crossfade", "Crossfade", "Overlap used to join blocks without clicks."),
    ("resampling", "Resampling", "Converting between the device rate and the model's 24 kHz (filter delay)."),
    ("core", "Voice pre-roll", "Fixed delay inside the voice itself (e.g. the vocoder's warm-up frames)."),
    ("compute_margin", "Compute budget", "Time allowed to convert each block (plus one driver callback) before it "
                                         "must play; a block that takes longer causes a dropout."),
    ("output_buffer", "Output buffer", "Audio queued in the output driver before it reaches your ears."),
)


# --- the engine, behind one adapter ------------------------------------------------------------------
class EngineAdapter:
    """Everything the app needs from engine/. Subclass or duck-type it for tests.

    `backend`: an `engine.audio_io` backend (e.g. `SimulatedBackend` for demos and tests); None =
    the real sound system through PortAudio.
    """

    def __init__(self, backend: Any = None) -> None:
        self.backend = backend

    def list_devices(self) -> list[DeviceInfo]:
        from engine import devices, virtual_cable

        if self.backend is not None:
            found = list(self.backend.devices())
        else:
            found = devices.list_devices()
            if any(d.name == "pulse" for d in found):
                # Linux: PortAudio reaches PulseAudio/PipeWire sinks (null sinks = virtual cables)
                # only through the ALSA "pulse" device; list them by name so they can be picked.
                found += virtual_cable.pulse_devices()
        virtual = {(d.name, d.hostapi) for d in virtual_cable.find_virtual_devices(found)}
        suggested = virtual_cable.suggest_output(found)
        return [
            DeviceInfo(**{f.name: getattr(d, f.name) for f in fields(EngineDeviceInfo)},
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
        from engine import devices

        devices.refresh()

    def make_session(self) -> Any:
        from engine.session import LiveSession

        return LiveSession(backend=self.backend)

    def make_session_config(self, **kwargs: Any) -> Any:
        from engine.session import SessionConfig

        return SessionConfig(**kwargs)

    def voice_info(self, spec: str, verify: bool = True) -> VoiceInfo:
        """Validate a voice; raises with a user-readable message (VoicePackError) when it is bad.

        verify=True also checks every file's sha256 (a user just picked it); False is the quick
        check used when listing and restoring (the session verifies again when it loads the pack).
        """
        from engine import voices

        if spec != voices.BUILTIN_DSP and verify:
            self.validate_pack(Path(spec))
        return _voice_info(voices.describe(spec))

    def installed_voices(self) -> list[VoiceInfo]:
        """Built-in voice first, then the valid packs in the voices folder."""
        from engine import voices

        return [_voice_info(info) for info in voices.list_installed()]

    def validate_pack(self, folder: Path) -> set[str]:
        """Raise when `folder` is not a valid pack; return the names of the files it consists of."""
        from engine.voicepack import load_manifest

        return load_manifest(folder, verify_hashes=True).files()

    def voices_dir(self) -> Path:
        from engine import voices

        return voices.voices_dir()

    def virtual_mic_support(self) -> tuple[bool, str]:
        """(can create/remove a virtual mic here, reason when not)."""
        if not sys.platform.startswith("linux"):
            return False, ("Creating a virtual mic from the app works on Linux (PulseAudio/PipeWire) only. "
                           "On Windows install VB-Cable, on macOS BlackHole, then pick it as Output.")
        from engine import virtual_cable

        return virtual_cable.can_create_virtual_mic()

    def create_virtual_mic(self) -> str:
        from engine import virtual_cable

        return virtual_cable.create_virtual_mic()

    def remove_virtual_mic(self) -> str:
        from engine import virtual_cable

        return virtual_cable.remove_virtual_mic()


def _voice_info(info: Any) -> VoiceInfo:
    """engine.voices.VoiceInfo (speakers as a name->id dict) -> the app's VoiceInfo."""
    speakers = tuple((str(name), int(sid)) for name, sid in sorted(info.speakers.items(), key=lambda item: item[1]))
    return VoiceInfo(spec=str(info.spec), name=str(info.name), speakers=speakers,
                     builtin=str(info.spec) == BUILTIN_VOICE)


def latency_view(breakdown: Any, measured: bool = False) -> LatencyView:
    """Turn an `engine.latency.LatencyBreakdown` (samples at the device rate) into rows in ms."""
    rows = tuple(LatencyRow(label, float(breakdown.ms(name)), tip) for name, label, tip in LATENCY_PARTS)
    return LatencyView(rows=rows, total_ms=float(breakdown.total_ms), measured=measured)


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def readouts_from_stats(stats: Any) -> Readouts:
    """Turn an `engine.session.LiveStats` snapshot into `Readouts`."""
    return Readouts(
        state=str(stats.state),
        message=str(stats.error or ""),
        latency=latency_view(stats.latency, measured=True) if stats.latency is not None else None,
        compute_p50_ms=_finite(stats.compute_p50_ms),
        compute_p99_ms=_finite(stats.compute_p99_ms),
        block_budget_ms=_finite(stats.block_budget_ms),
        underruns=int(stats.underruns),
        queue_depth=int(stats.queue_depth),
        provider=str(stats.provider or ""),
        provider_note=str(stats.provider_note or ""),
        input_db=_finite(stats.input_level_db) or SILENCE_DB,
        output_db=_finite(stats.output_level_db) or SILENCE_DB,
        blocks=int(stats.blocks_processed),
        recording=tuple(str(p) for p in (stats.recording_paths or ())),
        device_xruns=int(stats.device_xruns),
        sample_rate=int(stats.sample_rate) if stats.sample_rate else None,
        notes=tuple(str(n) for n in stats.notes),
    )


# --- the bridge ---------------------------------------------------------------------------------------
@dataclass
class _Resolved:
    """A SessionConfig and the warnings produced while resolving device names."""

    config: Any
    warnings: list[str] = field(default_factory=list)


class AudioBridge(QObject):
    """Owns the session; the GUI calls methods, listens to signals. Methods are GUI-thread only."""

    stateChanged = pyqtSignal(str, str)          # state, message
    readoutsUpdated = pyqtSignal(object)         # Readouts
    latencyEstimated = pyqtSignal(object, str)   # LatencyView | None, error text
    devicesChanged = pyqtSignal(object)          # list[DeviceInfo]
    configChanged = pyqtSignal(object)           # AppConfig
    voiceChanged = pyqtSignal(object)            # VoiceInfo
    voicesListed = pyqtSignal(object)            # list[VoiceInfo] (installed + current)
    message = pyqtSignal(str, str)               # level ("info" | "warning" | "error"), text

    _engineState = pyqtSignal(str, str)          # from any thread -> queued to the GUI thread
    _jobDone = pyqtSignal(object, object)          # GUI-thread callback, its argument

    def __init__(self, config: AppConfig | None = None, session: Any = None,
                 engine: EngineAdapter | None = None, poll_ms: int = POLL_MS,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.engine = engine or EngineAdapter()
        self._config = config or AppConfig()
        self._session = session            # created lazily so the window opens even if the engine can't
        self._devices: list[DeviceInfo] = []
        self._voice = VoiceInfo(BUILTIN_VOICE, "Built-in voice", (("Default", 0),), builtin=True)
        self._state = "stopped"
        self._recording = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="como-session")
        self._engineState.connect(self._on_engine_state)
        self._jobDone.connect(self._on_job_done)
        self._timer = QTimer(self)
        self._timer.setInterval(poll_ms)
        self._timer.timeout.connect(self.poll)
        self._estimate_timer = QTimer(self)
        self._estimate_timer.setSingleShot(True)
        self._estimate_timer.setInterval(ESTIMATE_DELAY_MS)
        self._estimate_timer.timeout.connect(self._run_estimate)
        self._estimate_generation = 0
        self._closed = False
        if session is not None:
            self._attach(session)

    # -- properties ---------------------------------------------------------------------------------
    @property
    def config(self) -> AppConfig:
        return self._config

    @property
    def devices(self) -> list[DeviceInfo]:
        return list(self._devices)

    @property
    def voice(self) -> VoiceInfo:
        return self._voice

    @property
    def state(self) -> str:
        return self._state

    @property
    def running(self) -> bool:
        return self._state in ("starting", "running")

    @property
    def recording(self) -> bool:
        return self._recording

    @property
    def session(self) -> Any:
        if self._session is None:
            self._attach(self.engine.make_session())
        return self._session

    def _attach(self, session: Any) -> None:
        self._session = session
        # Called from the audio/worker thread: only emit a signal (queued to the GUI thread).
        session.on_state = lambda state, message="": self._engineState.emit(str(state), str(message or ""))

    # -- startup --------------------------------------------------------------------------------------
    def initialize(self) -> None:
        """List devices and voices and restore the saved voice; emits everything the panels need."""
        self.refresh_devices(rescan=False)  # PortAudio has just started: it sees every device
        clean_stale_imports(self.engine.voices_dir())  # left by an import that was killed
        self.refresh_voices()
        spec = self._config.voice
        try:
            self._voice = self.engine.voice_info(spec, verify=False)
        except Exception as exc:
            self._warn_voice_fallback(spec, exc)
        else:
            self._clamp_speaker()
        self.configChanged.emit(self._config)
        self.voiceChanged.emit(self._voice)
        self.estimate_latency()

    def _warn_voice_fallback(self, spec: str, exc: Exception) -> None:
        self._config = replace(self._config, voice=BUILTIN_VOICE)
        self._voice = self.engine.voice_info(BUILTIN_VOICE)
        self.message.emit("warning", f"Saved voice could not be loaded ({exc}); using the built-in voice.")

    # -- devices --------------------------------------------------------------------------------------
    def refresh_devices(self, rescan: bool = True) -> list[DeviceInfo]:
        """Re-list devices; a chosen device that vanished falls back to the default with a message.

        rescan=True also restarts PortAudio so it sees newly plugged devices; that is done on the
        session thread (never under an open stream, never beside an estimate in progress).
        """
        try:
            if rescan and self._state in ("stopped", "error") and not self._closed:
                self._executor.submit(self.engine.rescan_devices).result(timeout=30)
            self._devices = self.engine.list_devices()
        except Exception as exc:
            self._devices = []
            self.message.emit("error", f"Could not list audio devices: {exc}")
        changes: dict[str, Any] = {}
        for key, wants_input in (("input_device", True), ("output_device", False), ("monitor_device", False)):
            ref = getattr(self._config, key)
            if ref is not None and self._find(ref, wants_input) is None:
                changes[key] = None
                default = self._default_device(wants_input)
                fallback = "nothing (monitor off)" if key == "monitor_device" else (
                    f"the default '{default.name}'" if default else "the system default")
                what = key.replace("_device", "")
                self.message.emit("warning", f"Saved {what} device '{ref.label()}' is not connected; using {fallback}.")
        if changes:
            self._config = replace(self._config, **changes)
            self.configChanged.emit(self._config)
            self.estimate_latency()
        self.devicesChanged.emit(list(self._devices))
        return list(self._devices)

    def _find(self, ref: DeviceRef, wants_input: bool) -> DeviceInfo | None:
        for device in self._devices:
            channels = device.max_input_channels if wants_input else device.max_output_channels
            if device.name == ref.name and device.hostapi == ref.hostapi and channels > 0:
                return device
        return None

    def _default_device(self, wants_input: bool) -> DeviceInfo | None:
        for device in self._devices:
            if (device.is_default_input if wants_input else device.is_default_output):
                return device
        return None

    def suggested_output(self) -> DeviceInfo | None:
        """The virtual cable to send the converted voice to (Discord/OBS pick its other end)."""
        cables = [d for d in self._devices if d.is_virtual and d.max_output_channels > 0]
        cables.sort(key=lambda d: not d.is_suggested_output)
        return cables[0] if cables else None

    def set_device(self, role: str, ref: DeviceRef | None) -> None:
        """role: 'input' | 'output' | 'monitor'. None = system default (monitor: off)."""
        if role not in ("input", "output", "monitor"):
            raise ValueError(f"unknown device role {role!r}")
        self._update_config(**{f"{role}_device": ref})

    def set_sample_rate(self, rate: int | None) -> None:
        self._update_config(sample_rate=rate)

    def set_input_channel(self, channel: int) -> None:
        self._update_config(input_channel=int(channel))

    def set_record_dir(self, folder: str | None) -> None:
        self._config = replace(self._config, record_dir=folder)
        self.configChanged.emit(self._config)

    def _update_config(self, **changes: Any) -> None:
        if all(getattr(self._config, k) == v for k, v in changes.items()):
            return
        self._config = replace(self._config, **changes)
        self.configChanged.emit(self._config)
        self.estimate_latency()
        if self.running:
            self.message.emit("info", "Audio settings changed: restarting the session…")
            self.restart()

    # -- voice ----------------------------------------------------------------------------------------
    def refresh_voices(self) -> list[VoiceInfo]:
        """Built-in + valid packs in the user voices folder (+ the current one if it lives elsewhere)."""
        try:
            voices = self.engine.installed_voices()
        except Exception as exc:
            voices = [self.engine.voice_info(BUILTIN_VOICE)]
            self.message.emit("warning", f"Could not list installed voices: {exc}")
        if all(v.spec != self._voice.spec for v in voices):
            voices.append(self._voice)
        self.voicesListed.emit(voices)
        return voices

    def set_voice(self, spec: str) -> bool:
        """Validate and select a voice. On a bad pack: error message, previous voice kept."""
        try:
            info = self.engine.voice_info(spec, verify=True)
        except Exception as exc:
            self.message.emit("error", f"Voice pack refused: {exc}")
            self.voiceChanged.emit(self._voice)  # let the picker snap back to the voice in use
            return False
        self._voice = info
        self._config = replace(self._config, voice=info.spec)
        self._clamp_speaker()
        self.configChanged.emit(self._config)
        self.voiceChanged.emit(info)
        self.message.emit("info", f"Voice: {info.name}")
        if self.running:
            self.restart()
        else:
            self.estimate_latency()  # every voice has its own delay
        return True

    def _clamp_speaker(self) -> None:
        ids = [sid for _, sid in self._voice.speakers]
        if ids and self._config.settings.speaker not in ids:
            self._config = self._config.with_settings(speaker=ids[0])

    def import_voice(self, zip_path: str) -> bool:
        """Install a .zip into the voices folder and select it. Errors go to `message`."""
        try:
            folder = import_voice_zip(zip_path, self.engine.voices_dir(), validate=self.engine.validate_pack)
        except VoiceImportError as exc:
            self.message.emit("error", f"Import refused: {exc}")
            return False
        self.message.emit("info", f"Imported voice into {folder}")
        self.refresh_voices()
        return self.set_voice(str(folder))

    def next_speaker(self) -> None:
        ids = [sid for _, sid in self._voice.speakers]
        if len(ids) < 2:
            self.message.emit("info", "This voice has one speaker.")
            return
        current = self._config.settings.speaker
        following = ids[(ids.index(current) + 1) % len(ids)] if current in ids else ids[0]
        self.set_settings(speaker=following)

    # -- settings ---------------------------------------------------------------------------------------
    def set_settings(self, **changes: Any) -> bool:
        """Validate and apply converter settings; live-safe ones reach the running session at once."""
        changes = {k: v for k, v in changes.items() if getattr(self._config.settings, k, object()) != v}
        if not changes:
            return True
        try:
            config = self._config.with_settings(**changes)
        except ValueError as exc:
            self.message.emit("error", str(exc))
            self.configChanged.emit(self._config)  # widgets snap back to the valid value
            return False
        self._config = config
        self.configChanged.emit(config)
        if not set(changes) <= LIVE_SAFE:
            self.estimate_latency()
        if self.running:
            session = self.session
            self._submit(lambda: session.update(**changes), None, "Could not apply the change", fatal=False)
        return True

    def nudge_pitch(self, step: float) -> None:
        pitch = max(-24.0, min(24.0, self._config.settings.pitch + step))
        self.set_settings(pitch=pitch)

    def toggle_bypass(self) -> None:
        self.set_settings(bypass=not self._config.settings.bypass)

    # -- latency --------------------------------------------------------------------------------------
    def estimate_latency(self) -> None:
        """Schedule an estimate for the current choices; `latencyEstimated` carries the result.

        Debounced (slider drags) and run on the session thread: the engine loads the voice to know
        its exact delay, which takes seconds for a voice pack. Skipped while running (the readouts
        then show the measured delay).
        """
        if not self.running and not self._closed:
            self._estimate_timer.start()

    def _run_estimate(self) -> None:
        if self.running or self._state == "stopping":
            return
        try:
            config = self.resolve().config
            session = self.session
        except Exception as exc:
            self.latencyEstimated.emit(None, f"Delay unknown: {exc}")
            return
        self._estimate_generation += 1
        generation = self._estimate_generation

        def done(breakdown: Any) -> None:
            if generation == self._estimate_generation:  # drop answers to superseded questions
                self.latencyEstimated.emit(latency_view(breakdown), "")

        def failed(exc: Exception) -> None:
            if generation == self._estimate_generation:
                self.latencyEstimated.emit(None, f"Delay unknown: {exc}")

        self._submit(lambda: session.estimate_latency(config), done, on_error=failed)

    # -- session ---------------------------------------------------------------------------------------
    def resolve(self) -> _Resolved:
        """Build the engine SessionConfig: device refs -> indices (missing -> default + warning)."""
        warnings: list[str] = []
        indices: dict[str, int | str | None] = {}
        for role, wants_input in (("input", True), ("output", False), ("monitor", False)):
            ref: DeviceRef | None = getattr(self._config, f"{role}_device")
            device = self._find(ref, wants_input) if ref is not None else None
            if ref is not None and device is None:
                warnings.append(f"{role.capitalize()} device '{ref.label()}' is not connected; using the default.")
            indices[role] = device.session_spec if device is not None else None
        config = self.engine.make_session_config(
            input_device=indices["input"], output_device=indices["output"], monitor_device=indices["monitor"],
            sample_rate=self._config.sample_rate, input_channel=self._config.input_channel,
            voice=self._config.voice, settings=self._config.settings,
            record_dir=self._config.record_dir if self._recording else None,
        )
        return _Resolved(config, warnings)

    def session_config(self) -> Any:
        """The SessionConfig the next start will use."""
        return self.resolve().config

    def start(self) -> None:
        if self.running or self._state == "stopping":
            return
        try:
            resolved = self.resolve()
            session = self.session
        except Exception as exc:
            self._set_state("error", f"Could not prepare the session: {exc}")
            return
        for warning in resolved.warnings:
            self.message.emit("warning", warning)
        self._set_state("starting", "Loading the voice and opening devices…")
        self._submit(lambda: session.start(resolved.config), self._after_start, "Could not start")

    def _after_start(self, _result: Any) -> None:
        running = bool(getattr(self._session, "running", True))
        if running and self._state == "starting":
            self._set_state("running", "")

    def stop(self) -> None:
        if self._session is None or self._state in ("stopped", "stopping"):
            return
        session = self._session
        self._set_state("stopping", "")
        self._submit(session.stop, lambda _: self._set_state("stopped", ""), "Could not stop cleanly")

    def toggle(self) -> None:
        if self.running:
            self.stop()
        else:
            self.start()

    def restart(self) -> None:
        """Stop and start with the current config (device, voice or record changes)."""
        session = self.session
        try:
            resolved = self.resolve()
        except Exception as exc:
            self._set_state("error", f"Could not prepare the session: {exc}")
            return
        self._set_state("starting", "Restarting…")

        def job() -> None:
            session.stop()
            session.start(resolved.config)

        self._submit(job, self._after_start, "Could not restart")

    def set_recording(self, on: bool) -> None:
        """Record input and output WAVs into `config.record_dir` (applied by restarting if running)."""
        if on and not self._config.record_dir:
            self.message.emit("error", "Choose a folder for recordings first.")
            return
        if on == self._recording:
            return
        self._recording = on
        self.message.emit("info", f"Recording {'on: ' + str(self._config.record_dir) if on else 'off'}")
        if self.running:
            self.restart()

    def poll(self) -> Readouts:
        """Timer slot (GUI thread): snapshot the session's stats and emit them."""
        if self._session is None:
            return IDLE
        try:
            readouts = readouts_from_stats(self._session.stats())
        except Exception as exc:  # a broken snapshot must not kill the timer
            readouts = Readouts(state=self._state, message=f"Readouts unavailable: {exc}")
        self.readoutsUpdated.emit(readouts)
        return readouts

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Stop audio and the worker thread (window close)."""
        self._closed = True
        self._timer.stop()
        self._estimate_timer.stop()
        if self._session is not None and self._state not in ("stopped",):
            future = self._executor.submit(self._session.stop)
            try:
                future.result(timeout=timeout_s)
            except Exception:
                pass  # closing anyway; the OS frees the devices with the process
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- virtual mic ----------------------------------------------------------------------------------
    def virtual_mic_support(self) -> tuple[bool, str]:
        try:
            return self.engine.virtual_mic_support()
        except Exception as exc:
            return False, f"Virtual mic unavailable: {exc}"

    def create_virtual_mic(self) -> None:
        """Create the Linux virtual mic and, if the output is still the default, play into it."""
        self._virtual_mic(self.engine.create_virtual_mic, "Could not create the virtual mic")
        cable = self.suggested_output()
        if cable is not None and self._config.output_device is None:
            self.set_device("output", cable.ref)

    def remove_virtual_mic(self) -> None:
        self._virtual_mic(self.engine.remove_virtual_mic, "Could not remove the virtual mic")

    def _virtual_mic(self, action: Callable[[], str], failure: str) -> None:
        try:
            text = action()
        except Exception as exc:
            self.message.emit("error", f"{failure}: {exc}")
            return
        self.message.emit("info", text)
        self.refresh_devices()

    # -- internals ------------------------------------------------------------------------------------
    def _submit(self, job: Callable[[], Any], on_done: Callable[[Any], None] | None = None,
                failure: str = "", fatal: bool = True,
                on_error: Callable[[Exception], None] | None = None) -> Future | None:
        """Run `job` on the session thread, in order; `on_done(result)` runs in the GUI thread.

        On an exception: `on_error(exc)` if given, else fatal=True puts the bridge in the "error"
        state (start/stop/restart) and fatal=False only reports it (a live update the session refused).
        """
        def run() -> None:
            try:
                result = job()
            except Exception as exc:  # reported in the GUI thread via the queued signal
                handler = on_error or (lambda error: self._failed(failure, error, fatal))
                self._jobDone.emit(handler, exc)
            else:
                self._jobDone.emit(on_done, result)

        if self._closed:
            return None  # the window is closing; nothing more reaches the session
        return self._executor.submit(run)

    def _failed(self, failure: str, exc: Exception, fatal: bool) -> None:
        if fatal and self._state == "error":
            return  # the session already reported this failure through on_state
        if fatal:
            self._set_state("error", f"{failure}: {exc}")
        else:
            self.message.emit("error", f"{failure}: {exc}")

    @pyqtSlot(object, object)
    def _on_job_done(self, callback: Any, result: Any) -> None:
        if callback is not None:
            callback(result)

    @pyqtSlot(str, str)
    def _on_engine_state(self, state: str, message: str) -> None:
        if state == "stopped" and self._state == "starting":
            return  # the stop half of a restart
        self._set_state(state, message)

    def _set_state(self, state: str, message: str) -> None:
        if state == self._state and not message:
            return
        self._state = state
        if state in ("stopped", "error"):
            self._timer.stop()
            self.poll()  # one last snapshot so the readouts show the final numbers
            self.estimate_latency()  # back to "what Start would give"
        elif state in ("starting", "running"):
            self._timer.start()
        if state == "error":
            self.message.emit("error", message or "The session stopped with an error.")
        self.stateChanged.emit(state, message)


def group_by_hostapi(devices: Iterable[DeviceInfo]) -> dict[str, list[DeviceInfo]]:
    """Devices per host API, host APIs in first-seen order (PortAudio lists the platform's best first)."""
    groups: dict[str, list[DeviceInfo]] = {}
    for device in devices:
        groups.setdefault(device.hostapi, []).append(device)
    return groups
