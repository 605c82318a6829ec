"""Audio devices as the user sees them: listing, lookup by index or name, sample-rate choice, errors.

Everything here talks to PortAudio through sounddevice (passed in as `sd`, so tests and the
simulated backend can hand in something else). Three user complaints drive the design:
"Invalid sample rate" (we check a rate before opening and fall back to the device default, saying
so), host-API mismatches (devices are listed grouped by host API and a pair from two host APIs is
never opened as one duplex stream), and cryptic PortAudio errors (`explain_error` turns them into a
sentence).

A device may also be named `pulse:NAME`: the ALSA `pulse` device aimed at the PulseAudio/PipeWire
sink or source NAME (Debian's PortAudio only has ALSA, so this is how a Linux user reaches a null
sink such as the CoMo Live virtual microphone without editing ALSA configuration).
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.audio.pulse import PULSE_HOSTAPI, PULSE_PREFIX, pulse_targets

Kind = Literal["input", "output"]


class DeviceError(RuntimeError):
    """A device could not be found, opened or configured; `str()` is a sentence for the user."""


class SampleRateError(DeviceError):
    """The device refused the sample rate (another rate may work)."""


@dataclass(frozen=True)
class DeviceInfo:
    """One PortAudio device (or a `pulse:NAME` target riding on the ALSA `pulse` device)."""

    index: int
    name: str
    hostapi: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate: float
    default_low_input_latency: float = 0.0
    default_low_output_latency: float = 0.0
    is_default_input: bool = False
    is_default_output: bool = False
    pulse_target: str | None = None     # PulseAudio sink/source name for `pulse:NAME` devices

    @property
    def label(self) -> str:
        """How the device is shown to the user: name and host API."""
        return f"{self.name} [{self.hostapi}]"

    def channels(self, kind: Kind) -> int:
        return self.max_input_channels if kind == "input" else self.max_output_channels

    def same_stream_device(self, other: "DeviceInfo") -> bool:
        """True when one duplex stream can serve both (same device, same host API)."""
        return self.index == other.index and self.hostapi == other.hostapi

    @property
    def duplex_safe(self) -> bool:
        """Whether PortAudio may run this device as one duplex stream.

        Not for ALSA plugin devices (`pulse`, `default`, `pulse:NAME`, pcms defined in asound.conf):
        only direct hardware (`(hw:X,Y)`). PortAudio's ALSA duplex loop asks the *other* PCM for
        its delay (snd_pcm_delay) every period and ends the stream on any error but -EPIPE; the
        ALSA pulse plugin (alsa-plugins 1.2.7) answers -EIO while its PulseAudio stream has no
        timing data yet (it compares pa_stream_get_latency's -PA_ERR_NODATA with +PA_ERR_NODATA,
        so it never waits for it) -- right after start and again after every xrun recovery, which
        recreates the stream. Measured: 1 in 5 duplex starts on a fresh server ended at once
        ("Expression 'err' failed in pa_linux_alsa.c, line 3355"), the user saw "disconnected".
        Two one-direction streams never make that call.
        """
        return self.hostapi != "ALSA" or "(hw:" in self.name


@dataclass(frozen=True)
class HostApi:
    """A host API (MME, WASAPI, ASIO, Core Audio, ALSA, ...) and its devices."""

    name: str
    devices: tuple[DeviceInfo, ...] = field(default_factory=tuple)
    default_input: int | None = None
    default_output: int | None = None


# PortAudio's device list, and starting it again (`refresh`), are not thread-safe: a rescan from one
# thread while another thread (a session waiting for its device, the app's device list) reads the
# list or opens a stream aborted the process (seen: two Pa_Initialize at once, SIGABRT). Everything
# that touches PortAudio's device list or opens a stream holds this lock.
PORTAUDIO_LOCK = threading.RLock()


def _sd() -> Any:
    import sounddevice

    return sounddevice


def list_devices(sd: Any = None, include_pulse: bool = False) -> list[DeviceInfo]:
    """Every device PortAudio reports (empty when there is no audio system, never an exception).

    `include_pulse`: when PortAudio has the ALSA `pulse` device (Linux), also every PulseAudio/
    PipeWire sink and source as a `pulse:NAME` device (null sinks = virtual cables), so a user can
    pick one by name. What the app and `engine.live --list-devices` show.
    """
    sd = sd or _sd()
    with PORTAUDIO_LOCK:
        try:
            raw = sd.query_devices()
            apis = sd.query_hostapis()
        except Exception:  # noqa: BLE001 - PortAudio missing or not initialised: no devices
            return []
        default_in, default_out = _defaults(sd)
    found = []
    for d in raw:
        found.append(DeviceInfo(
            index=int(d["index"]), name=str(d["name"]), hostapi=str(apis[d["hostapi"]]["name"]),
            max_input_channels=int(d["max_input_channels"]), max_output_channels=int(d["max_output_channels"]),
            default_samplerate=float(d["default_samplerate"]),
            default_low_input_latency=float(d["default_low_input_latency"]),
            default_low_output_latency=float(d["default_low_output_latency"]),
            is_default_input=int(d["index"]) == default_in, is_default_output=int(d["index"]) == default_out))
    if include_pulse and any(d.name == "pulse" for d in found):
        found += pulse_devices()
    return found


def pulse_devices() -> list[DeviceInfo]:
    """PulseAudio/PipeWire sinks and sources as `pulse:NAME` devices (empty without a server).

    PortAudio on Linux reaches them only through the ALSA `pulse` device; these entries let a user
    pick one by name (the index is meaningless: pass the name to the session).
    """
    return [DeviceInfo(index=-1, name=f"{PULSE_PREFIX}{t.name}", hostapi=PULSE_HOSTAPI,
                       max_input_channels=2 if t.kind == "input" else 0,
                       max_output_channels=2 if t.kind == "output" else 0,
                       default_samplerate=t.rate, pulse_target=t.name)
            for t in pulse_targets()]


def _defaults(sd: Any) -> tuple[int, int]:
    try:
        pair = sd.default.device
        return int(pair[0]), int(pair[1])
    except Exception:  # noqa: BLE001
        return -1, -1


def host_apis(sd: Any = None) -> list[HostApi]:
    """Devices grouped by host API, in PortAudio's host-API order (empty host APIs are left out)."""
    sd = sd or _sd()
    devices = list_devices(sd)
    groups: list[HostApi] = []
    try:
        with PORTAUDIO_LOCK:
            apis = sd.query_hostapis()
    except Exception:  # noqa: BLE001
        return groups
    for api in apis:
        members = tuple(d for d in devices if d.hostapi == api["name"])
        if members:
            groups.append(HostApi(
                name=str(api["name"]), devices=members,
                default_input=api["default_input_device"] if api["default_input_device"] >= 0 else None,
                default_output=api["default_output_device"] if api["default_output_device"] >= 0 else None))
    return groups


