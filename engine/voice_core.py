"""`VoiceCore`: what the converter needs from a voice (neural voice pack or built-in DSP voice).

A core turns a 24 kHz mono stream into a 24 kHz mono stream with a constant delay. It owns its own
internal blocking, so the converter may call `process` with any number of samples.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class VoiceCore(Protocol):
    """Contract for `engine.neural_core.NeuralCore` and `engine.dsp_voice.DspCore`.

    process(x24: float32[N]) -> float32[N], any N >= 0 (also 0); output sample `n` corresponds to
        input sample `n - latency_24k` (zeros before the stream start). The delay never changes
        while the core lives, whatever the chunk sizes, pitch or speaker.
    reset() forgets all audio (back to the state after construction; latency unchanged).
    set_pitch(semitones) and set_speaker(index) apply from the next internal block, without a
        click; a bad speaker index raises ValueError.
    lookahead_24k, crossfade_24k: the parts of `latency_24k` set by `Settings.lookahead_ms` and
        `crossfade_ms` (model right context and block join), shown under those names in the
        latency readouts; the rest of `latency_24k` is shown as the core's own delay.
    provider: where it runs, for the UI ("CUDA", "CPU (built-in DSP voice)", ...);
    provider_note: why it is not faster, or "".
    """

    @property
    def latency_24k(self) -> int: ...

    @property
    def lookahead_24k(self) -> int: ...

    @property
    def crossfade_24k(self) -> int: ...

    @property
    def provider(self) -> str: ...

    @property
    def provider_note(self) -> str: ...

    def process(self, x24: np.ndarray) -> np.ndarray: ...

    def reset(self) -> None: ...

    def set_pitch(self, semitones: float) -> None: ...

    def set_speaker(self, index: int) -> None: ...

    def describe(self) -> str: ...
