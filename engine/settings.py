"""Converter settings: one dataclass shared by the engine, the CLIs and the app.

Ranges are enforced here so every front end gets the same clear error.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

#: Settings that can change while audio is running without a restart (the converter applies them
#: between blocks). Changing any other field rebuilds the converter cleanly.
LIVE_SAFE = frozenset(
    {"pitch", "speaker", "gate_db", "gate_hold_ms", "gate_release_ms", "input_gain_db",
     "output_gain_db", "monitor_gain_db", "bypass", "late_fill"}
)

#: Settings only the live runner uses (buffering); changing them restarts the audio streams but
#: keeps the voice and its open sessions.
RUNNER_ONLY = frozenset({"block_ms", "compute_budget_ms"})

_RANGES: dict[str, tuple[float, float]] = {
    "block_ms": (10.0, 500.0),
    "lookahead_ms": (0.0, 200.0),
    "crossfade_ms": (0.0, 100.0),
    "context_ms": (0.0, 3000.0),
    "compute_budget_ms": (0.0, 500.0),
    "pitch": (-24.0, 24.0),
    "gate_db": (-120.0, 0.0),
    "gate_hold_ms": (0.0, 2000.0),
    "gate_release_ms": (1.0, 2000.0),
    "input_gain_db": (-40.0, 40.0),
    "output_gain_db": (-40.0, 40.0),
    "monitor_gain_db": (-60.0, 20.0),
}

LATE_FILL_CHOICES = ("silence", "dry")

#: `Settings.compute_budget_ms` value meaning "measure it" (the adaptive budget, the default).
AUTO_BUDGET = 0.0


def parse_budget(text: str) -> float:
    """'auto' -> AUTO_BUDGET, 'N' -> N ms (N > 0); anything else is a ValueError with one sentence."""
    if text.strip().lower() == "auto":
        return AUTO_BUDGET
    try:
        ms = float(text)
    except ValueError:
        raise ValueError(f"the compute budget is 'auto' or a number of milliseconds, got {text!r}") from None
    lo, hi = _RANGES["compute_budget_ms"]
    if not lo < ms <= hi:
        raise ValueError(f"a fixed compute budget must be above {lo:g} and at most {hi:g} ms, got {text!r}")
    return ms


@dataclass(frozen=True)
class Settings:
    """What the user controls. Times in milliseconds, levels in dB, pitch in semitones."""

    block_ms: float = 80.0
    lookahead_ms: float = 40.0
    crossfade_ms: float = 20.0
    context_ms: float = 500.0        # past audio the content encoder sees (compute only, not latency)
    # How late a block's conversion may finish and still play on time; part of the delay.
    # AUTO_BUDGET (0) = measured: the smallest safe value for this voice on this machine, raised
    # (and reported) when blocks come late (engine.budget). A number = fixed, in ms.
    compute_budget_ms: float = 0.0
    pitch: float = 0.0
    speaker: int = 0
    gate_db: float = -60.0           # -120 = gate off
    gate_hold_ms: float = 300.0      # long enough for sung notes that dip between syllables
    gate_release_ms: float = 80.0
    input_gain_db: float = 0.0
    output_gain_db: float = 0.0
    monitor_gain_db: float = 0.0
    bypass: bool = False
    late_fill: str = "silence"       # what plays when a block is late: "silence" or "dry"

    def __post_init__(self) -> None:
        for name, (lo, hi) in _RANGES.items():
            value = getattr(self, name)
            if not (lo <= float(value) <= hi):
                raise ValueError(f"{name} must be between {lo:g} and {hi:g}, got {value!r}")
        if self.late_fill not in LATE_FILL_CHOICES:
            raise ValueError(f"late_fill must be one of {LATE_FILL_CHOICES}, got {self.late_fill!r}")
        if int(self.speaker) < 0:
            raise ValueError(f"speaker must be >= 0, got {self.speaker!r}")

    def with_changes(self, **changes: Any) -> "Settings":
        """A validated copy with `changes` applied (unknown names are an error)."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return replace(self, **changes)

    @staticmethod
    def needs_restart(changes: dict[str, Any]) -> bool:
        """True when applying `changes` requires restarting the audio (runner and/or voice)."""
        return any(name not in LIVE_SAFE for name in changes)

    @staticmethod
    def needs_new_voice(changes: dict[str, Any]) -> bool:
        """True when applying `changes` requires rebuilding the voice (lookahead, crossfade, …)."""
        return any(name not in LIVE_SAFE and name not in RUNNER_ONLY for name in changes)
