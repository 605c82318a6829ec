"""Streams around a `RealtimeRunner`: input, main output, optional monitor; duplex or split.

```
plan = plan_streams(backend, input=..., output=..., monitor=..., sample_rate=None, input_channel=0)
io = AudioIO(backend, plan, runner, recorder=None)
io.start(); ...; io.poll()  # from a control thread, ~10x/s: watchdog, returns the fault or None
io.stop()
```
* One duplex stream when input and output are the same device on the same host API (one clock, the
  lowest latency) and PortAudio runs it safely as one (`DeviceInfo.duplex_safe`: not the ALSA
  pulse plugin); otherwise split input/output streams joined by the runner's position-anchored
  output (bounded: it never queues more than the fixed prefill, and re-anchors on clock drift).
* The monitor is its own output stream (its own device and gain) reading the same converted audio;
  it is ignored, with a note, when it is the main output device (hearing yourself twice).
* Rates: the requested rate, else the input's default, else the output's, else 48k/44.1k — the
  first every device accepts (checked before opening, so PortAudio's bare "Invalid sample rate"
  never reaches the user). The device rate need not be the model rate: the converter resamples.
* Channels: one input channel is used (`input_channel`); the mono result is copied to every output
  channel (at most two are opened).
* Faults (device gone, stream error, callbacks that stop coming, persistent xrun flags, a crashed
  voice) set `fault` to a sentence; `poll()` reports it and the owner calls `stop()`. When the
  fault is a device that went away, `lost` names it (the session then waits for it to return).
  Callbacks never raise and never block.
* Driver xruns (PortAudio's over/underflow flags) and latency steps are logged in `xrun_log`
  (engine.audio.xruns); `poll()` also looks for latency steps.

Backends: `SoundDeviceBackend` (PortAudio) and `SimulatedBackend` (no devices: a microphone that
plays a given signal and outputs that are recorded, all on one simulated clock, with faults on
demand) for tests and demos.
"""
from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Literal, Protocol

import numpy as np

from engine.audio.devices import (PORTAUDIO_LOCK, DeviceError, DeviceInfo, Kind, SampleRateError, device_error,
                                  explain_error, find_device, list_devices, refresh)
from engine.audio.pulse import aimed_at, pulse_target_exists
from engine.audio.realtime import CALLBACK_PRIORITY, make_realtime, make_sound_server_link_realtime
from engine.audio.xruns import XrunLog
from engine.runner import RealtimeRunner

StreamKind = Literal["duplex", "input", "output"]
FALLBACK_RATES = (48000, 44100)
WASAPI = "Windows WASAPI"


# --- what to open ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class StreamPlan:
    """Resolved devices, rate and channel layout; `notes` are sentences for the user."""

    input: DeviceInfo
    output: DeviceInfo
    monitor: DeviceInfo | None
    rate: int
    frames: int                 # frames per callback asked of the driver
    input_channels: int         # channels opened on the input
    input_column: int           # the one we use
    output_channels: int
    monitor_channels: int
    exclusive: bool
    notes: tuple[str, ...] = ()

    @property
    def duplex(self) -> bool:
        return self.input.same_stream_device(self.output) and self.input.duplex_safe


@dataclass
class StreamRequest:
    """One stream for a backend to open."""

    kind: StreamKind
    rate: int
    frames: int
    callback: Callable[..., None]
    finished: Callable[[], None]
    input: DeviceInfo | None = None
    output: DeviceInfo | None = None
    input_channels: int = 0
    output_channels: int = 0
    input_column: int = 0
    exclusive: bool = False
    # True while the consumer still has work for audio already delivered. A real device never waits
    # for it; `SimulatedBackend(lockstep=True)` does, so a test about logic cannot be outrun.
    pending: Callable[[], bool] | None = None


class BackendStream(Protocol):
    latency: tuple[float, float]     # reported (input, output) seconds; 0 where not applicable

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


class AudioBackend(Protocol):
    """What `AudioIO` and `LiveSession` need from an audio system."""

    name: str

    def devices(self) -> list[DeviceInfo]: ...

    def check(self, device: DeviceInfo, kind: Kind, rate: int, channels: int, exclusive: bool = False) -> None:
        """Raise DeviceError (a sentence) when `device` cannot run `channels` at `rate`."""

    def open(self, request: StreamRequest) -> BackendStream: ...

    def refresh(self) -> None: ...

    def now(self) -> float:
        """Seconds on the clock the callbacks run by (the runner times split-stream offsets on it)."""


