"""The converter: one object for live blocks and whole files, pedalboard style.

    conv = Converter(core_factory, settings, device_rate=48000)
    out = conv.process(block)      # any length; out has the same length
    conv.latency()                 # out is the converted input delayed by exactly this many samples

A whole file is the same object fed the file as one block (then `latency()` more samples of
silence to flush), so offline and live conversion cannot drift apart.

Signal path, at the device rate unless said otherwise:
    NaN/inf → 0 → input gain → noise gate → resample to 24 kHz → VoiceCore → resample back
    → (bypass crossfade with the dry input delayed by the same latency) → output gain → limiter.
The total delay is made a whole number of device samples on purpose: 24 kHz and 44.1 kHz share
a time grid only every 80 model samples, so the core's output is padded to that grid (≤ 3.3 ms at
44.1 kHz, 0 at 48 kHz and 24 kHz) and an impulse comes out exactly `latency()` samples later.
"""
from __future__ import annotations

import math
import threading
from fractions import Fraction
from collections.abc import Iterable
from typing import Any, Callable

import numpy as np

from engine.voice_core import VoiceCore
from engine.dynamics import Gain, Limiter, NoiseGate
from engine.history import History
from engine.model_audio import MODEL_RATE
from engine.latency import LatencyBreakdown, algorithmic_latency
from engine.resample import StreamResampler
from engine.settings import Settings

LIMIT_DBFS = -1.0
_BYPASS_FADE_MS = 30.0

CoreFactory = Callable[[Settings], VoiceCore]


