"""`LiveSession`: devices, converter, worker thread and recorder behind one object.

```python
s = LiveSession(backend=None)            # None = PortAudio (sounddevice); tests pass SimulatedBackend
s.on_state = lambda state, message: ...  # from ANY thread: "starting", "running", "waiting", "stopped", "error"
s.estimate_latency(cfg) -> LatencyBreakdown   # before starting (device buffers as the devices advertise)
s.start(cfg); s.running; s.update(pitch=3)    # live-safe keys apply at once, others restart cleanly
s.stats() -> LiveStats                         # cheap snapshot, any thread
s.stop()
```
Control calls (start/stop/update/estimate_latency) come from one control thread at a time; a
watchdog thread polls the streams ~20x/s. When a device goes away (unplugged, its PulseAudio sink
removed, the sound server restarted) the session is kept: the streams close, the state becomes
"waiting" ("Waiting for <device>…"), and every `reconnect_s` the watchdog looks for it again; when
it (or, for a config that asked for the system default, the new default) is back, audio resumes
with the same settings, rate and fixed latency (state "running" again; `LiveStats.reconnects`
counts it). Any other fault (a voice crash, a driver failing on every callback) stops everything
cleanly and is reported through `on_state("error", ...)`; a later `start()` works again without
restarting the program.

Latency: `LatencyBreakdown` with the converter's parts, `block` (the worker waits for a full block),
`compute_margin` (callback + compute budget, plus the measured input/output offset for split
streams) and the device buffers. Once running, the device buffers are the ones measured from the
callbacks' time stamps (what the driver really does), falling back to what the streams report.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from engine.audio.streams import AudioBackend, AudioIO, StreamPlan, plan_streams
from engine.audio.xruns import XrunCounts
from engine.converter import Converter
from engine.voice_core import VoiceCore
from engine.audio.devices import DeviceError
from engine.audio.pulse import pulse_target_exists
from engine.audio.realtime import WORKER_PRIORITY, keep_collector_short, make_realtime
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
    budget_raises: int = 0                      # times late blocks raised it while running
    budget_change_positions: tuple[int, ...] = ()   # input positions where it changed (the latency stepped)
    underruns: int = 0                          # late blocks: the converter was too slow
    late_blocks_answered: int = 0               # of them, those the adaptive budget has answered so far
    ran_ahead: int = 0                          # output callbacks that came early (after a driver xrun)
    queue_depth: int = 0
    provider: str = ""
    provider_note: str = ""
    input_level_db: float = -120.0
    output_level_db: float = -120.0
    blocks_processed: int = 0
    input_position: int = 0                     # input samples captured on this stream: the *_positions' clock
    recording_paths: tuple[str, ...] = ()
    sample_rate: int | None = None
    device_xruns: int = 0                       # callbacks the driver flagged (over/underflow)
    xruns: XrunCounts = field(default_factory=XrunCounts)   # the same, by kind, with positions
    latency_steps: tuple[str, ...] = ()         # each output-delay step, a sentence with its cause
    resync_positions: tuple[int, ...] = ()      # input positions where the output was re-synced (this stream)
    stream_latency_ms: tuple[float, float] | None = None   # (in, out) as the streams report them
    notes: tuple[str, ...] = ()
    waiting_for: str | None = None              # state "waiting": the device audio resumes on
    reconnects: int = 0                         # times audio resumed after a device came back


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
                 stall_timeout_s: float = 1.0, reconnect_s: float = 1.0, open_attempts: int = 3,
                 open_retry_s: float = 0.5) -> None:
        self._backend = backend
        self._open_attempts, self._open_retry_s = open_attempts, open_retry_s
        self._stall_timeout_s = stall_timeout_s
        self._reconnect_s = reconnect_s
        self._waiting_for: str | None = None
        self._reconnects = 0
        self._budget_before: int | None = None   # the compute budget audio had when its device went away
        self._xruns_before = XrunCounts()     # xruns of the streams closed by earlier reconnects
        self._steps_before: tuple[str, ...] = ()
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
            if self._state in ("running", "starting", "waiting"):
                self._stop_locked(report=False)
            self._cfg, self._error = cfg, None
            self._waiting_for, self._reconnects = None, 0
            self._xruns_before, self._steps_before = XrunCounts(), ()
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
        recorder = None
        if cfg.record_dir:
            recorder = Recorder(cfg.record_dir, plan.rate)
            recorder.start()
            self._recording = tuple(str(p) for p in recorder.paths)
        else:
            self._recording = ()
        self._recorder = recorder
        for attempt in range(1, self._open_attempts + 1):
            try:
                self._open_audio(cfg, plan)
                break
            except DeviceError:
                # A sound server that just started (or a device list from before it did) can refuse
                # an open that works a moment later: look again, then retry; the last error is final.
                self._close_audio()
                if attempt == self._open_attempts:
                    raise
                time.sleep(self._open_retry_s)
                self.backend.refresh()
                plan = self._plan = self._plan_for(cfg)
        self._watch_stop.clear()
        self._watch = threading.Thread(target=self._watchdog, name="como-session-watchdog", daemon=True)
        self._watch.start()

    def _open_audio(self, cfg: SessionConfig, plan: StreamPlan, keep_budget: int | None = None) -> None:
        """A fresh runner and streams for `plan` (the converter and recorder are kept); `keep_budget`
        (device samples) reuses a running session's compute budget instead of measuring one."""
        converter = self._converter_for(cfg, plan.rate)
        converter.reset()
        s = cfg.settings
        block = ms_to_samples(s.block_ms, plan.rate)
        if keep_budget is not None:        # a resume keeps the latency the listener already has
            budget, adaptive = keep_budget, (AdaptiveBudget(plan.rate, block)
                                             if _fixed_budget(cfg, plan.rate) is None else None)
        else:
            budget, adaptive = self._budget_for(cfg, plan.rate, converter)
        runner = RealtimeRunner(converter, block, sample_rate=plan.rate, chunk=block, callback_frames=plan.frames,
                                budget=budget, adaptive=adaptive, late_fill=s.late_fill,
                                max_frames=max(16384, 8 * plan.frames))
        io = AudioIO(self.backend, plan, runner, monitor_gain_db=s.monitor_gain_db, recorder=self._recorder,
                     stall_timeout_s=self._stall_timeout_s)
        self._runner, self._io = runner, io
        keep_collector_short()             # no long collector pass (GIL held) while the streams run
        runner.start()
        if getattr(self.backend, "realtime_threads", False) and runner.thread_id is not None:
            make_realtime(WORKER_PRIORITY, runner.thread_id)
        io.start()

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
        self._close_audio()
        if self._recorder is not None:
            self._recorder.stop()
        self._recorder = None
        self._waiting_for = None

    def _close_audio(self) -> None:
        if self._io is not None:
            self._io.stop()
        if self._runner is not None:
            self._runner.stop()
        self._io = None

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
        xruns = _add_counts(self._xruns_before, io.xrun_log.counts()) if io is not None else self._xruns_before
        steps = self._steps_before + (tuple(step.sentence() for step in io.xrun_log.steps) if io is not None else ())
        lat_in = rs.input_latency_ms / 1000.0 if rs.input_latency_ms is not None else reported_in
        lat_out = rs.output_latency_ms / 1000.0 if rs.output_latency_ms is not None else reported_out
        queue = rs.queue_ms * plan.rate / 1000.0 if rs.queue_ms is not None else float(runner.split_margin)
        return LiveStats(
            state=self._state, error=self._error,
            latency=self._breakdown(cfg, plan, conv, lat_in, lat_out, queue=max(0, round(queue)), budget=runner.budget),
            compute_p50_ms=rs.compute_p50_ms, compute_p99_ms=rs.compute_p99_ms, block_budget_ms=rs.block_budget_ms,
            budget_auto=rs.budget_auto, budget_note=rs.budget_note, budget_raises=rs.budget_raises,
            budget_change_positions=rs.budget_change_positions,
            underruns=rs.underruns, late_blocks_answered=rs.late_blocks_answered, ran_ahead=rs.ran_ahead,
            queue_depth=rs.queue_depth,
            provider=str(getattr(conv, "provider", "")), provider_note=str(getattr(conv, "provider_note", "")),
            input_level_db=rs.input_level_db, output_level_db=rs.output_level_db,
            blocks_processed=rs.blocks_processed, input_position=rs.input_position,
            recording_paths=self._recording, sample_rate=plan.rate,
            device_xruns=xruns.total, xruns=xruns, latency_steps=steps, resync_positions=rs.resync_positions,
            stream_latency_ms=(1000.0 * reported_in, 1000.0 * reported_out),
            notes=plan.notes + ((rs.resync_note,) if rs.resync_note else ()),
            waiting_for=self._waiting_for, reconnects=self._reconnects)

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
        next_try = 0.0
        while not self._watch_stop.wait(self._watchdog_s):
            io = self._io
            waiting = self._state == "waiting"
            fault = io.poll() if io is not None and not waiting else None
            if fault is None and not (waiting and time.monotonic() >= next_try):
                continue
            # A control call may hold the lock and be waiting for this thread: never block on it.
            while not self._lock.acquire(timeout=0.05):
                if self._watch_stop.is_set():
                    return
            try:
                if self._watch_stop.is_set():
                    return
                if waiting:
                    next_try = time.monotonic() + self._reconnect_s
                    self._try_resume()
                elif io is not None and io.lost is not None and self._runner is not None \
                        and self._runner.fault is None:
                    self._wait_for(io.lost.label, fault)
                    next_try = time.monotonic() + self._reconnect_s
                else:
                    self._watch_stop.set()
                    self._teardown()
                    self._error = fault
                    self._set_state("error", f"{fault} Audio stopped; press Start to try again.")
                    return
            finally:
                self._lock.release()

    def _wait_for(self, device: str, fault: str) -> None:
        """The device went away: close the streams (keep everything else) and wait for it."""
        self._keep_xruns()
        self._budget_before = self._runner.budget if self._runner is not None else None
        self._close_audio()
        self._waiting_for = device
        self._set_state("waiting", f"{fault} Waiting for {device}; audio resumes by itself when it is back.")

    def _try_resume(self) -> None:
        """Look for the lost device again; when it is back, reopen with the same rate and latency."""
        cfg, old = self._cfg, self._plan
        assert cfg is not None and old is not None
        try:
            self.backend.refresh()              # PortAudio only sees devices present when it started
            plan = self._plan_for(dataclasses.replace(cfg, sample_rate=old.rate))
            if _missing_pulse_target(plan) is not None:
                return
            self._plan = plan
            self._open_audio(cfg, plan, keep_budget=self._budget_before)
        except (DeviceError, OSError):
            self._close_audio()             # still gone, or not ready yet: try again later
            return
        device, self._waiting_for = self._waiting_for, None
        self._reconnects += 1
        self._set_state("running", f"{device} is back: running again at {plan.rate} Hz, latency about "
                                   f"{self._runner_latency_ms():.0f} ms.")

    def _keep_xruns(self) -> None:
        io = self._io
        if io is not None:
            self._xruns_before = _add_counts(self._xruns_before, io.xrun_log.counts())
            self._steps_before += tuple(step.sentence() for step in io.xrun_log.steps)

    def _set_state(self, state: str, message: str) -> None:
        self._state = state
        callback = self.on_state
        if callback is not None:
            try:
                callback(state, message)
            except Exception:  # noqa: BLE001 - a broken observer must not break the audio session
                pass


def _add_counts(a: XrunCounts, b: XrunCounts) -> XrunCounts:
    """Xrun counts of two stream lifetimes together (positions: the later one's, its own clock)."""
    return XrunCounts(**{f.name: getattr(a, f.name) + getattr(b, f.name) for f in dataclasses.fields(a)
                         if f.name != "positions"}, positions=b.positions)


def _missing_pulse_target(plan: StreamPlan) -> str | None:
    """A `pulse:NAME` device of `plan` whose sink/source does not exist (yet): opening it now would
    let PulseAudio play into another device."""
    for device, kind in ((plan.input, "input"), (plan.output, "output"), (plan.monitor, "output")):
        if device is not None and device.pulse_target and not pulse_target_exists(device.pulse_target, kind):
            return device.name
    return None