def plan_streams(backend: AudioBackend, *, input: int | str | None, output: int | str | None,
                 monitor: int | str | None = None, sample_rate: int | None = None, input_channel: int = 0,
                 callback_ms: float = 10.0, exclusive: bool = False) -> StreamPlan:
    """Resolve devices and pick a rate every device accepts (raises DeviceError with a sentence)."""
    devices = backend.devices()
    notes: list[str] = []
    dev_in = find_device(input, "input", devices)
    dev_out = find_device(output, "output", devices)
    dev_mon = find_device(monitor, "output", devices) if monitor is not None else None
    if dev_mon is not None and dev_mon.same_stream_device(dev_out) and dev_mon.pulse_target == dev_out.pulse_target:
        notes.append(f"The monitor is the same device as the output ({dev_out.label}); it is ignored, "
                     "otherwise you would hear yourself twice.")
        dev_mon = None
    if input_channel < 0 or input_channel >= dev_in.max_input_channels:
        raise DeviceError(f"{dev_in.label} has {dev_in.max_input_channels} input channel(s); channel "
                          f"{input_channel + 1} does not exist.")
    asio = "asio" in dev_in.hostapi.lower()
    in_channels, in_column = (1, 0) if asio else (input_channel + 1, input_channel)
    out_channels = min(2, dev_out.max_output_channels)
    mon_channels = min(2, dev_mon.max_output_channels) if dev_mon else 0
    if exclusive and dev_out.hostapi != WASAPI:
        notes.append("Exclusive mode exists only for WASAPI devices on Windows; using shared mode.")
        exclusive = False
    endpoints = [(dev_in, "input", in_channels), (dev_out, "output", out_channels)]
    if dev_mon is not None:
        endpoints.append((dev_mon, "output", mon_channels))
    rate = choose_rate(backend, sample_rate, endpoints, exclusive, notes)
    frames = max(16, round(callback_ms * rate / 1000.0))
    if not dev_in.same_stream_device(dev_out) and dev_in.hostapi != dev_out.hostapi:
        notes.append(f"Input ({dev_in.hostapi}) and output ({dev_out.hostapi}) use different host APIs; they "
                     "run as two streams, which works but adds a little latency. Pick both from one host API "
                     "for the lowest latency.")
    return StreamPlan(input=dev_in, output=dev_out, monitor=dev_mon, rate=rate, frames=frames,
                      input_channels=in_channels, input_column=in_column, output_channels=out_channels,
                      monitor_channels=mon_channels, exclusive=exclusive, notes=tuple(notes))


def choose_rate(backend: AudioBackend, requested: int | None, endpoints: list[tuple[DeviceInfo, Kind, int]],
                exclusive: bool, notes: list[str]) -> int:
    """The requested rate, else the endpoints' defaults, else 48k/44.1k: the first every endpoint accepts."""
    candidates: list[int] = []
    for r in ([requested] if requested else []) + [int(d.default_samplerate) for d, _, _ in endpoints] \
            + list(FALLBACK_RATES):
        if r and r not in candidates:
            candidates.append(int(r))
    refusals: dict[int, str] = {}
    for rate in candidates:
        for device, kind, channels in endpoints:
            try:
                backend.check(device, kind, rate, channels, exclusive)
            except SampleRateError as exc:
                refusals[rate] = str(exc)
                break
            # any other DeviceError (gone, busy, too few channels) is not cured by another rate: it propagates
        else:
            if requested and rate != requested:
                notes.append(f"{requested} Hz is not supported ({refusals.get(requested, 'refused')}); using "
                             f"{rate} Hz instead. The voice converter resamples, so this is fine.")
            return rate
    names = ", ".join(f"{d.label} (default {d.default_samplerate:g} Hz)" for d, _, _ in endpoints)
    raise DeviceError(f"No sample rate works for all of {names}. Set them to the same rate in the system "
                      f"sound settings. Last error: {refusals.get(candidates[-1], '')}")


# --- running the streams ---------------------------------------------------------------------------

