"""`LiveSession`: devices, converter, worker thread and recorder behind one object.

```python
s = LiveSession(backend=None)            # None = PortAudio (sounddevice); tests pass SimulatedBackend
s.on_state = lambda state, message: ...  # from ANY thread: "starting", "running", "stopped", "error"
s.estimate_latency(cfg) -> LatencyBreakdown   # before starting (device buffers as the devices advertise)
s.start(cfg); s.running; s.update(pitch=3)    # live-safe keys apply at once, others restart cleanly
s.stats() -> LiveStats                         # cheap snapshot, any thread
s.stop()
```
Control calls (start/stop/update/estimate_latency) come from one control thread at a time; a
watchdog thread polls the streams ~20x/s and, on a fault (device unplugged, stream error, voice
crash), stops everything cleanly and reports a sentence through `on_state("error", ...)`. A later
`start()` works again without restarting the program.

Latency: `LatencyBreakdown` with the converter's parts, `block` (the worker waits for a full block),
`compute_margin` (callback + compute budget, plus the measured input/output offset for split
streams) and the device buffers. Once running, the device buffers are the ones measured from the
callbacks' time stamps (what the driver really does), falling back to what the streams report.
"""
from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from engine.audio.streams import AudioBackend, AudioIO, StreamPlan, plan_streams
from engine.converter import Converter
from engine.voice_core import VoiceCore
from engine.audio.devices import DeviceError
from engine.latency import LatencyBreakdown, end_to_end, ms_to_samples
from engine.audio.recorder import Recorder
from engine.settings import AUTO_BUDGET, Settings
from engine.budget import AdaptiveBudget, measure_compute
from engine.runner import RealtimeRunner

VoiceSpec = str | Callable[[Settings], VoiceCore]
StateCallback = Callable[[str, str], None]


class SessionError(RuntimeError):
    """The session could not start; `str()` is the sentence also sent to `on_state("error", ...)`."""


@dataclass(frozen=True)
class SessionConfig:
    """What to run. Devices: PortAudio index, name (or `pulse:NAME` on Linux), None = default.

    `voice`: "builtin:dsp", a voice-pack folder, or a callable `Settings -> VoiceCore`.
    `compute_budget_ms`: how late a block may finish and still play on time (None = the setting
    `Settings.compute_budget_ms`; `AUTO_BUDGET` = measured and adaptive, see engine.budget).
    `callback_ms`: driver buffer size asked for (None: a quarter block, at most 10 ms; PortAudio's
    ALSA/PulseAudio buffer is two callbacks, so 5 ms callbacks at 20 ms blocks hold ~5-10 ms less
    in each direction, measured). `exclusive`: WASAPI exclusive mode (Windows only).
    """

    input_device: int | str | None = None
    output_device: int | str | None = None
    monitor_device: int | str | None = None
    sample_rate: int | None = None
    input_channel: int = 0
    voice: VoiceSpec = "builtin:dsp"
    settings: Settings = field(default_factory=Settings)
    record_dir: str | Path | None = None
    compute_budget_ms: float | None = None
    callback_ms: float | None = None
    exclusive: bool = False


@dataclass(frozen=True)
class LiveStats:
    """A snapshot for the readouts. Levels in dBFS, times in ms, `queue_depth` in device samples.

    `latency.input_buffer` / `output_buffer` are measured from the callbacks' time stamps (what
    the driver really does: on PulseAudio the streams report 20/30 ms where 3/29 ms is true), and
    fall back to the streams' reported latencies (`stream_latency_ms`) when a host gives none.
    """

    state: str = "stopped"
    error: str | None = None
    latency: LatencyBreakdown | None = None
    compute_p50_ms: float | None = None
    compute_p99_ms: float | None = None
    block_budget_ms: float | None = None
    budget_auto: bool = False                  # the budget is measured and raised after late blocks
    budget_note: str | None = None             # its last change, as a sentence
    underruns: int = 0
    queue_depth: int = 0
    provider: str = ""
    provider_note: str = ""
    input_level_db: float = -120.0
    output_level_db: float = -120.0
    blocks_processed: int = 0
    recording_paths: tuple[str, ...] = ()
    sample_rate: int | None = None
    device_xruns: int = 0                       # callbacks the driver flagged (over/underflow)
    stream_latency_ms: tuple[float, float] | None = None   # (in, out) as the streams report them
    notes: tuple[str, ...] = ()