def refresh(sd: Any = None) -> None:
    """Re-scan devices (PortAudio only sees devices plugged in before it started).

    Only call this with no stream open: PortAudio is shut down and started again.
    """
    sd = sd or _sd()
    with PORTAUDIO_LOCK:
        try:
            sd._terminate()
        except Exception:  # noqa: BLE001 - was not initialised
            pass
        sd._initialize()


def find_device(spec: int | str | None, kind: Kind, devices: list[DeviceInfo]) -> DeviceInfo:
    """The device the user meant by `spec`: None = default, an index, `pulse:NAME`, or a name.

    Names match exactly (case-insensitive, with or without the `[host API]` suffix) first, then as
    a unique substring. Only devices with channels of `kind` are candidates.
    """
    what = "input" if kind == "input" else "output"
    usable = [d for d in devices if d.channels(kind) > 0]
    if not usable:
        raise DeviceError(f"No {what} devices were found. Is an audio device connected, and (on Linux) is "
                          "PulseAudio or PipeWire running?")
    if spec is None or spec == "" or spec == "default":
        found = next((d for d in usable if (d.is_default_input if kind == "input" else d.is_default_output)), None)
        if found is None:
            raise DeviceError(f"There is no default {what} device; choose one from the list.")
        return found
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        index = int(spec)
        found = next((d for d in devices if d.index == index), None)
        if found is None:
            raise DeviceError(f"There is no audio device number {index} (devices go from 0 to {len(devices) - 1}).")
        if found.channels(kind) == 0:
            raise DeviceError(f"{found.label} has no {what} channels; choose an {what} device.")
        return found
    text = str(spec).strip()
    if text.lower().startswith(PULSE_PREFIX):
        return _pulse_device(text[len(PULSE_PREFIX):], kind, usable)
    low = text.lower()
    exact = [d for d in usable if low in (d.name.lower(), d.label.lower())]
    if len(exact) == 1:
        return exact[0]
    if len(exact) > 1:
        return _prefer_default_api(exact, kind, text)
    partial = [d for d in usable if low in d.label.lower()]
    if len(partial) == 1:
        return partial[0]
    if len(partial) > 1:
        return _prefer_default_api(partial, kind, text)
    names = ", ".join(d.label for d in usable[:12])
    raise DeviceError(f"No {what} device is called {text!r}. Available {what} devices: {names}.")