class AudioIO:
    """The plan's streams wired to `runner` (+ optional recorder); owned by one control thread."""

    def __init__(self, backend: AudioBackend, plan: StreamPlan, runner: RealtimeRunner, *,
                 monitor_gain_db: float = 0.0, recorder: Any = None, stall_timeout_s: float = 1.0,
                 startup_grace_s: float = 4.0, max_flagged_callbacks: int = 200) -> None:
        self.backend = backend
        self.plan = plan
        self.runner = runner
        self.recorder = recorder
        self.monitor_gain = 10.0 ** (monitor_gain_db / 20.0)
        self.stall_timeout_s = stall_timeout_s
        self.startup_grace_s = startup_grace_s
        self._started = 0.0
        self.max_flagged = max_flagged_callbacks
        self.realtime = bool(getattr(backend, "realtime_threads", False))
        self.realtime_threads: dict[str, bool] = {}   # role -> whether its callback thread got SCHED_FIFO
        self.fault: str | None = None
        self.lost: DeviceInfo | None = None   # the device whose disappearance caused `fault`
        self.xrun_log = XrunLog(plan.rate)
        self.latency_step_check_s = 0.25
        self._step_checked = 0.0
        self._flag_run = 0
        self._streams: dict[str, BackendStream] = {}
        self._calls: dict[str, int] = {}
        self._seen: dict[str, tuple[int, float]] = {}
        self._stopping = False
        self._pulse_checked = time.monotonic()
        m = max(runner.max_frames, plan.frames * 8)
        self._mono = {role: np.zeros(m, np.float32) for role in ("output", "monitor")}
        self._in_copy = np.zeros(m, np.float32)

    # -- control ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Open and start every stream; on failure close what was opened and raise DeviceError."""
        plan, rate = self.plan, self.plan.rate
        runner = self.runner

        def pending() -> bool:
            return runner.alive and runner.in_ring.end - runner.processed_position >= runner.chunk

        requests: list[tuple[str, StreamRequest]] = []
        if plan.duplex:
            requests.append(("duplex", StreamRequest(
                "duplex", rate, plan.frames, self._duplex_cb, self._finished("duplex"), input=plan.input,
                output=plan.output, input_channels=plan.input_channels, output_channels=plan.output_channels,
                input_column=plan.input_column, exclusive=plan.exclusive)))
        else:
            requests.append(("input", StreamRequest(
                "input", rate, plan.frames, self._input_cb, self._finished("input"), input=plan.input,
                input_channels=plan.input_channels, input_column=plan.input_column, exclusive=plan.exclusive)))
            requests.append(("output", StreamRequest(
                "output", rate, plan.frames, self._output_cb, self._finished("output"), output=plan.output,
                output_channels=plan.output_channels, exclusive=plan.exclusive)))
        if plan.monitor is not None:
            requests.append(("monitor", StreamRequest(
                "output", rate, plan.frames, self._monitor_cb, self._finished("monitor"), output=plan.monitor,
                output_channels=plan.monitor_channels)))
        requests = [(role, dataclasses.replace(r, pending=pending)) for role, r in requests]
        self._stopping = False
        try:
            for role, request in requests:
                self._streams[role] = self.backend.open(request)
            self._started = time.monotonic()
            for role in self._streams:
                self._calls[role] = 0
                self._seen[role] = (0, self._started)
            for stream in self._streams.values():   # input first, so the output anchors to live input
                stream.start()
            if self.realtime:
                make_sound_server_link_realtime()     # PulseAudio's client threads, beside the callbacks
        except DeviceError:
            self.stop()
            raise
        except Exception as exc:  # noqa: BLE001 - PortAudio raises its own types; the user gets a sentence
            self.stop()
            raise DeviceError(explain_error(exc, self._device_named_in(str(exc)))) from exc

    def stop(self) -> None:
        """Stop and close every stream (safe to call twice, and after a fault)."""
        self._stopping = True
        for stream in list(self._streams.values()):
            with contextlib.suppress(Exception):
                stream.stop()
            with contextlib.suppress(Exception):
                stream.close()
        self._streams.clear()

    @property
    def running(self) -> bool:
        return bool(self._streams) and not self._stopping

    @property
    def xruns(self) -> int:
        """Callbacks the driver flagged with an over/underflow (see `xrun_log` for the kinds)."""
        return self.xrun_log.counts().total

    def set_monitor_gain(self, db: float) -> None:
        self.monitor_gain = 10.0 ** (db / 20.0)

    def reported_latency(self) -> tuple[float, float]:
        """The streams' own (input, output) latency in seconds, as the driver reports it."""
        lat_in = lat_out = 0.0
        for role, stream in self._streams.items():
            a, b = stream.latency
            if role in ("duplex", "input"):
                lat_in = float(a)
            if role in ("duplex", "output"):
                lat_out = float(b)
        return lat_in, lat_out

    def poll(self) -> str | None:
        """Watchdog (control thread): the fault sentence once something went wrong, else None."""
        if self.fault is None and self.runner.fault is not None:
            self.fault = self.runner.fault
        if self.fault is None and self._streams and not self._stopping:
            now = time.monotonic()
            # Some drivers take seconds to run steadily: Bluetooth and USB waking up, or a PulseAudio
            # null sink nobody records from yet (it has rendered ~2 s ahead: measured 3 callbacks,
            # then none for 2 s, then steady).
            limit = self.stall_timeout_s if now - self._started > self.startup_grace_s \
                else max(self.startup_grace_s, self.stall_timeout_s)
            for role in self._streams:
                calls, since = self._seen[role]
                if self._calls[role] != calls:
                    self._seen[role] = (self._calls[role], now)
                elif now - since > limit:
                    device = self._role_device(role)
                    self._lose(device, f"{device.label} stopped delivering audio for {now - since:.1f} s. It may "
                                       "have been unplugged, or another program took it over.")
            if self.fault is None and now - self._pulse_checked > 1.0:
                self._pulse_checked = now
                self._pulse_gone()
            if now - self._step_checked > self.latency_step_check_s:
                self._step_checked = now
                self.xrun_log.check()
        return self.fault

    def _lose(self, device: DeviceInfo, sentence: str) -> None:
        if self.fault is None:
            self.lost, self.fault = device, sentence

    def _pulse_gone(self) -> None:
        """`pulse:NAME` devices: PulseAudio silently moves a stream whose sink/source is removed (to
        the speakers, maybe), so check that the targets still exist."""
        plan = self.plan
        for device, kind in ((plan.input, "input"), (plan.output, "output"), (plan.monitor, "output")):
            if device is not None and device.pulse_target and pulse_target_exists(device.pulse_target, kind) is False:
                what = "sink" if kind == "output" else "source"
                self._lose(device, f"{device.name} is gone: the PulseAudio {what} '{device.pulse_target}' was "
                                   "removed.")
                return

    # -- callbacks (audio threads: copy, never raise, never block) -----------------------------------
    def _duplex_cb(self, indata: np.ndarray, outdata: np.ndarray, frames: int, ti: Any, status: Any) -> None:
        try:
            self._flags(status)
            x = self._input(indata, frames)
            y = self._mono["output"][:frames]
            out_delay = _until(ti, "outputBufferDacTime")
            self.xrun_log.output_delay(out_delay)
            self.runner.process(x, y, input_latency=_since(ti, "inputBufferAdcTime"), output_latency=out_delay)
            np.copyto(outdata, y[:, None])
            if self.recorder is not None:
                self.recorder.push_input(x)
                self.recorder.push_output(y)
            self._counted("duplex")
        except Exception as exc:  # noqa: BLE001
            self._callback_failed(exc, outdata)

    def _input_cb(self, indata: np.ndarray, frames: int, ti: Any, status: Any) -> None:
        try:
            self._flags(status)
            x = self._input(indata, frames)
            self.runner.push(x, input_latency=_since(ti, "inputBufferAdcTime"), now=self.backend.now())
            if self.recorder is not None:
                self.recorder.push_input(x)
            self._counted("input")
        except Exception as exc:  # noqa: BLE001
            self._callback_failed(exc, None)

    def _output_cb(self, outdata: np.ndarray, frames: int, ti: Any, status: Any) -> None:
        try:
            self._flags(status)
            y = self._mono["output"][:frames]
            out_delay = _until(ti, "outputBufferDacTime")
            self.xrun_log.output_delay(out_delay)
            self.runner.pull(y, output_latency=out_delay, now=self.backend.now())
            np.copyto(outdata, y[:, None])
            if self.recorder is not None:
                self.recorder.push_output(y)
            self._counted("output")
        except Exception as exc:  # noqa: BLE001
            self._callback_failed(exc, outdata)

    def _monitor_cb(self, outdata: np.ndarray, frames: int, ti: Any, status: Any) -> None:
        try:
            y = self._mono["monitor"][:frames]
            self.runner.pull(y, monitor=True, now=self.backend.now())
            y *= self.monitor_gain
            np.copyto(outdata, y[:, None])
            self._counted("monitor")
        except Exception as exc:  # noqa: BLE001
            self._callback_failed(exc, outdata)

    def _counted(self, role: str) -> None:
        """One more callback of `role`; on the first, ask for real-time scheduling (engine.audio.realtime:
        Linux applies it to the calling thread, the driver's callback thread)."""
        if self._calls[role] == 0 and self.realtime:
            self.realtime_threads[role] = make_realtime(CALLBACK_PRIORITY)
        self._calls[role] += 1

    def _input(self, indata: np.ndarray, frames: int) -> np.ndarray:
        x = self._in_copy[:frames]
        np.copyto(x, indata[:, self.plan.input_column])
        return x

    def _flags(self, status: Any) -> None:
        """Driver over/underflows are counted; only a long unbroken run of them is a fault."""
        if self.xrun_log.flag(status, self.runner.in_ring.end):
            self._flag_run += 1
            if self._flag_run == self.max_flagged and self.fault is None:
                self.fault = (f"The audio driver reported over/underflows on {self._flag_run} callbacks in a row "
                              f"({status}). The device may be overloaded or failing; try a larger block.")
        else:
            self._flag_run = 0

    def _callback_failed(self, exc: Exception, outdata: np.ndarray | None) -> None:
        if outdata is not None:
            outdata.fill(0.0)
        if self.fault is None:
            self.fault = f"The audio callback failed: {type(exc).__name__}: {exc}"

    def _finished(self, role: str) -> Callable[[], None]:
        def finished() -> None:
            if not self._stopping and self.fault is None:
                device = self._role_device(role)
                self._lose(device, f"{device.label} stopped unexpectedly: it was disconnected, or the audio "
                                   "server went away.")
        return finished

    def _role_device(self, role: str) -> DeviceInfo:
        plan = self.plan
        return {"duplex": plan.input, "input": plan.input, "output": plan.output}.get(role) or plan.monitor \
            or plan.output

    def _device_named_in(self, text: str) -> str:
        for device in (self.plan.input, self.plan.output, self.plan.monitor):
            if device is not None and device.name in text:
                return device.label
        return "The audio device"