def _fixed_budget(cfg: SessionConfig, rate: int) -> int | None:
    """Device samples a block may take to convert (the config's override, else the setting), or
    None for the adaptive budget."""
    ms = cfg.compute_budget_ms if cfg.compute_budget_ms is not None else cfg.settings.compute_budget_ms
    return None if ms == AUTO_BUDGET else ms_to_samples(ms, rate)


def core_factory(voice: VoiceSpec) -> Callable[[Settings], VoiceCore]:
    """`Settings -> VoiceCore` for a voice spec (what `Converter` takes); callables pass through."""
    if callable(voice):
        return voice
    from engine.voices import load_voice

    return lambda settings: load_voice(str(voice), settings)


class LiveSession:
    """See the module docstring."""

    def __init__(self, backend: AudioBackend | None = None, *, watchdog_s: float = 0.05,
                 stall_timeout_s: float = 1.0) -> None:
        self._backend = backend
        self._stall_timeout_s = stall_timeout_s
        self.on_state: StateCallback | None = None
        self._watchdog_s = watchdog_s
        self._state = "stopped"
        self._error: str | None = None
        self._cfg: SessionConfig | None = None
        self._plan: StreamPlan | None = None
        self._converter: Converter | None = None
        self._converter_key: tuple | None = None
        self._measured: dict[tuple, int] = {}   # adaptive budgets measured, by (voice key, block)
        self._runner: RealtimeRunner | None = None
        self._io: AudioIO | None = None
        self._recorder: Recorder | None = None
        self._recording: tuple[str, ...] = ()
        self._watch: threading.Thread | None = None
        self._watch_stop = threading.Event()
        self._lock = threading.RLock()        # control calls vs. the watchdog's fault stop

    # --- properties ----------------------------------------------------------------------------------
    @property
    def backend(self) -> AudioBackend:
        if self._backend is None:
            from engine.audio.streams import SoundDeviceBackend

            self._backend = SoundDeviceBackend()
        return self._backend

    @property
    def running(self) -> bool:
        return self._state == "running"

    @property
    def state(self) -> str:
        return self._state

    # --- control -------------------------------------------------------------------------------------
    def estimate_latency(self, cfg: SessionConfig) -> LatencyBreakdown:
        """The end-to-end latency `cfg` would have (loads the voice once; it is reused by `start`)."""
        plan = self._plan_for(cfg)
        converter = self._converter_for(cfg, plan.rate)
        lat_in = plan.input.default_low_input_latency
        lat_out = plan.output.default_low_output_latency
        budget, _ = self._budget_for(cfg, plan.rate, converter, estimate=True)
        return self._breakdown(cfg, plan, converter, lat_in, lat_out, queue=0, budget=budget)

    def start(self, cfg: SessionConfig) -> None:
        """Load the voice, open the devices and start; raises SessionError (after on_state "error")."""
        with self._lock:
            if self._state in ("running", "starting"):
                self._stop_locked(report=False)
            self._cfg, self._error = cfg, None
            self._set_state("starting", "Loading the voice and opening the audio devices…")
            try:
                self._start_locked(cfg)
            except Exception as exc:  # noqa: BLE001 - every failure becomes one sentence
                message = str(exc) if isinstance(exc, (DeviceError, SessionError, OSError, ValueError)) \
                    else f"{type(exc).__name__}: {exc}"
                self._teardown()
                self._runner = None           # no stale readouts from an earlier run
                self._error = message
                self._set_state("error", message)
                raise SessionError(message) from exc
            lat = self._runner_latency_ms()
            notes = " ".join(self._plan.notes) if self._plan else ""
            self._set_state("running", f"Running at {self._plan.rate} Hz, latency about {lat:.0f} ms. {notes}".strip())

    def _start_locked(self, cfg: SessionConfig) -> None:
        plan = self._plan_for(cfg)
        self._plan = plan
        converter = self._converter_for(cfg, plan.rate)
        converter.reset()
        s = cfg.settings
        block = ms_to_samples(s.block_ms, plan.rate)
        budget, adaptive = self._budget_for(cfg, plan.rate, converter)
        runner = RealtimeRunner(converter, block, sample_rate=plan.rate, chunk=block, callback_frames=plan.frames,
                                budget=budget, adaptive=adaptive, late_fill=s.late_fill,
                                max_frames=max(16384, 8 * plan.frames))
        recorder = None
        if cfg.record_dir:
            recorder = Recorder(cfg.record_dir, plan.rate)
            recorder.start()
            self._recording = tuple(str(p) for p in recorder.paths)
        else:
            self._recording = ()
        io = AudioIO(self.backend, plan, runner, monitor_gain_db=s.monitor_gain_db, recorder=recorder,
                     stall_timeout_s=self._stall_timeout_s)
        self._runner, self._io, self._recorder = runner, io, recorder
        runner.start()
        io.start()
        self._watch_stop.clear()
        self._watch = threading.Thread(target=self._watchdog, name="como-session-watchdog", daemon=True)
        self._watch.start()

    def stop(self) -> None:
        """Stop audio, the worker and the recorder (safe to call at any time)."""
        with self._lock:
            self._stop_locked(report=True)

    def _stop_locked(self, report: bool) -> None:
        self._watch_stop.set()
        if self._watch is not None and self._watch is not threading.current_thread():
            self._watch.join(2.0)
        self._watch = None
        self._teardown()
        if report and self._state not in ("error", "stopped"):
            self._set_state("stopped", "Stopped.")

    def _teardown(self) -> None:
        if self._io is not None:
            self._io.stop()
        if self._runner is not None:
            self._runner.stop()
        if self._recorder is not None:
            self._recorder.stop()
        self._io = self._recorder = None

    def update(self, **changes: Any) -> None:
        """Change settings: live-safe ones (Settings.LIVE_SAFE) at once, others by a clean restart."""
        with self._lock:
            cfg = self._cfg or SessionConfig()
            new_settings = cfg.settings.with_changes(**changes)
            if "speaker" in changes and not callable(cfg.voice):
                from engine.voices import describe

                speakers = describe(str(cfg.voice)).speakers
                if new_settings.speaker not in speakers.values():
                    raise ValueError(f"speaker {new_settings.speaker} does not exist in this voice (it has "
                                     + ", ".join(f"{name}={idx}" for name, idx in speakers.items()) + ")")
            self._cfg = dataclasses.replace(cfg, settings=new_settings)
            if not self.running:
                return
            if Settings.needs_restart(changes):
                self._stop_locked(report=False)
                self.start(self._cfg)
                return
            if "monitor_gain_db" in changes and self._io is not None:
                self._io.set_monitor_gain(new_settings.monitor_gain_db)
            if self._runner is not None:
                self._runner.update(**changes)      # the worker applies them to the converter

    # --- readouts ------------------------------------------------------------------------------------
    def stats(self) -> LiveStats:
        runner, io, plan, cfg, conv = self._runner, self._io, self._plan, self._cfg, self._converter
        if runner is None or plan is None or cfg is None or conv is None:
            return LiveStats(state=self._state, error=self._error)
        rs = runner.stats()
        reported_in, reported_out = io.reported_latency() if io is not None else (0.0, 0.0)
        lat_in = rs.input_latency_ms / 1000.0 if rs.input_latency_ms is not None else reported_in
        lat_out = rs.output_latency_ms / 1000.0 if rs.output_latency_ms is not None else reported_out
        queue = rs.queue_ms * plan.rate / 1000.0 if rs.queue_ms is not None else float(runner.split_margin)
        return LiveStats(
            state=self._state, error=self._error,
            latency=self._breakdown(cfg, plan, conv, lat_in, lat_out, queue=max(0, round(queue)), budget=runner.budget),
            compute_p50_ms=rs.compute_p50_ms, compute_p99_ms=rs.compute_p99_ms, block_budget_ms=rs.block_budget_ms,
            budget_auto=rs.budget_auto, budget_note=rs.budget_note,
            underruns=rs.underruns, queue_depth=rs.queue_depth,
            provider=str(getattr(conv, "provider", "")), provider_note=str(getattr(conv, "provider_note", "")),
            input_level_db=rs.input_level_db, output_level_db=rs.output_level_db,
            blocks_processed=rs.blocks_processed, recording_paths=self._recording, sample_rate=plan.rate,
            device_xruns=io.xruns if io is not None else 0,
            stream_latency_ms=(1000.0 * reported_in, 1000.0 * reported_out),
            notes=plan.notes + ((rs.resync_note,) if rs.resync_note else ()))

    # --- internals -----------------------------------------------------------------------------------
    def _plan_for(self, cfg: SessionConfig) -> StreamPlan:
        return plan_streams(self.backend, input=cfg.input_device, output=cfg.output_device,
                            monitor=cfg.monitor_device, sample_rate=cfg.sample_rate, input_channel=cfg.input_channel,
                            callback_ms=cfg.callback_ms if cfg.callback_ms is not None else min(10.0, cfg.settings.block_ms / 4),
                            exclusive=cfg.exclusive)

    @staticmethod
    def _key(cfg: SessionConfig, rate: int) -> tuple:
        restart_fields = tuple((f.name, getattr(cfg.settings, f.name)) for f in dataclasses.fields(cfg.settings)
                               if Settings.needs_new_voice({f.name: None}))
        return (id(cfg.voice) if callable(cfg.voice) else cfg.voice, rate, restart_fields)

    def _converter_for(self, cfg: SessionConfig, rate: int) -> Converter:
        """The converter for `cfg`: the cached one while voice, rate and restart-only settings match.

        While audio runs, the worker thread owns the cached converter: an estimate for another
        configuration then gets a throw-away converter instead.
        """
        key = self._key(cfg, rate)
        running = self._runner_alive()
        if self._converter is not None and self._converter_key == key:
            if not running and self._converter.settings != cfg.settings:
                changed = {f.name: getattr(cfg.settings, f.name) for f in dataclasses.fields(cfg.settings)
                           if getattr(cfg.settings, f.name) != getattr(self._converter.settings, f.name)}
                self._converter.update(**changed)
            return self._converter
        converter = Converter(core_factory(cfg.voice), cfg.settings, rate)
        if not running:
            self._converter, self._converter_key = converter, key
        return converter

    def _runner_alive(self) -> bool:
        return self._runner is not None and self._runner.alive

    def _budget_for(self, cfg: SessionConfig, rate: int, converter: Converter,
                    estimate: bool = False) -> tuple[int, AdaptiveBudget | None]:
        """The compute budget to start with (device samples) and the adaptive policy, if any. The
        adaptive one is measured on `converter` (a warm-up, then reset; `start` always measures,
        estimates reuse the last measurement for the same voice and block); while audio runs, the
        worker owns the converter, so an estimate then takes the running budget."""
        fixed = _fixed_budget(cfg, rate)
        if fixed is not None:
            return fixed, None
        block = ms_to_samples(cfg.settings.block_ms, rate)
        policy = AdaptiveBudget(rate, block)
        if self._runner_alive() and self._runner is not None:
            return self._runner.budget, policy
        key = (self._key(cfg, rate), block)
        if not estimate or key not in self._measured:
            self._measured[key] = policy.safe(measure_compute(converter, block, rate))
        return self._measured[key], policy

    def _breakdown(self, cfg: SessionConfig, plan: StreamPlan, conv: Converter, lat_in: float, lat_out: float,
                   queue: int, budget: int) -> LatencyBreakdown:
        block = ms_to_samples(cfg.settings.block_ms, plan.rate)
        alg = dataclasses.replace(conv.latency_breakdown(), block=block)
        margin = plan.frames + budget + (queue if not plan.duplex else 0)
        return end_to_end(alg, max(0.0, lat_in), max(0.0, lat_out), queue_prefill=margin)

    def _runner_latency_ms(self) -> float:
        st = self.stats()
        return st.latency.total_ms if st.latency is not None else 0.0

    def _watchdog(self) -> None:
        while not self._watch_stop.wait(self._watchdog_s):
            io = self._io
            fault = io.poll() if io is not None else None
            if fault is not None:
                # A control call may hold the lock and be waiting for this thread: never block on it.
                while not self._lock.acquire(timeout=0.05):
                    if self._watch_stop.is_set():
                        return
                try:
                    if self._watch_stop.is_set():
                        return
                    self._watch_stop.set()
                    self._teardown()
                    self._error = fault
                    self._set_state("error", f"{fault} Audio stopped; press Start to try again.")
                finally:
                    self._lock.release()
                return

    def _set_state(self, state: str, message: str) -> None:
        self._state = state
        callback = self.on_state
        if callback is not None:
            try:
                callback(state, message)
            except Exception:  # noqa: BLE001 - a broken observer must not break the audio session
                pass