class Converter:
    """Device-rate streaming converter around a `VoiceCore` (see module docstring)."""

    def __init__(self, core_factory: CoreFactory, settings: Settings, device_rate: int) -> None:
        if device_rate <= 0:
            raise ValueError(f"device rate must be positive, got {device_rate}")
        self.device_rate = int(device_rate)
        self._factory = core_factory
        self.settings = settings
        # Inside the runner process() and update() both run on its one worker thread; the lock keeps
        # a direct user (a tool or test calling update() from another thread) from splitting a block.
        self._lock = threading.Lock()
        self.nonfinite_samples = 0
        self._build()

    # ------------------------------------------------------------------ construction
    def _build(self) -> None:
        s, rate = self.settings, self.device_rate
        self.core = self._factory(s)
        self._to_model = StreamResampler(rate, MODEL_RATE)
        self._to_device = StreamResampler(MODEL_RATE, rate)
        grid = MODEL_RATE // math.gcd(MODEL_RATE, rate)          # model samples per common grid step
        model_delay = self._to_model.delay + self.core.latency_24k
        self._align = (-model_delay) % grid                        # pad to a whole device sample
        # The resamplers return floor(n·ratio) samples, so the device-side output can trail the
        # input by up to ceil(rate / 24k) + 1 samples: a tiny queue prefill covers it.
        self._prefill = math.ceil(rate / MODEL_RATE) + 1
        total = Fraction(model_delay + self._align) * rate / MODEL_RATE + self._to_device.delay + self._prefill
        assert total.denominator == 1, "latency must be a whole number of device samples"
        self._latency = int(total)
        self._in_gain = Gain(s.input_gain_db, rate)
        self._out_gain = Gain(s.output_gain_db, rate)
        self._gate = NoiseGate(s.gate_db, s.gate_hold_ms, s.gate_release_ms, rate=rate)
        self._limiter = Limiter(LIMIT_DBFS, rate, lookahead_ms=0.0)
        self._bypass_mix = 1.0 if s.bypass else 0.0
        self._model_queue = np.zeros(self._align, dtype=np.float32)   # alignment pad
        self._out_queue = History(keep=max(4 * rate, 4 * self._latency))
        self._out_queue.append(np.zeros(self._prefill, dtype=np.float32))
        self._dry = History(keep=max(4 * rate, 4 * self._latency))
        self._taken = 0   # output samples returned so far
        self._fed = 0     # input samples taken so far

    def reset(self) -> None:
        """Forget all audio (the voice, resamplers, queues); settings stay."""
        with self._lock:
            self.core.reset()
            self._rebuild_streams()

    def _rebuild_streams(self) -> None:
        core, factory = self.core, self._factory
        self._factory = lambda _settings: core   # keep the open core (sessions are costly to open)
        try:
            self._build()
        finally:
            self._factory = factory

    # ------------------------------------------------------------------ public API
    def latency(self) -> int:
        """Delay of the output against the input, in device samples (exact and constant)."""
        return self._latency

    def latency_breakdown(self) -> LatencyBreakdown:
        """Parts of `latency()` for the readouts (block and device buffers are the runner's)."""
        lookahead, crossfade = self.core.lookahead_24k, self.core.crossfade_24k
        core = self.core.latency_24k - lookahead - crossfade + self._align
        return algorithmic_latency(
            device_rate=self.device_rate, block=0, lookahead_24k=lookahead, crossfade_24k=crossfade,
            core_24k=core, resample_in_delay_24k=self._to_model.delay,
            resample_out_delay=self._to_device.delay + self._prefill,
        )

    @property
    def provider(self) -> str:
        return self.core.provider

    @property
    def provider_note(self) -> str:
        return self.core.provider_note

    def update(self, **changes: Any) -> None:
        """Change settings. Live-safe ones apply at the next sample; others rebuild the voice."""
        new = self.settings.with_changes(**changes)
        with self._lock:
            if Settings.needs_new_voice(changes):
                self.settings = new
                self._build()
                return
            if "speaker" in changes:
                self.core.set_speaker(new.speaker)   # raises for a speaker the voice lacks: nothing changed
            self.settings = new
            if "pitch" in changes:
                self.core.set_pitch(new.pitch)
            if {"gate_db", "gate_hold_ms", "gate_release_ms"} & set(changes):
                self._gate.update(threshold_db=new.gate_db, hold_ms=new.gate_hold_ms,
                                  release_ms=new.gate_release_ms)
            self._in_gain.set_db(new.input_gain_db)
            self._out_gain.set_db(new.output_gain_db)

    def process(self, block: np.ndarray) -> np.ndarray:
        """Convert `block` (float32 mono [n], any n ≥ 0); returns n samples."""
        with self._lock:
            return self._process(block)

    def flush(self) -> np.ndarray:
        """The `latency()` samples still inside the converter (feeds silence)."""
        return self.process(np.zeros(self._latency, dtype=np.float32))

    # ------------------------------------------------------------------ internals
    def _process(self, block: np.ndarray) -> np.ndarray:
        x = np.asarray(block, dtype=np.float32).reshape(-1)
        n = len(x)
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        finite = np.isfinite(x)
        if not finite.all():
            self.nonfinite_samples += int(n - finite.sum())
            x = np.where(finite, x, np.float32(0.0))
        x = self._in_gain.process(x)
        for history in (self._dry, self._out_queue):
            history.reserve(2 * n + self._latency)   # a whole file fed as one block stays whole
        self._dry.append(x)
        gated = self._gate.process(x)
        model_in = self._to_model.process(gated)
        model_out = self.core.process(model_in)
        if self._align:
            queued = np.concatenate([self._model_queue, model_out])
            model_out, self._model_queue = queued[: len(model_out)], queued[len(model_out):]
        self._out_queue.append(self._to_device.process(model_out))
        wet = self._out_queue.read(self._taken, self._taken + n)
        dry = self._dry.read(self._fed - self._latency, self._fed - self._latency + n)
        self._taken += n
        self._fed += n
        y = self._mix(wet, dry)
        return self._limiter.process(self._out_gain.process(y))

    def _mix(self, wet: np.ndarray, dry: np.ndarray) -> np.ndarray:
        """Crossfade towards dry (bypass) or wet over `_BYPASS_FADE_MS`; both latency-matched."""
        target = 1.0 if self.settings.bypass else 0.0
        if self._bypass_mix == target:
            return dry.copy() if target == 1.0 else wet
        step = 1000.0 / (_BYPASS_FADE_MS * self.device_rate)
        direction = 1.0 if target > self._bypass_mix else -1.0
        ramp = np.clip(self._bypass_mix + direction * step * np.arange(1, len(wet) + 1), 0.0, 1.0)
        self._bypass_mix = float(ramp[-1])
        mix = np.sin(0.5 * np.pi * ramp).astype(np.float32) ** 2
        return wet * (1.0 - mix) + dry * mix


def convert_blocks(converter: Converter, blocks: Iterable[np.ndarray], write: Callable[[np.ndarray], None],
                   progress: Callable[[int], None] | None = None) -> int:
    """Stream `blocks` (float32 mono [n] each) through `converter` and pass the aligned output to `write`.

    The latency is trimmed from the start and flushed at the end, so `write` receives exactly as many
    samples as the blocks held (returned), in pieces; nothing else is kept, so memory does not grow
    with the length of the stream.
    """
    skip = converter.latency()
    total = 0

    def emit(y: np.ndarray) -> None:
        nonlocal skip
        cut = min(skip, len(y))
        skip -= cut
        if len(y) > cut:
            write(y[cut:])

    for block in blocks:
        total += len(block)
        emit(converter.process(block))
        if progress:
            progress(total)
    emit(converter.flush())
    return total


def convert_whole(converter: Converter, audio: np.ndarray, block: int | None = None,
                  progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Run `audio` through `converter` (in `block`-sized pieces, or whole) and return the aligned
    result of the same length: the latency is flushed and trimmed, nothing else changes."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    step = max(len(audio) if not block else int(block), 1)
    pieces: list[np.ndarray] = []
    convert_blocks(converter, (audio[start: start + step] for start in range(0, len(audio), step)),
                   pieces.append, progress)
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