def _since(ti: Any, attr: str) -> float | None:
    """currentTime - a callback time stamp (None when the host gives no time stamps)."""
    stamp, now = float(getattr(ti, attr, 0.0) or 0.0), float(getattr(ti, "currentTime", 0.0) or 0.0)
    return now - stamp if stamp > 0.0 and now > 0.0 else None


def _until(ti: Any, attr: str) -> float | None:
    stamp, now = float(getattr(ti, attr, 0.0) or 0.0), float(getattr(ti, "currentTime", 0.0) or 0.0)
    return stamp - now if stamp > 0.0 and now > 0.0 else None


# --- PortAudio through sounddevice -----------------------------------------------------------------

class _SdStream:
    def __init__(self, stream: Any) -> None:
        self._s = stream

    @property
    def latency(self) -> tuple[float, float]:
        lat = self._s.latency
        if isinstance(lat, tuple):
            return float(lat[0]), float(lat[1])
        return (float(lat), 0.0) if isinstance(self._s, self._input_type()) else (0.0, float(lat))

    def _input_type(self) -> type:
        import sounddevice as sd

        return sd.InputStream

    def start(self) -> None:
        self._s.start()

    def stop(self) -> None:
        self._s.abort()        # drop what is queued: stopping must be quick, not drain the buffers

    def close(self) -> None:
        self._s.close()


