"""Plain values the panels and widgets display: devices, voices, the latency view, readouts.

No Qt, no engine: `app.engine_adapter` translates engine objects into these, `app.bridge` emits
them, panels read them.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

SILENCE_DB = -120.0


@dataclass(frozen=True)
class DeviceRef:
    """A device as the user knows it; resolved to a PortAudio index only when a session starts."""

    name: str
    hostapi: str

    def label(self) -> str:
        return f"{self.name} ({self.hostapi})"


@dataclass(frozen=True)
class DeviceInfo:
    """One audio device as listed to the user: the engine's description plus what the app marks."""

    index: int                     # PortAudio index; -1 for `pulse:NAME` entries
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
    is_virtual: bool = False       # a virtual cable end (VB-Cable, BlackHole, PulseAudio null sink…)
    is_suggested_output: bool = False  # the cable side to play into (engine.audio.virtual_cable.suggest_output)

    @property
    def label(self) -> str:
        """How the device is shown to the user: name and host API."""
        return f"{self.name} [{self.hostapi}]"

    @property
    def ref(self) -> DeviceRef:
        return DeviceRef(self.name, self.hostapi)

    @property
    def session_spec(self) -> int | str:
        """What SessionConfig gets: the PortAudio index, or the name for `pulse:NAME` entries (index -1)."""
        return self.index if self.index >= 0 else self.name


def group_by_hostapi(devices: Iterable[DeviceInfo]) -> dict[str, list[DeviceInfo]]:
    """Devices per host API, host APIs in first-seen order (PortAudio lists the platform's best first)."""
    groups: dict[str, list[DeviceInfo]] = {}
    for device in devices:
        groups.setdefault(device.hostapi, []).append(device)
    return groups


@dataclass(frozen=True)
class VoiceInfo:
    """A voice the user can pick. `speakers` are (name, id) in the pack's order; `previews` names the
    speakers the pack has a preview clip of; `shipped`: a voice pack that comes with the program (like
    the built-in voice it lives in the program's folder, not among the user's imported packs);
    `has_notice`: the pack names its sources and licences."""

    spec: str
    name: str
    speakers: tuple[tuple[str, int], ...]
    builtin: bool = False
    previews: frozenset[str] = frozenset()
    shipped: bool = False
    has_notice: bool = False

    @property
    def label(self) -> str:
        """What the voice picker shows."""
        return f"{self.name} (shipped with CoMo Live)" if self.shipped else self.name

    def speaker_name(self, speaker_id: int) -> str | None:
        return next((name for name, sid in self.speakers if sid == speaker_id), None)


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


@dataclass(frozen=True)
class Readouts:
    """One snapshot of the running session, in display units."""

    state: str
    message: str = ""
    latency: LatencyView | None = None
    compute_p50_ms: float | None = None
    compute_p99_ms: float | None = None
    block_budget_ms: float | None = None
    budget_auto: bool = False      # measured, raised after late blocks
    budget_note: str = ""          # the adaptive budget's last change, as a sentence
    underruns: int = 0
    queue_depth: int = 0
    provider: str = ""
    provider_note: str = ""
    input_db: float = SILENCE_DB
    output_db: float = SILENCE_DB
    blocks: int = 0
    recording: tuple[str, ...] = ()
    device_xruns: int = 0          # over/underflows the driver reported (vs. `underruns`: late blocks)
    xruns_text: str = "0"          # the same by kind, e.g. "2 (output underflow 2)"
    latency_steps: tuple[str, ...] = ()   # each driver delay step, a sentence with its cause
    waiting_for: str | None = None  # state "waiting": the device audio resumes on when it is back
    reconnects: int = 0            # times audio resumed by itself after a device came back
    sample_rate: int | None = None
    notes: tuple[str, ...] = ()    # e.g. "the monitor is the output device; ignored"


IDLE = Readouts(state="stopped")
