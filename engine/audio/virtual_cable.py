"""Virtual audio cables: recognise them, suggest one as the output, and (Linux) make our own.

A virtual cable is a pair of devices: the app plays into one side (our *output*) and Discord/OBS/a
game records from the other side (their *microphone*). Known ones, by device name:

* Windows: VB-Audio Virtual Cable ("CABLE Input" = play into it, "CABLE Output" = the mic),
  VoiceMeeter ("VoiceMeeter Input" / "VoiceMeeter Output", also AUX/VAIO3 variants).
* macOS: BlackHole (same name both sides), Rogue Amoeba Loopback, Soundflower.
* Linux: PulseAudio/PipeWire null sinks, including the one this module creates: a null sink
  `como_live_sink` ("CoMo Live Cable", we play into it) and a remap source `como_live_mic`
  ("CoMo Live Mic", what other programs pick as their microphone) reading the sink's monitor.

Creating/removing goes through `pactl`, works on PulseAudio and on PipeWire (pipewire-pulse), is
idempotent, and every failure is an `engine.audio.pulse.PulseError` with one sentence saying what to do.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass

from engine.audio.devices import DeviceInfo
from engine.audio.pulse import PULSE_PREFIX, PulseError, pactl

SINK_NAME = "como_live_sink"
MIC_NAME = "como_live_mic"
SINK_DESCRIPTION = "CoMo Live Cable"
MIC_DESCRIPTION = "CoMo Live Mic"
OUTPUT_SPEC = f"{PULSE_PREFIX}{SINK_NAME}"      # what to pass as the session's output device


@dataclass(frozen=True)
class CableKind:
    """One family of virtual cables and which side of it is the playback (our output) side."""

    name: str
    pattern: str                 # regex on the device name (case-insensitive)
    playback_pattern: str        # regex that marks the side we play into ("" = any side)
    rank: int                    # lower = suggested first


KNOWN_CABLES: tuple[CableKind, ...] = (
    CableKind("CoMo Live virtual mic", r"como[ _]live|como_live_sink", r"cable|sink", 0),
    CableKind("VoiceMeeter", r"voicemeeter", r"input", 2),           # before VB-Audio: same vendor name
    CableKind("VB-Audio Virtual Cable", r"\bcable (input|output)\b|vb-audio virtual cable", r"cable input", 1),
    CableKind("BlackHole", r"blackhole", r"", 3),
    CableKind("Loopback", r"loopback", r"", 4),
    CableKind("Soundflower", r"soundflower", r"", 5),
    CableKind("PulseAudio/PipeWire null sink", r"null|virtual", r"", 6),
)


def cable_kind(device: DeviceInfo) -> CableKind | None:
    """Which known virtual cable `device` belongs to (None: a real device, as far as we know).
    The first matching pattern wins; `rank` only orders suggestions."""
    for kind in KNOWN_CABLES:
        if re.search(kind.pattern, device.name, re.IGNORECASE):
            return kind
    return None


def find_virtual_devices(devices: list[DeviceInfo]) -> list[DeviceInfo]:
    """The virtual-cable devices among `devices`."""
    return [d for d in devices if cable_kind(d) is not None]


def suggest_output(devices: list[DeviceInfo]) -> DeviceInfo | None:
    """The best virtual cable side to use as the main output (the side programs don't record)."""
    candidates = []
    for d in find_virtual_devices(devices):
        kind = cable_kind(d)
        if d.max_output_channels <= 0 or kind is None:
            continue
        if kind.playback_pattern and not re.search(kind.playback_pattern, d.name, re.IGNORECASE):
            continue
        candidates.append((kind.rank, d.index, d))
    return min(candidates, key=lambda c: c[:2])[2] if candidates else None


# --- Linux: our own virtual microphone through pactl -----------------------------------------------

def can_create_virtual_mic() -> tuple[bool, str]:
    """(True, "") when a virtual mic can be created here, else (False, the reason)."""
    if not sys.platform.startswith("linux"):
        return False, ("Creating a virtual mic works on Linux (PulseAudio/PipeWire) only. On Windows install "
                       "VB-Audio Virtual Cable, on macOS BlackHole, then choose it as the output.")
    try:
        pactl("info")
    except PulseError as exc:
        return False, str(exc)
    return True, ""


def _modules() -> list[tuple[str, str, str]]:
    """(id, module name, arguments) of every loaded module."""
    rows = []
    for line in pactl("list", "short", "modules").splitlines():
        parts = line.split("\t")
        if len(parts) >= 2:
            rows.append((parts[0], parts[1], parts[2] if len(parts) > 2 else ""))
    return rows


def _ours(modules: list[tuple[str, str, str]]) -> dict[str, str]:
    """Module ids of our sink and our mic, by role."""
    found = {}
    for mid, name, args in modules:
        if name == "module-null-sink" and re.search(rf"\bsink_name={SINK_NAME}\b", args):
            found["sink"] = mid
        if name == "module-remap-source" and re.search(rf"\bsource_name={MIC_NAME}\b", args):
            found["mic"] = mid
    return found


def virtual_mic_exists() -> bool:
    ours = _ours(_modules())
    return "sink" in ours and "mic" in ours


def create_virtual_mic() -> str:
    """Create (or keep) the CoMo Live Cable sink and the CoMo Live Mic source; returns a sentence."""
    ours = _ours(_modules())
    if "sink" in ours and "mic" in ours:
        return (f"The virtual microphone '{MIC_DESCRIPTION}' already exists. Output: {OUTPUT_SPEC}; in other "
                f"programs choose '{MIC_DESCRIPTION}' as the microphone.")
    if "sink" not in ours:
        pactl("load-module", "module-null-sink", f"sink_name={SINK_NAME}",
               f"sink_properties='device.description=\"{SINK_DESCRIPTION}\"'")
    if "mic" not in ours:
        pactl("load-module", "module-remap-source", f"source_name={MIC_NAME}", f"master={SINK_NAME}.monitor",
               f"source_properties='device.description=\"{MIC_DESCRIPTION}\"'")
    return (f"Created the virtual microphone '{MIC_DESCRIPTION}'. Choose {OUTPUT_SPEC} ('{SINK_DESCRIPTION}') "
            f"as the output here, and '{MIC_DESCRIPTION}' as the microphone in Discord, OBS or your game. "
            "It lasts until you remove it or the sound server restarts.")


def remove_virtual_mic() -> str:
    """Remove what `create_virtual_mic` made (nothing to remove is fine); returns a sentence."""
    ours = _ours(_modules())
    if not ours:
        return "There is no CoMo Live virtual microphone to remove."
    for role in ("mic", "sink"):          # the source reads the sink's monitor: remove it first
        if role in ours:
            pactl("unload-module", ours[role])
    return f"Removed the virtual microphone '{MIC_DESCRIPTION}'."