class SoundDeviceBackend:
    """PortAudio via sounddevice (WASAPI/ASIO extras only where the host API has them)."""

    name = "PortAudio"
    realtime_threads = True       # the audio threads ask for SCHED_FIFO (engine.audio.realtime), where allowed

    def __init__(self, latency: str | float = "low") -> None:
        import sounddevice as sd

        self.sd = sd
        self.latency = latency

    def devices(self) -> list[DeviceInfo]:
        return list_devices(self.sd)

    def now(self) -> float:
        return time.perf_counter()

    def refresh(self) -> None:
        refresh(self.sd)

    def _extra(self, device: DeviceInfo, exclusive: bool, column: int | None = None) -> Any:
        if device.hostapi == WASAPI:
            # Shared mode: let Windows resample, so the device's mixer rate never refuses ours.
            return self.sd.WasapiSettings(exclusive=True) if exclusive else self.sd.WasapiSettings(auto_convert=True)
        if column is not None and "asio" in device.hostapi.lower():
            return self.sd.AsioSettings(channel_selectors=[column])
        return None

    def check(self, device: DeviceInfo, kind: Kind, rate: int, channels: int, exclusive: bool = False) -> None:
        fn = self.sd.check_input_settings if kind == "input" else self.sd.check_output_settings
        try:
            with PORTAUDIO_LOCK, aimed_at(**{"source" if kind == "input" else "sink": device.pulse_target}):
                fn(device=device.index, channels=channels, samplerate=rate, dtype="float32",
                   extra_settings=self._extra(device, exclusive))
        except Exception as exc:  # noqa: BLE001 - PortAudioError or ValueError: both become a sentence
            raise device_error(exc, f"{device.label} at {rate} Hz") from exc

    def open(self, r: StreamRequest) -> BackendStream:
        sd = self.sd
        common = dict(samplerate=r.rate, blocksize=r.frames, dtype="float32", latency=self.latency,
                      callback=r.callback, finished_callback=r.finished)
        column = None if r.input is None or r.input_channels != 1 else r.input_column
        in_extra = self._extra(r.input, r.exclusive, column) if r.input else None
        out_extra = self._extra(r.output, r.exclusive) if r.output else None
        with PORTAUDIO_LOCK, aimed_at(source=r.input.pulse_target if r.input else None,
                                      sink=r.output.pulse_target if r.output else None):
            if r.kind == "duplex":
                stream = sd.Stream(device=(r.input.index, r.output.index),
                                   channels=(r.input_channels, r.output_channels),
                                   extra_settings=(in_extra, out_extra), **common)
            elif r.kind == "input":
                stream = sd.InputStream(device=r.input.index, channels=r.input_channels, extra_settings=in_extra,
                                        **common)
            else:
                stream = sd.OutputStream(device=r.output.index, channels=r.output_channels, extra_settings=out_extra,
                                         **common)
        return _SdStream(stream)


