"""The frame-local YIN F0 (engine/yin_pitch.py): accurate on tones, silent on silence and noise, and
the same value for a frame however the audio around it is cut."""
from __future__ import annotations

import numpy as np
import pytest

from engine.yin_pitch import HOP, INTEGRATION, SPAN, WINDOW_END, yin_frames

RATE = 24000


def _tone(f0: float, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * f0 * t) + 0.1 * np.sin(4 * np.pi * f0 * t + 1.0)).astype(np.float32)


def _cents(a: np.ndarray, b: float) -> np.ndarray:
    return 1200 * np.abs(np.log2(a / b))


@pytest.mark.parametrize("f0", [55.0, 110.0, 220.0, 440.0, 880.0, 1050.0])
def test_tones_within_a_few_cents_and_close_to_librosa(f0: float) -> None:
    librosa = pytest.importorskip("librosa")
    x = _tone(f0)
    got = yin_frames(x[: SPAN + 9 * HOP], 10)
    assert np.all(got > 0) and np.max(_cents(got, f0)) < 5.0
    # librosa.yin on the time-reversed window: the same difference function (it looks forward)
    reference = librosa.yin(x[:SPAN][::-1].astype(np.float64), fmin=50, fmax=1100, sr=RATE, frame_length=SPAN,
                            center=False)
    assert _cents(got[:1], float(reference[0]))[0] < 20.0


def test_glide_is_tracked_with_the_window_lag() -> None:
    t = np.arange(RATE) / RATE
    freq = 150.0 * 2 ** (t / 1.0)                       # one octave per second
    x = (0.4 * np.sin(2 * np.pi * np.cumsum(freq) / RATE)).astype(np.float32)
    n = (len(x) - SPAN) // HOP
    got = yin_frames(x, n)
    # frame j's window ends at sample SPAN + 128 j; its newest INTEGRATION samples centre half a window earlier
    centre = SPAN + HOP * np.arange(n) - INTEGRATION // 2
    assert np.median(_cents(got, 150.0 * 2 ** (centre / RATE))) < 15.0


def test_silence_and_noise_are_unvoiced() -> None:
    assert np.all(yin_frames(np.zeros(SPAN + 4 * HOP, np.float32), 5) == 0)
    noise = 0.1 * np.random.default_rng(0).standard_normal(SPAN + 49 * HOP).astype(np.float32)
    assert np.mean(yin_frames(noise, 50) > 0) < 0.1


def test_a_frame_depends_only_on_its_window() -> None:
    """Bit-identical whatever comes before or after the window, and however many frames one call does."""
    rng = np.random.default_rng(1)
    x = np.concatenate([_tone(200.0, 0.3), 0.05 * rng.standard_normal(4000).astype(np.float32), _tone(310.0, 0.3)])
    n = (len(x) - SPAN) // HOP + 1
    whole = yin_frames(x, n)
    for start, count in [(0, 1), (3, 7), (40, n - 40), (n - 1, 1)]:
        part = yin_frames(x[HOP * start: HOP * (start + count - 1) + SPAN], count)
        np.testing.assert_array_equal(part, whole[start: start + count])
    edited = x.copy()
    edited[HOP * 20 + SPAN:] = 0.0                       # after frame 20's window: frame 20 keeps its value
    assert yin_frames(edited, 21)[20] == whole[20]


def test_too_little_audio_is_refused() -> None:
    with pytest.raises(ValueError, match="needs"):
        yin_frames(np.zeros(SPAN - 1, np.float32), 1)
    assert WINDOW_END == HOP // 2
