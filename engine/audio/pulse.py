"""PulseAudio / PipeWire (pipewire-pulse): everything the engine knows about the Linux sound server.

PortAudio on Debian has only ALSA, so a PulseAudio sink or source is reached through the ALSA
`pulse` device, aimed at it by the PULSE_SINK / PULSE_SOURCE environment variables while a stream
opens. A device named `pulse:NAME` (`PULSE_PREFIX`) means "the ALSA pulse device aimed at NAME".
The sinks and sources themselves are listed (and the virtual microphone made) through `pactl`;
every pactl failure is a `PulseError` with one sentence saying what to do.

This module knows nothing about `DeviceInfo`: `engine.audio.devices` turns its `PulseTarget`s into
devices, so the two never import each other.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass
from typing import Iterator, Literal

PULSE_PREFIX = "pulse:"
PULSE_HOSTAPI = "PulseAudio"


class PulseError(RuntimeError):
    """pactl missing, no sound server, or pactl refused; `str()` is a sentence for the user."""


@dataclass(frozen=True)
class PulseTarget:
    """One PulseAudio sink (`kind="output"`: we play into it) or source (`kind="input"`)."""

    name: str
    kind: Literal["input", "output"]
    rate: float


def pactl(*args: str, timeout: float = 5.0) -> str:
    """Run `pactl ARGS` and return its standard output; raises `PulseError` with a sentence."""
    exe = shutil.which("pactl")
    if exe is None:
        raise PulseError("pactl was not found. Install it (Debian/Ubuntu: sudo apt install pulseaudio-utils; "
                         "PipeWire systems: pipewire-pulse) to create a virtual microphone.")
    try:
        done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise PulseError(f"The sound server did not answer pactl within {timeout:g} s.") from exc
    if done.returncode != 0:
        err = (done.stderr or done.stdout).strip()
        if "connection" in err.lower() or "refused" in err.lower() or "no such file" in err.lower():
            raise PulseError("No PulseAudio or PipeWire sound server is running for this user, so a virtual "
                             f"microphone cannot be created (pactl: {err}).")
        raise PulseError(f"pactl {' '.join(args[:2])} failed: {err}")
    return done.stdout


def pulse_targets() -> list[PulseTarget]:
    """Every sink, then every source, the server has (empty without a server)."""
    try:
        sinks = pactl("list", "short", "sinks")
        sources = pactl("list", "short", "sources")
    except PulseError:
        return []
    found = []
    for text, kind in ((sinks, "output"), (sources, "input")):
        for line in text.splitlines():
            parts = line.split("\t")
            if len(parts) < 2:
                continue
            rate = re.search(r"(\d+)Hz", line)
            found.append(PulseTarget(name=parts[1], kind=kind, rate=float(rate.group(1)) if rate else 48000.0))
    return found


def pulse_target_exists(name: str, kind: str) -> bool | None:
    """Whether the PulseAudio sink (`kind="output"`) or source still exists; None = cannot tell."""
    try:
        listing = pactl("list", "short", "sinks" if kind == "output" else "sources", timeout=2.0)
    except PulseError:
        return None
    return any(line.split("\t")[1:2] == [name] for line in listing.splitlines())


_ENV_LOCK = threading.Lock()


@contextlib.contextmanager
def aimed_at(*, source: str | None = None, sink: str | None = None) -> Iterator[None]:
    """Aim the ALSA `pulse` device at a PulseAudio source and/or sink while a stream opens.

    The ALSA pulse plugin reads PULSE_SINK / PULSE_SOURCE when the PCM opens, so setting them just
    around the open (under a lock, from the control thread) picks the target per stream.
    """
    env = {key: value for key, value in (("PULSE_SOURCE", source), ("PULSE_SINK", sink)) if value}
    if not env:
        yield
        return
    with _ENV_LOCK:
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
