"""The converter: streaming equals whole-file conversion, latency is exact, bad audio is survivable."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soxr

from engine.converter import Converter, convert_whole
from engine.settings import Settings
from engine.voices import load_voice

LIMIT = 10 ** (-1 / 20)


class IdentityCore:
    """A VoiceCore that only delays (the identity path of the latency tests)."""

    provider, provider_note = "CPU", ""

    def __init__(self, delay: int) -> None:
        self.delay = delay
        self.reset()

    lookahead_24k = crossfade_24k = 0

    @property
    def latency_24k(self) -> int:
        return self.delay

    def reset(self) -> None:
        self._queue = np.zeros(self.delay, np.float32)

    def process(self, x: np.ndarray) -> np.ndarray:
        joined = np.concatenate([self._queue, x])
        self._queue = joined[len(x):]
        return joined[: len(x)]

    def set_pitch(self, semitones: float) -> None: ...

    def set_speaker(self, index: int) -> None: ...

    def describe(self) -> str:
        return "identity"


def _sung(seconds: float, rate: int = 24000) -> np.ndarray:
    """A vibrato note with a rest in the middle (voiced → silent → voiced)."""
    t = np.arange(int(seconds * 24000)) / 24000
    phase = np.cumsum(220 * 2 ** (0.3 * np.sin(2 * np.pi * 1.3 * t)) / 24000)
    x = 0.3 * np.sin(2 * np.pi * phase) + 0.1 * np.sin(4 * np.pi * phase)
    x += 0.003 * np.random.default_rng(0).standard_normal(len(t))
    x[int(0.8 * 24000): int(1.0 * 24000)] = 0
    x = x.astype(np.float32)
    return x if rate == 24000 else soxr.resample(x, 24000, rate).astype(np.float32)


def _snr(reference: np.ndarray, value: np.ndarray) -> float:
    err = np.sum((value.astype(np.float64) - reference) ** 2)
    return float(10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / max(err, 1e-30)))


@pytest.fixture(scope="module")
def exact_settings() -> Settings:
    # Lookahead ≥ vocoder (15) + decoder (2) + max(F0 margin 20, content ~15) frames = 37 frames:
    # every frame is computed from final inputs with full context.
    return Settings(lookahead_ms=200, crossfade_ms=20, gate_db=-120)


@pytest.mark.parametrize("rate", [24000, 44100])
@pytest.mark.parametrize("block", ["10ms", "40ms", "160ms", 333])
def test_streaming_equals_whole(ppg_pack: Path, exact_settings: Settings, rate: int, block) -> None:
    core = load_voice(str(ppg_pack), exact_settings, prefer=("cpu",))
    assert core.exact_lookahead_frames <= core.lookahead_frames
    x = _sung(1.6, rate)
    conv = Converter(lambda s: core, exact_settings, rate)
    whole = convert_whole(conv, x)
    conv.reset()
    n = block if isinstance(block, int) else int(rate * int(block[:-2]) / 1000)
    streamed = convert_whole(conv, x, block=n)
    assert np.sqrt(np.mean(whole ** 2)) > 1e-3          # the voice really produced sound
    first = n  # the acceptance excludes the first block
    assert _snr(whole[first:], streamed[first:]) >= 40.0


@pytest.mark.parametrize("rate", [44100, 48000])
@pytest.mark.parametrize("core_delay,block", [(0, 441), (640, 1000), (333, 97), (1280, 4800)])
def test_impulse_comes_out_exactly_latency_later(rate: int, core_delay: int, block: int) -> None:
    conv = Converter(lambda s: IdentityCore(core_delay), Settings(gate_db=-120), rate)
    x = np.zeros(rate, np.float32)
    x[2345] = 0.5
    y = np.concatenate([conv.process(x[i:i + block]) for i in range(0, len(x), block)])
    assert int(np.argmax(np.abs(y))) == 2345 + conv.latency()
    assert conv.latency_breakdown().algorithmic == conv.latency()


@pytest.mark.parametrize("lookahead_ms,crossfade_ms", [(0, 0), (40, 20), (120, 50)])
def test_neural_latency_is_the_reported_one(ppg_pack: Path, lookahead_ms: float, crossfade_ms: float) -> None:
    """The voice's own delay: a click in the input shows up `latency()` later in the output's
    envelope-free part: compare bypass (dry, latency-matched) with the identity arithmetic."""
    settings = Settings(lookahead_ms=lookahead_ms, crossfade_ms=crossfade_ms, gate_db=-120, bypass=True)
    core = load_voice(str(ppg_pack), settings, prefer=("cpu",))
    conv = Converter(lambda s: core, settings, 48000)
    x = np.zeros(48000, np.float32)
    x[4000] = 0.5
    y = np.concatenate([conv.process(x[i:i + 480]) for i in range(0, len(x), 480)])
    assert int(np.argmax(np.abs(y))) == 4000 + conv.latency()
    expected_core = 128 * (core.lookahead_frames + core.crossfade_frames + 1)
    assert core.latency_24k == expected_core


def test_latency_stays_constant_over_a_long_run() -> None:
    conv = Converter(lambda s: IdentityCore(700), Settings(gate_db=-120), 44100)
    rng = np.random.default_rng(1)
    clicks = np.arange(1000, 44100 * 20, 44100 // 3)
    x = np.zeros(44100 * 20 + 1000, np.float32)
    x[clicks] = 0.5
    out, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, 2048))
        out.append(conv.process(x[i:i + n]))
        i += n
    y = np.concatenate(out)
    found = np.flatnonzero(np.abs(y) > 0.2)
    peaks = [p for p in found if abs(y[p]) == np.abs(y[max(0, p - 5):p + 6]).max()]
    assert np.all(np.array(peaks) - clicks[: len(peaks)] == conv.latency())
    assert len(peaks) >= len(clicks) - 1


def test_bad_audio_gives_finite_limited_output(ppg_pack: Path) -> None:
    settings = Settings(lookahead_ms=40, gate_db=-120, output_gain_db=30)
    core = load_voice(str(ppg_pack), settings, prefer=("cpu",))
    conv = Converter(lambda s: core, settings, 48000)
    x = _sung(1.0, 48000) * 8
    x[1000:1100] = np.nan
    x[5000] = np.inf
    x[9000] = -np.inf
    y = np.concatenate([conv.process(x[i:i + 960]) for i in range(0, len(x), 960)])
    assert np.isfinite(y).all()
    assert np.abs(y).max() <= LIMIT
    assert conv.nonfinite_samples == 102


def test_live_safe_updates_do_not_restart(ppg_pack: Path) -> None:
    settings = Settings(lookahead_ms=40, gate_db=-120)
    opened = []

    def factory(s: Settings):
        opened.append(s)
        return load_voice(str(ppg_pack), s, prefer=("cpu",))

    conv = Converter(factory, settings, 48000)
    conv.process(np.zeros(4800, np.float32))
    conv.update(pitch=5, speaker=1, output_gain_db=-3, bypass=True)
    assert len(opened) == 1
    with pytest.raises(ValueError, match="speaker 5 does not exist"):
        conv.update(speaker=5)
    assert conv.settings.speaker == 1                      # a refused change changes nothing
    conv.update(block_ms=40, compute_budget_ms=20)         # the runner's business: voice stays open
    assert len(opened) == 1
    latency = conv.latency()
    conv.update(lookahead_ms=80)
    assert len(opened) == 2 and conv.latency() > latency
    with pytest.raises(ValueError, match="pitch must be between"):
        conv.update(pitch=30)


def test_a_long_file_converts_whole_in_one_block(ppg_pack: Path) -> None:
    """A whole file larger than the live history (8 s) is still converted as one block."""
    settings = Settings(lookahead_ms=200, gate_db=-120)
    core = load_voice(str(ppg_pack), settings, prefer=("cpu",))
    conv = Converter(lambda s: core, settings, 24000)
    x = np.tile(_sung(1.6), 8)[: 24000 * 12]
    whole = convert_whole(conv, x)
    conv.reset()
    streamed = convert_whole(conv, x, block=960)
    assert len(whole) == len(x)
    assert _snr(whole[960:], streamed[960:]) >= 40.0


@pytest.mark.parametrize("crossfade_24k", [0, 256])
def test_the_converter_adds_no_crossfade_of_its_own(crossfade_24k):
    """An exact core (crossfade_24k = 0, e.g. a stateful one) costs no crossfade delay: the
    converter's latency is the core's own delay + resamplers, whatever `Settings.crossfade_ms` says;
    a windowed core's crossfade is shown as such and not added a second time."""

    class Core(IdentityCore):
        pass

    Core.crossfade_24k = crossfade_24k
    settings = Settings(gate_db=-120, crossfade_ms=40.0)
    plain = Converter(lambda s: IdentityCore(640 + crossfade_24k), settings, 48000)
    conv = Converter(lambda s: Core(640 + crossfade_24k), settings, 48000)
    assert conv.latency() == plain.latency()
    parts = conv.latency_breakdown()
    assert parts.crossfade == 2 * crossfade_24k and parts.algorithmic == conv.latency()
    x = np.zeros(4800, np.float32)
    x[100] = 1.0
    y = np.concatenate([conv.process(x), conv.flush()])
    assert int(np.argmax(np.abs(y))) == 100 + conv.latency()
