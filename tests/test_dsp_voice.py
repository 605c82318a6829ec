"""DspCore: exact latency, click-free block joins, pitch shift, bit-exact chunking invariance."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.voice_core import VoiceCore
from engine.dsp_voice import PRE, PRESETS, DspCore

FS = 24_000
CHUNKINGS = [240, 960, 3840, 333]          # 10 / 40 / 160 ms and an odd size


def _sine(freq: float = 220.0, seconds: float = 2.0, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * FS)) / FS)).astype(np.float32)


def _harmonic(f0: float = 180.0, seconds: float = 2.0) -> np.ndarray:
    """A voice-like tone: vibrato and four harmonics."""
    t = np.arange(int(seconds * FS)) / FS
    phase = np.cumsum(2 * np.pi * f0 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t)) / FS)
    x = sum(a * np.sin(h * phase) for h, a in [(1, 0.3), (2, 0.2), (3, 0.15), (4, 0.1)])
    return x.astype(np.float32)


def _run(core: DspCore, x: np.ndarray, chunk: int) -> np.ndarray:
    out = [core.process(x[i:i + chunk]) for i in range(0, len(x), chunk)]
    assert all(len(o) == len(x[i:i + chunk]) for o, i in zip(out, range(0, len(x), chunk)))
    return np.concatenate(out)


def _f0(y: np.ndarray) -> float:
    """Pitch by autocorrelation: first peak above 0.8 of the zero-lag value, parabolic refine."""
    y = y.astype(np.float64) - y.mean()
    ac = np.fft.irfft(np.abs(np.fft.rfft(y, 2 * len(y))) ** 2)[: FS // 50]
    ac /= ac[0]
    k = next(k for k in range(FS // 1500, len(ac) - 1)
             if ac[k] > 0.8 and ac[k] > ac[k - 1] and ac[k] >= ac[k + 1])
    frac = (ac[k - 1] - ac[k + 1]) / (2 * (ac[k - 1] - 2 * ac[k] + ac[k + 1]))
    return FS / (k + frac)


def _boundary_mask(n: int, boundaries: np.ndarray, radius: int = 2) -> np.ndarray:
    mask = np.zeros(n, bool)
    for off in range(-radius - 1, radius):                 # d2[i] is centred on sample i + 1
        idx = boundaries + off
        mask[idx[(idx >= 0) & (idx < n)]] = True
    return mask


def _click_ratio(core: DspCore, y: np.ndarray, chunk: int, settle: int) -> float:
    """max |second difference| within 2 samples of any block boundary (caller chunks and the
    core's internal grid) divided by the max elsewhere, both in the steady part."""
    d2 = np.abs(np.diff(y.astype(np.float64), 2))
    bounds = np.concatenate([np.arange(chunk, len(y), chunk),
                             np.arange(core._prefill, len(y), core._hop)])
    near = _boundary_mask(len(d2), bounds)
    steady = np.arange(len(d2)) >= settle
    return float(d2[near & steady].max() / d2[~near & steady].max())


def test_is_a_voice_core_with_builtin_provider() -> None:
    core = DspCore()
    assert isinstance(core, VoiceCore)
    assert core.provider == "CPU (built-in DSP voice)" and core.provider_note == ""
    assert "bright" in core.describe() and "latency" in core.describe()
    assert core.speakers == tuple(p.name for p in PRESETS)
    with pytest.raises(ValueError, match="speakers"):
        core.set_speaker(len(PRESETS))
    with pytest.raises(ValueError, match="multiple of 5 ms"):
        DspCore(hop_ms=12.0)
    with pytest.raises(ValueError, match="mono"):
        core.process(np.zeros((10, 2), np.float32))


@pytest.mark.parametrize("hop_ms, lookahead_ms", [(20.0, 20.0), (10.0, 0.0), (40.0, 30.0)])
def test_latency_formula(hop_ms: float, lookahead_ms: float) -> None:
    core = DspCore(hop_ms=hop_ms, lookahead_ms=lookahead_ms)
    hop, look = round(hop_ms * 24), round(lookahead_ms * 24)
    assert core.latency_24k == hop - 1 + look + PRE


@pytest.mark.parametrize("chunks", [[1], [240], [960], [3840], [333], [5, 1000, 77, 2048]])
def test_passthrough_is_an_exact_delay_line(chunks) -> None:
    core = DspCore(passthrough=True)
    x = np.zeros(12_000, np.float32)
    x[[100, 4321, 9000]] = [1.0, -0.5, 0.25]
    outs, pos, i = [], 0, 0
    while pos < len(x):
        n = chunks[i % len(chunks)]
        outs.append(core.process(x[pos:pos + n]))
        pos, i = pos + n, i + 1
    y = np.concatenate(outs)
    L = core.latency_24k
    np.testing.assert_array_equal(y[L:], x[:len(x) - L])
    assert np.all(y[:L] == 0)


@pytest.mark.parametrize("chunk", CHUNKINGS)
def test_no_clicks_at_block_boundaries_on_a_sustained_note(chunk: int) -> None:
    """Bound: for a steady periodic output every sample's |d2| comes from the same distribution,
    so near boundaries it cannot exceed the maximum elsewhere; we allow 10 %. A discontinuity of
    size s adds s to |d2| at the joint, so any step larger than 10 % of the signal's own max |d2|
    (here ~0.003, i.e. < 0.4 % of the output peak) over its local |d2| fails the test; see
    test_click_detector_catches_a_small_step for proof that it does."""
    core = DspCore()                                       # default preset: +4 st, formant +2 st
    y = _run(core, _sine(), chunk)
    assert np.abs(y).max() > 0.2                           # it actually sings
    assert _click_ratio(core, y, chunk, settle=core.latency_24k + 4800) <= 1.1


def test_click_detector_catches_a_small_step() -> None:
    core = DspCore()
    y = _run(core, _sine(), 960)
    settle = core.latency_24k + 4800
    bad = y.copy()
    b = core._prefill + 40 * core._hop                    # an internal boundary in steady state
    d2max = np.abs(np.diff(y[settle:].astype(np.float64), 2)).max()
    bad[b:] += 1.2 * d2max                                 # a step of 1.2 x the natural max |d2|
    assert _click_ratio(core, bad, 960, settle) > 1.1


def test_level_is_steady_across_blocks() -> None:
    """5 ms RMS around internal boundaries equals the RMS elsewhere (no dips or bumps)."""
    core = DspCore()
    y = _run(core, _sine(), 333).astype(np.float64)
    settle = core.latency_24k + 4800
    starts = np.arange(settle, len(y) - 120, 20)
    rms = np.sqrt(np.array([np.mean(y[s:s + 120] ** 2) for s in starts]))
    at_bound = ((starts + 60 - core._prefill) % core._hop) < 40
    assert abs(20 * np.log10(rms[at_bound].mean() / rms[~at_bound].mean())) < 0.5


def test_pitch_shift_up_an_octave() -> None:
    core = DspCore(speaker=PRESETS.index(next(p for p in PRESETS if p.name == "identity")), pitch=12)
    y = core.process(_sine(220.0))[FS:]
    assert _f0(y) == pytest.approx(440.0, rel=0.015)


def test_identity_resynthesis_keeps_pitch_and_level() -> None:
    ident = [p.name for p in PRESETS].index("identity")
    x = _harmonic()
    core = DspCore(speaker=ident)
    y = core.process(x)
    L = core.latency_24k
    steady_in, steady_out = x[FS // 2: -FS // 4], y[FS // 2 + L:]
    assert _f0(steady_out) == pytest.approx(_f0(steady_in), rel=0.01)
    level = 20 * np.log10(np.sqrt(np.mean(steady_out ** 2)) / np.sqrt(np.mean(steady_in ** 2)))
    assert abs(level) < 2.0


def _formant_tone(f0: float = 150.0, formant_hz: float = 1000.0, seconds: float = 2.0) -> np.ndarray:
    """Harmonics of f0 up to 5 kHz shaped by one resonance (Gaussian bump, 250 Hz wide)."""
    t = np.arange(int(seconds * FS)) / FS
    x = sum((np.exp(-0.5 * ((h * f0 - formant_hz) / 250.0) ** 2) + 0.05) * np.sin(2 * np.pi * h * f0 * t)
            for h in range(1, int(5000 / f0)))
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def _band_centroid(v: np.ndarray, lo: float = 400.0, hi: float = 2500.0) -> float:
    """Power-weighted mean frequency within [lo, hi): where the resonance sits."""
    power = np.abs(np.fft.rfft(v.astype(np.float64) * np.hanning(len(v)))) ** 2
    f = np.fft.rfftfreq(len(v), 1 / FS)
    band = (f >= lo) & (f < hi)
    return float((f[band] * power[band]).sum() / power[band].sum())


def test_default_preset_is_another_voice() -> None:
    """+4 st pitch (f0 ratio 1.26) and formants moved up by 2 st (resonance x1.12), compared with
    the same pitch shift and no formant shift."""
    x = _formant_tone()
    y = DspCore().process(x)[FS // 2:]
    assert _f0(y) == pytest.approx(_f0(x[FS // 2:]) * 2 ** (4 / 12), rel=0.02)
    ident = [p.name for p in PRESETS].index("identity")
    y0 = DspCore(speaker=ident, pitch=4.0).process(x)[FS // 2:]
    assert _band_centroid(y0) == pytest.approx(_band_centroid(x), rel=0.05)   # envelope kept
    assert _band_centroid(y) / _band_centroid(y0) == pytest.approx(2 ** (2 / 12), rel=0.05)


@pytest.mark.parametrize("speaker", range(len(PRESETS)))
def test_chunking_invariance_is_bit_exact(speaker: int) -> None:
    """Everything runs on the core's own 20 ms grid, so any chunking gives identical samples."""
    x = _harmonic(seconds=1.0)
    ref = _run(DspCore(speaker=speaker), x, len(x))
    for chunk in CHUNKINGS:
        np.testing.assert_array_equal(_run(DspCore(speaker=speaker), x, chunk), ref)


@settings(max_examples=10, deadline=None)
@given(sizes=st.lists(st.integers(1, 3000), min_size=1, max_size=6))
def test_chunking_invariance_random_sizes(sizes) -> None:
    x = _harmonic(seconds=0.6)
    ref = DspCore().process(x)
    core, outs, pos, i = DspCore(), [], 0, 0
    while pos < len(x):
        outs.append(core.process(x[pos:pos + sizes[i % len(sizes)]]))
        pos, i = pos + sizes[i % len(sizes)], i + 1
    np.testing.assert_array_equal(np.concatenate(outs), ref)


def test_reset_restores_the_initial_state() -> None:
    x = _harmonic(seconds=0.5)
    core = DspCore()
    first = core.process(x)
    core.process(_sine(seconds=0.3))
    core.reset()
    np.testing.assert_array_equal(core.process(x), first)


def test_pitch_change_midstream_is_click_free() -> None:
    core = DspCore()
    x = _sine(seconds=2.0)
    y1 = _run(core, x[:FS], 960)
    core.set_pitch(5.0)
    y2 = _run(core, x[FS:], 960)
    y = np.concatenate([y1, y2])
    assert _click_ratio(core, y, 960, settle=core.latency_24k + 4800) <= 1.1
    assert _f0(y2[FS // 2:]) == pytest.approx(220 * 2 ** (9 / 12), rel=0.02)


def test_silence_in_silence_out_and_nan_safe() -> None:
    core = DspCore()
    y = core.process(np.zeros(FS, np.float32))
    assert np.abs(y).max() < 1e-4                          # below -80 dBFS
    bad = _sine(seconds=0.5)
    bad[1000:1010] = np.nan
    assert np.all(np.isfinite(core.process(bad)))
    assert core.process(np.zeros(0, np.float32)).shape == (0,)