# --- no devices: a simulated sound card ------------------------------------------------------------

@dataclass(frozen=True)
class SimFlags:
    """The simulated callbacks' status, shaped like sounddevice's CallbackFlags."""

    input_overflow: bool = False
    input_underflow: bool = False
    output_overflow: bool = False
    output_underflow: bool = False
    priming_output: bool = False

    def __bool__(self) -> bool:
        return any(dataclasses.astuple(self))


@dataclass
class _TimeInfo:
    currentTime: float
    inputBufferAdcTime: float
    outputBufferDacTime: float


@dataclass
class _SimStream:
    backend: "SimulatedBackend"
    request: StreamRequest
    latency: tuple[float, float]
    active: bool = False
    closed: bool = False

    def start(self) -> None:
        if self.closed:
            raise DeviceError("stream is closed")
        self.backend._attach(self)

    def stop(self) -> None:
        self.backend._detach(self)

    def close(self) -> None:
        self.backend._detach(self)
        self.closed = True


@dataclass
class SimDevice:
    name: str
    inputs: int
    outputs: int
    rate: int = 48000
    rates: tuple[int, ...] = (44100, 48000)


class SimulatedBackend:
    """A sound card without hardware, for tests and demos.

    Every stream runs on one clock that ticks `frames` samples at a time (in real time, or `speed`
    times faster). The microphone of every input device plays `signal` from clock sample 0 (then
    silence; only on channel `mic_channel` if given); everything written to an output device (its
    first channel) is kept in `played[name]`, indexed by clock
    sample, so input and output line up on one clock. Time stamps say the input is
    `input_latency` s old and the output plays `output_latency` s later. Faults on demand:
    `disconnect(name)`, `flag_status(True)` (or any `SimFlags`), `fail_open = "message"` (for the
    next `fail_opens` opens only, when set),
    `output_latency` changed while running (a latency step).

    `lockstep=True`: before each tick the clock waits until no stream's consumer has work pending
    (`StreamRequest.pending`), so however loaded the machine, the worker is never late: for tests
    about logic rather than real-time speed (the clock still never runs faster than `speed`).
    """

    name = "Simulated"

    def __init__(self, signal: np.ndarray | None = None, *, rate: int = 48000, frames: int = 480,
                 input_latency: float = 0.005, output_latency: float = 0.010, speed: float = 1.0,
                 devices: list[SimDevice] | None = None, seconds: float = 60.0, mic_channel: int | None = None,
                 lockstep: bool = False, lockstep_timeout_s: float = 10.0) -> None:
        self.signal = np.zeros(0, np.float32) if signal is None else np.asarray(signal, np.float32)
        self.mic_channel = mic_channel       # None: the signal is on every input channel
        self.rate, self.frames, self.speed = rate, frames, speed
        self.input_latency, self.output_latency = input_latency, output_latency
        self.sim_devices = devices or [
            SimDevice("Sim Microphone", 2, 0), SimDevice("Sim Speakers", 0, 2),
            SimDevice("Sim Cable", 2, 2), SimDevice("Sim Headphones", 0, 2, rates=(48000,)),
        ]
        self.played = {d.name: np.zeros(int(seconds * rate), np.float32) for d in self.sim_devices}
        self.clock = 0                       # clock samples elapsed
        self.lockstep, self.lockstep_timeout_s = lockstep, lockstep_timeout_s
        self.fail_open: str | None = None
        self.fail_opens: int | None = None    # fail only the next N opens (None: every open)
        self.unequal_output_channels = 0     # callbacks whose output channels differed
        self.flags = SimFlags()
        self.gone: set[str] = set()
        self._streams: list[_SimStream] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    # -- AudioBackend -------------------------------------------------------------------------------
    def devices(self) -> list[DeviceInfo]:
        found = []
        for i, d in enumerate(self.sim_devices):
            if d.name in self.gone:
                continue
            found.append(DeviceInfo(
                index=i, name=d.name, hostapi=self.name, max_input_channels=d.inputs, max_output_channels=d.outputs,
                default_samplerate=float(d.rate), default_low_input_latency=self.input_latency,
                default_low_output_latency=self.output_latency,
                is_default_input=d.name == "Sim Microphone", is_default_output=d.name == "Sim Speakers"))
        return found

    def now(self) -> float:
        """The simulated clock, not the wall: a loaded machine cannot skew what the runner measures."""
        return self.clock / self.rate

    def refresh(self) -> None:
        pass

    def check(self, device: DeviceInfo, kind: Kind, rate: int, channels: int, exclusive: bool = False) -> None:
        sim = self.sim_devices[device.index]
        if sim.name in self.gone:
            raise DeviceError(explain_error("Device unavailable", device.label))
        if rate not in sim.rates:
            raise device_error("Invalid sample rate [PaErrorCode -9997]", f"{device.label} at {rate} Hz")
        if channels > (sim.inputs if kind == "input" else sim.outputs):
            raise DeviceError(explain_error("Invalid number of channels", device.label))

    def open(self, request: StreamRequest) -> _SimStream:
        if self.fail_open and self.fail_opens != 0:
            if self.fail_opens is not None:
                self.fail_opens -= 1
            raise DeviceError(explain_error(self.fail_open, "Simulated device"))
        for device, kind, ch in ((request.input, "input", request.input_channels),
                                 (request.output, "output", request.output_channels)):
            if device is not None:
                self.check(device, kind, request.rate, ch)
        lat = (self.input_latency if request.input else 0.0, self.output_latency if request.output else 0.0)
        return _SimStream(self, request, lat)

    # -- faults -------------------------------------------------------------------------------------
    def disconnect(self, name: str) -> None:
        """The device vanishes: its streams finish (as PortAudio's do) and it leaves the list."""
        with self._lock:
            self.gone.add(name)
            victims = [s for s in self._streams if name in _names(s.request)]
            for s in victims:
                self._streams.remove(s)
                s.active = False
        for s in victims:
            s.request.finished()

    def reconnect(self, name: str) -> None:
        self.gone.discard(name)

    def flag_status(self, on: bool | SimFlags) -> None:
        """Every callback reports these flags (True: an input overflow) until called again."""
        self.flags = on if isinstance(on, SimFlags) else SimFlags(input_overflow=bool(on))

    # -- the clock ----------------------------------------------------------------------------------
    def wait_clock(self, sample: int, timeout: float = 30.0) -> None:
        """Block until the clock passed `sample` (tests wait on sample counts, not on time)."""
        end = time.monotonic() + timeout
        while self.clock < sample:
            if time.monotonic() > end:
                raise TimeoutError(f"simulated clock stuck at {self.clock} < {sample}")
            time.sleep(0.002)

    def _attach(self, stream: _SimStream) -> None:
        with self._lock:
            if stream not in self._streams:
                self._streams.append(stream)
                stream.active = True
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="sim-audio-clock", daemon=True)
                self._thread.start()

    def _detach(self, stream: _SimStream) -> None:
        with self._lock:
            if stream in self._streams:
                self._streams.remove(stream)
            stream.active = False

    def _run(self) -> None:
        n, rate = self.frames, self.rate
        start_wall, start_clock = time.perf_counter(), self.clock
        buffers: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        while True:
            with self._lock:
                streams = list(self._streams)
            if not streams:
                return
            due = start_wall + (self.clock + n - start_clock) / rate / self.speed
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if self.lockstep:
                self._wait_for_consumers(streams)
                start_wall, start_clock = time.perf_counter(), self.clock   # waiting is not lateness
            t = self.clock / rate
            ti = _TimeInfo(currentTime=t + 1.0, inputBufferAdcTime=t + 1.0 - self.input_latency,
                           outputBufferDacTime=t + 1.0 + self.output_latency)
            status = self.flags
            # Input streams first: a callback sees the microphone's newest buffer.
            for s in sorted(streams, key=lambda s: s.request.kind != "input"):
                r = s.request
                if id(s) not in buffers:
                    buffers[id(s)] = (np.zeros((n, max(1, r.input_channels)), np.float32),
                                      np.zeros((n, max(1, r.output_channels)), np.float32))
                ind, outd = buffers[id(s)]
                if r.input is not None:
                    ind[:] = 0.0
                    columns = slice(None) if self.mic_channel is None else slice(self.mic_channel, self.mic_channel + 1)
                    ind[:, columns] = self._mic(self.clock, n)[:, None]
                if not s.active:
                    continue
                if r.kind == "duplex":
                    r.callback(ind, outd, n, ti, status)
                elif r.kind == "input":
                    r.callback(ind, n, ti, status)
                else:
                    r.callback(outd, n, ti, status)
                if r.output is not None:
                    self._play(r.output.name, self.clock, outd[:, 0])
                    self.unequal_output_channels += int(not (outd == outd[:, :1]).all())
            self.clock += n

    def _wait_for_consumers(self, streams: list[_SimStream]) -> None:
        end = time.monotonic() + self.lockstep_timeout_s
        while any(s.active and s.request.pending is not None and s.request.pending() for s in streams):
            if time.monotonic() > end:
                return                       # a stuck consumer: let the clock go on (the test will see it)
            time.sleep(0.0005)

    def _mic(self, at: int, n: int) -> np.ndarray:
        out = np.zeros(n, np.float32)
        chunk = self.signal[at:at + n]
        out[:len(chunk)] = chunk
        return out

    def _play(self, name: str, at: int, y: np.ndarray) -> None:
        buf = self.played[name]
        m = max(0, min(len(y), len(buf) - at))
        buf[at:at + m] += y[:m]


def _names(r: StreamRequest) -> set[str]:
    return {d.name for d in (r.input, r.output) if d is not None}


__all__ = ["AudioBackend", "AudioIO", "BackendStream", "SimDevice", "SimFlags", "SimulatedBackend", "SoundDeviceBackend",
           "StreamPlan", "StreamRequest", "choose_rate", "plan_streams"]