def _prefer_default_api(matches: list[DeviceInfo], kind: Kind, text: str) -> DeviceInfo:
    """Several host APIs expose the same device: take the one the default device uses, else ask."""
    defaults = [d for d in matches if (d.is_default_input if kind == "input" else d.is_default_output)]
    if len(defaults) == 1:
        return defaults[0]
    names = "; ".join(d.label for d in matches)
    raise DeviceError(f"{text!r} matches several devices ({names}); give the device number or the full "
                      "name with its [host API].")


def _pulse_device(target: str, kind: Kind, usable: list[DeviceInfo]) -> DeviceInfo:
    if not target:
        raise DeviceError("`pulse:` needs a PulseAudio sink or source name, e.g. pulse:como_live_sink.")
    base = next((d for d in usable if d.name == "pulse"), None)
    if base is None:
        raise DeviceError(f"pulse:{target} needs the ALSA 'pulse' device, which PortAudio does not list. Install "
                          "libasound2-plugins and make sure PulseAudio or PipeWire (pipewire-pulse) is running.")
    # The ALSA `pulse` device reports a generic default (often 44.1 kHz); the sink/source itself has
    # a real rate, and running at it avoids a resampler in the server (and, measured, a null sink
    # with no other client stalling at the mismatched rate).
    own = next((t.rate for t in pulse_targets() if t.name == target), None)
    return DeviceInfo(index=base.index, name=f"{PULSE_PREFIX}{target}", hostapi=base.hostapi,
                      max_input_channels=base.max_input_channels, max_output_channels=base.max_output_channels,
                      default_samplerate=own or base.default_samplerate,
                      default_low_input_latency=base.default_low_input_latency,
                      default_low_output_latency=base.default_low_output_latency, pulse_target=target)


def format_devices(groups: list[HostApi]) -> str:
    """A plain-text table for `--list-devices`: grouped by host API, defaults marked."""
    if not groups:
        return ("No audio devices found. On Linux, install libportaudio2 and libasound2-plugins and make sure "
                "PulseAudio or PipeWire is running.")
    lines = []
    for api in groups:
        lines.append(f"{api.name}:")
        for d in api.devices:
            marks = "".join(m for m, on in (("<", d.is_default_input), (">", d.is_default_output)) if on)
            lines.append(f"  {d.index:3d} {marks:2s} {d.name}  (in {d.max_input_channels}, out "
                         f"{d.max_output_channels}, {d.default_samplerate:g} Hz)")
    lines.append("< default input, > default output. A PulseAudio sink or source can also be named pulse:NAME.")
    return "\n".join(lines)


# --- PortAudio errors as sentences ---------------------------------------------------------------

_ERRORS: tuple[tuple[str, str], ...] = (
    ("invalid sample rate", "{device} does not support this sample rate."),
    ("sample rate", "{device} does not support this sample rate."),
    ("invalid number of channels", "{device} does not have that many channels."),
    ("device unavailable", "{device} is unavailable: it is in use by another program (exclusive mode) or was "
                           "unplugged."),
    ("invalid device", "{device} is not a valid device any more; it may have been unplugged. Refresh the list."),
    ("illegal combination of i/o devices", "The input and output devices belong to different host APIs, so they "
                                           "cannot share one stream."),
    ("bad i/o device combination", "The input and output devices cannot be opened together."),
    ("incompatible host api specific stream info", "That option is not available for this host API."),
    ("insufficient memory", "The audio system ran out of memory."),
    ("timed out", "{device} did not respond in time."),
    ("error querying device -1", "There is no default device; choose one from the list."),
    ("host error", "The audio system reported an error for {device} (it may have been unplugged or taken over "
                   "by another program)."),
)


def explain_error(exc: BaseException | str, device: str = "The device") -> str:
    """One sentence for the user from a PortAudio/sounddevice error (the raw text in brackets)."""
    raw = str(exc).strip()
    low = raw.lower()
    for needle, sentence in _ERRORS:
        if needle in low:
            return f"{sentence.format(device=device)} ({_short(raw)})"
    return f"{device} reported an error: {_short(raw)}"


def device_error(exc: BaseException | str, device: str = "The device") -> DeviceError:
    """`explain_error` as an exception: SampleRateError when only the rate was refused."""
    cls = SampleRateError if "sample rate" in str(exc).lower() else DeviceError
    return cls(explain_error(exc, device))


def _short(raw: str) -> str:
    return re.sub(r"\s+", " ", raw)[:200]
