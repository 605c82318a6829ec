"""The app's bridge to the engine: a QObject that owns the LiveSession and emits signals.

Friture's model: the audio backend is a QObject, widgets observe its signals, the audio thread never
touches a widget. Here:

- `app.engine_adapter.EngineAdapter` is the only code that imports engine modules (devices, voices,
  voice packs, virtual cables, the LiveSession). Tests replace it with a fake; the lead's
  integration test passes a real `LiveSession` instance.
- `AudioBridge` keeps the user's `AppConfig`, resolves devices by (name, host API), runs every
  blocking engine call (start, stop, restart, update, estimates, device lists and rescans, voice
  checks and listings, voice imports, pactl) on one job thread in order (`app.jobs.JobRunner`) and
  hears back through queued signals: the GUI thread never waits on the engine. While a voice is
  being checked (`voiceLoading`) Start waits, so a session never starts with a voice not yet
  chosen. The session's any-thread `on_state` callbacks become queued Qt signals too. A QTimer in
  the GUI thread polls `session.stats()` (cheap, thread-safe) 20 times a second and emits
  `readoutsUpdated` with a plain `Readouts` value, so panels never see engine types.
- Voice previews (a pack's `reference/<speaker>.wav`) play on their own job thread, so a preview
  never waits behind a voice loading and a session start never waits behind a preview. They go to
  the monitor (headphones) when one is set, else to the output — but never to the output while a
  session is live (that is the virtual cable the audience hears): then no monitor means no preview,
  and the status bar says so.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from PyQt6.QtCore import QObject, QTimer, pyqtSignal, pyqtSlot

from app.engine_adapter import BUILTIN_DSP, LIVE_SAFE, EngineAdapter, Session, latency_view, readouts_from_stats
from app.jobs import JobRunner
from app.settings_store import AppConfig
from app.values import IDLE, DeviceInfo, DeviceRef, Readouts, VoiceInfo
from app.voice_import import VoiceImportError, clean_stale_imports, import_voice_zip

#: Readout polling period. 50 ms = 20 updates/s: meters look fluid, cost is negligible.
POLL_MS = 50
ESTIMATE_DELAY_MS = 120  # coalesce slider drags into one estimate


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
    voiceLoading = pyqtSignal(bool)              # a voice is being checked or imported (True) / done
    virtualMicSupport = pyqtSignal(bool, str)    # can create a virtual mic here, reason when not
    message = pyqtSignal(str, str)               # level ("info" | "warning" | "error"), text
    noticeRead = pyqtSignal(str, str)            # voice name, its SOURCES.md text

    _engineState = pyqtSignal(str, str)          # from any thread -> queued to the GUI thread

    def __init__(self, config: AppConfig | None = None, session: Session | None = None,
                 engine: EngineAdapter | None = None, poll_ms: int = POLL_MS,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.engine = engine or EngineAdapter()
        self._config = config or AppConfig()
        self._session: Session | None = session   # created lazily so the window opens even if the engine can't
        self._devices: list[DeviceInfo] = []
        self._voice = VoiceInfo(BUILTIN_DSP, "Built-in voice", (("Default", 0),), builtin=True)
        self._listed: list[VoiceInfo] = []
        self._voice_jobs = 0   # voice checks/imports submitted and not answered yet
        self._state = "stopped"
        self._recording = False
        self._jobs = JobRunner("como-session", parent=self)
        self._previews = JobRunner("como-preview", parent=self)
        self._engineState.connect(self._on_engine_state)
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
    def voice_loading(self) -> bool:
        return self._voice_jobs > 0

    @property
    def idle(self) -> bool:
        """No engine job queued or running (tests wait for this)."""
        return self._jobs.idle and self._previews.idle

    @property
    def running(self) -> bool:
        """A session is on: starting, running, or waiting for a device that went away."""
        return self._state in ("starting", "running", "waiting")

    @property
    def recording(self) -> bool:
        return self._recording

    @property
    def session(self) -> Session:
        if self._session is None:
            self._attach(self.engine.make_session())
        return self._session

    def _attach(self, session: Session) -> None:
        self._session = session
        # Called from the audio/worker thread: only emit a signal (queued to the GUI thread).
        session.on_state = lambda state, message="": self._engineState.emit(str(state), str(message or ""))

    # -- startup --------------------------------------------------------------------------------------
    def initialize(self, then: Callable[[], None] | None = None) -> None:
        """List devices and voices, restore the saved voice (or open the default; one that fails
        falls back to the built-in voice with a warning), check virtual-mic support: all on the job
        thread; each answer arrives as the signal the panels observe. `then()` runs once the device
        list is in."""
        self.refresh_devices(rescan=False, then=then)  # PortAudio has just started: it sees every device
        spec = self._config.voice

        def restore() -> tuple[VoiceInfo, Exception | None]:
            try:
                return self.engine.voice_info(spec, verify=False), None
            except Exception as exc:
                return self.engine.voice_info(BUILTIN_DSP), exc

        self._voice_job(restore, self._restored)
        self.refresh_voices(clean_up=True)
        self._jobs.submit(self.engine.virtual_mic_support, lambda answer: self.virtualMicSupport.emit(*answer),
                          lambda exc: self.virtualMicSupport.emit(False, f"Virtual mic unavailable: {exc}"))

    def _restored(self, answer: tuple[VoiceInfo, Exception | None]) -> None:
        self._voice, failure = answer
        if failure is not None:   # said, never silent: the built-in voice always loads
            self._config = replace(self._config, voice=BUILTIN_DSP)
            self.message.emit("warning", f"Voice could not be loaded ({failure}); using the built-in voice instead.")
        self._clamp_speaker()
        self.configChanged.emit(self._config)
        self.voiceChanged.emit(self._voice)
        self.estimate_latency()

    # -- devices --------------------------------------------------------------------------------------
    def refresh_devices(self, rescan: bool = True, then: Callable[[], None] | None = None) -> None:
        """Re-list devices (`devicesChanged`) on the job thread; a chosen device that vanished falls
        back to the default with a message. `then()` runs once the new list is in.

        rescan=True first restarts PortAudio so it sees newly plugged devices (only while stopped:
        never under an open stream; the job thread never runs it beside an estimate in progress).
        """
        rescan = rescan and self._state in ("stopped", "error")

        def job() -> list[DeviceInfo]:
            if rescan:
                self.engine.rescan_devices()
            return self.engine.list_devices()

        self._jobs.submit(job, lambda devices: self._devices_listed(devices, then),
                          on_error=lambda exc: self._devices_listed([], then, failure=exc))

    def _devices_listed(self, devices: list[DeviceInfo], then: Callable[[], None] | None = None,
                        failure: Exception | None = None) -> None:
        self._devices = list(devices)
        if failure is not None:
            self.message.emit("error", f"Could not list audio devices: {failure}")
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
        if then is not None:
            then()

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
    def refresh_voices(self, clean_up: bool = False) -> None:
        """List the built-in voice + valid packs in the user voices folder (+ the current one if it
        lives elsewhere) on the job thread; `voicesListed` carries them. clean_up=True
        (at startup) first removes what an import that was killed left behind."""
        def listing() -> tuple[list[VoiceInfo], Exception | None]:
            try:
                if clean_up:
                    clean_stale_imports(self.engine.voices_dir())
                return self.engine.installed_voices(), None
            except Exception as exc:
                return [self.engine.voice_info(BUILTIN_DSP)], exc

        self._jobs.submit(listing, self._voices_listed, lambda exc: self._voices_listed(([], exc)))

    def _voices_listed(self, answer: tuple[list[VoiceInfo], Exception | None]) -> None:
        voices, failure = list(answer[0]), answer[1]
        if failure is not None:
            self.message.emit("warning", f"Could not list installed voices: {failure}")
        if all(v.spec != self._voice.spec for v in voices):
            voices.append(self._voice)
        self._listed = voices
        self.voicesListed.emit(voices)

    def set_voice(self, spec: str) -> None:
        """Check (every file's hash, on the job thread) and select a voice; Start waits meanwhile.
        On a bad pack: error message, previous voice kept (`voiceChanged` lets the picker snap back)."""
        self._voice_job(lambda: self.engine.voice_info(spec, verify=True), self._voice_checked,
                        lambda exc: self._voice_refused("Voice pack refused", exc))

    def _voice_checked(self, info: VoiceInfo) -> None:
        self._voice = info
        self._config = replace(self._config, voice=info.spec)
        self._clamp_speaker()
        self.configChanged.emit(self._config)
        self.voiceChanged.emit(info)
        self.message.emit("info", f"Voice: {info.name}")
        if all(v.spec != info.spec for v in self._listed):
            self.refresh_voices()  # a folder from elsewhere or a fresh import joins the list
        if self.running:
            self.restart()
        else:
            self.estimate_latency()  # every voice has its own delay

    def _voice_refused(self, failure: str, exc: Exception) -> None:
        self.message.emit("error", f"{failure}: {exc}")
        self.voiceChanged.emit(self._voice)  # let the picker snap back to the voice in use

    def _voice_job(self, job: Callable[[], Any], on_done: Callable[[Any], None],
                   on_error: Callable[[Exception], None] | None = None) -> None:
        """Run a voice check/import on the job thread with `voiceLoading` True until it is answered
        (and until any voice job its answer submits is answered too)."""
        def answered(callback: Callable[[Any], None] | None) -> Callable[[Any], None]:
            def deliver(value: Any) -> None:
                try:
                    if callback is not None:
                        callback(value)
                finally:
                    self._voice_jobs -= 1
                    if self._voice_jobs == 0:
                        self.voiceLoading.emit(False)
            return deliver

        if self._jobs.closed:
            return
        self._voice_jobs += 1
        if self._voice_jobs == 1:
            self.voiceLoading.emit(True)
        self._jobs.submit(job, answered(on_done), answered(on_error or (lambda exc: self._voice_refused(
            "Voice unavailable", exc))))

    def _clamp_speaker(self) -> None:
        ids = [sid for _, sid in self._voice.speakers]
        if ids and self._config.settings.speaker not in ids:
            self._config = self._config.with_settings(speaker=ids[0])

    def import_voice(self, zip_path: str) -> None:
        """Install a .zip into the voices folder (extracted and checked on the job thread) and select
        it. Errors go to `message`."""
        def job() -> Path:
            return import_voice_zip(zip_path, self.engine.voices_dir(), validate=self.engine.validate_pack)

        def imported(folder: Path) -> None:
            self.message.emit("info", f"Imported voice into {folder}")
            self.set_voice(str(folder))

        def refused(exc: Exception) -> None:
            failure = "Import refused" if isinstance(exc, VoiceImportError) else "Import failed"
            self.message.emit("error", f"{failure}: {exc}")

        self._voice_job(job, imported, refused)

    def next_speaker(self) -> None:
        ids = [sid for _, sid in self._voice.speakers]
        if len(ids) < 2:
            self.message.emit("info", "This voice has one speaker.")
            return
        current = self._config.settings.speaker
        following = ids[(ids.index(current) + 1) % len(ids)] if current in ids else ids[0]
        self.choose_speaker(following)

    def choose_speaker(self, speaker_id: int) -> None:
        """Switch to a speaker (picker, hotkey); with `preview_voices` on, play its preview clip if the pack has one."""
        if speaker_id == self._config.settings.speaker or not self.set_settings(speaker=speaker_id):
            return
        if self._config.preview_voices and self._voice.speaker_name(speaker_id) in self._voice.previews:
            self.preview()

    def set_preview_voices(self, on: bool) -> None:
        if on != self._config.preview_voices:
            self._config = replace(self._config, preview_voices=on)
            self.configChanged.emit(self._config)

    def preview(self) -> None:
        """Play the current speaker's preview clip once (monitor, else output when not live); the answer
        is a status message."""
        name = self._voice.speaker_name(self._config.settings.speaker)
        if name is None or name not in self._voice.previews:
            self.message.emit("info", f"This voice has no preview clip for {name or 'this speaker'}.")
            return
        monitor = self._find(self._config.monitor_device, False) if self._config.monitor_device else None
        if monitor is None and self.running:
            self.message.emit("info", f"Preview of {name} not played: you are live, and it would go out to your "
                                      "listeners; set a monitor (headphones) to hear previews while live.")
            return
        if monitor is not None:
            device = monitor.session_spec
        else:
            output = self._find(self._config.output_device, False) if self._config.output_device else None
            device = output.session_spec if output is not None else None
        spec = self._voice.spec
        self._previews.submit(lambda: self.engine.play_preview(spec, name, device),
                              lambda label: self.message.emit("info", f"Preview of {name} on {label}."),
                              lambda exc: self.message.emit("warning", f"Could not play the preview of {name}: {exc}"))

    def show_notice(self) -> None:
        """Read the current voice's sources-and-licences notice on the job thread; `noticeRead` brings it."""
        voice = self._voice
        if not voice.has_notice:
            self.message.emit("info", f"{voice.name} does not name its sources and licences.")
            return
        self._jobs.submit(lambda: self.engine.read_notice(voice.spec),
                          lambda text: self.noticeRead.emit(voice.name, text),
                          lambda exc: self.message.emit("warning",
                                                        f"Could not read the sources of {voice.name}: {exc}"))

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
        if self.voice_loading:  # the window disables Start meanwhile; hotkeys and remote commands get this
            self.message.emit("info", "The voice is still being checked; press Start again in a moment.")
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
        self._previews.submit(self.engine.stop_preview, None,  # off the output before it goes live
                              lambda exc: self.message.emit("warning", f"Could not stop the preview: {exc}"))
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
        """Stop audio and the job threads (window close: the one place that waits, at most `timeout_s`
        per thread); a second call does nothing."""
        if self._closed:
            return
        self._closed = True
        self._timer.stop()
        self._estimate_timer.stop()
        running = self._session is not None and self._state not in ("stopped",)
        self._previews.close(last=self.engine.stop_preview, timeout_s=timeout_s)
        self._jobs.close(last=self._session.stop if running else None, timeout_s=timeout_s)

    # -- virtual mic ----------------------------------------------------------------------------------
    def create_virtual_mic(self) -> None:
        """Create the Linux virtual mic (on the job thread: pactl may take seconds) and, if the output
        is still the default, play into it once the device list has it."""
        self._virtual_mic(self.engine.create_virtual_mic, "Could not create the virtual mic",
                          then=self._play_into_cable)

    def _play_into_cable(self) -> None:
        cable = self.suggested_output()
        if cable is not None and self._config.output_device is None:
            self.set_device("output", cable.ref)

    def remove_virtual_mic(self) -> None:
        self._virtual_mic(self.engine.remove_virtual_mic, "Could not remove the virtual mic")

    def _virtual_mic(self, action: Callable[[], str], failure: str, then: Callable[[], None] | None = None) -> None:
        def done(text: str) -> None:
            self.message.emit("info", text)
            self.refresh_devices(then=then)

        self._submit(action, done, on_error=lambda exc: self.message.emit("error", f"{failure}: {exc}"))

    # -- internals ------------------------------------------------------------------------------------
    def _submit(self, job: Callable[[], Any], on_done: Callable[[Any], None] | None = None,
                failure: str = "", fatal: bool = True,
                on_error: Callable[[Exception], None] | None = None) -> None:
        """Run `job` on the job thread, in order; `on_done(result)` runs in the GUI thread.

        On an exception: `on_error(exc)` if given, else fatal=True puts the bridge in the "error"
        state (start/stop/restart) and fatal=False only reports it (a live update the session refused).
        Nothing runs once the window is closing.
        """
        self._jobs.submit(job, on_done, on_error or (lambda error: self._failed(failure, error, fatal)))

    def _failed(self, failure: str, exc: Exception, fatal: bool) -> None:
        if fatal and self._state == "error":
            return  # the session already reported this failure through on_state
        if fatal:
            self._set_state("error", f"{failure}: {exc}")
        else:
            self.message.emit("error", f"{failure}: {exc}")

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
        elif state in ("starting", "running", "waiting"):   # waiting: a device went away, the session waits
            self._timer.start()
        if state == "error":
            self.message.emit("error", message or "The session stopped with an error.")
        self.stateChanged.emit(state, message)
