"""models.pitch: DIO / FCPE accuracy on tones and the official post-processing rules (spec §3)."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from engine.yin_pitch import SPAN, WINDOW_END, yin_frames
from models.pitch import (DioPitch, FcpePitch, PitchExtractor, YinPitch, f0_agreement, fcpe_frame_times, frame_times,
                          hold_unvoiced, interpolate_unvoiced, make_pitch_extractor, map_f0_to_times,
                          resize_f0, round_f0, shift_f0)

SR = 24000


def tone(freq: float, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def fcpe() -> FcpePitch:
    torch.set_num_threads(1)
    return FcpePitch()


@pytest.fixture(scope="module", params=["dio", "fcpe", "yin"])
def extractor(request: pytest.FixtureRequest, fcpe: FcpePitch) -> PitchExtractor:
    return fcpe if request.param == "fcpe" else make_pitch_extractor(request.param)


@pytest.mark.parametrize("freq", [220.0, 660.0])
def test_tone_within_20_cents(extractor: PitchExtractor, freq: float) -> None:
    wav = tone(freq)
    f0, voiced = extractor.raw(wav)
    assert f0.shape == voiced.shape == (len(wav) // 128,)
    inner = slice(8, -8)  # the tone starts/stops abruptly at the clip edges
    assert voiced[inner].all()
    cents = 1200 * np.log2(f0[inner] / freq)
    assert np.abs(cents).max() < 20, (extractor.name, np.abs(cents).max())
    full = extractor(wav)
    assert full.dtype == np.float32 and full.shape == f0.shape
    assert (full > 0).all()  # unvoiced edges are filled


def test_call_is_raw_plus_fill(extractor: PitchExtractor) -> None:
    rng = np.random.default_rng(0)
    wav = np.concatenate([tone(300, 0.3), np.zeros(6000, np.float32), tone(400, 0.3)])
    wav += 1e-4 * rng.standard_normal(len(wav)).astype(np.float32)
    f0, voiced = extractor.raw(wav)
    np.testing.assert_array_equal(voiced, f0 > 0)
    assert not voiced.all() and voiced.any()  # the gap is unvoiced
    np.testing.assert_array_equal(extractor(wav), extractor.fill(f0)[0])
    # the official extractors interpolate; YIN holds the last voiced value, as the engine does
    expected = hold_unvoiced if extractor.name == "yin" else interpolate_unvoiced
    np.testing.assert_array_equal(extractor.fill(f0)[0], expected(f0)[0])


def test_dio_is_the_official_pipeline() -> None:
    dio = DioPitch()
    wav = tone(250, 0.5)
    native = dio.native(wav)
    assert len(native) == len(wav) // 128 + 1  # DIO's own frames
    f0, _ = dio.raw(wav)
    np.testing.assert_array_equal(f0, resize_f0(round_f0(native), len(wav) // 128).astype(np.float32))


def test_silence_gives_zeros(extractor: PitchExtractor) -> None:
    out = extractor(np.zeros(SR // 2, np.float32))
    assert out.shape == (SR // 2 // 128,) and not out.any()


def test_short_input(extractor: PitchExtractor) -> None:
    assert extractor(np.zeros(100, np.float32)).shape == (0,)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="1-D"):
        DioPitch()(np.zeros((2, 1000), np.float32))
    with pytest.raises(TypeError, match="floating"):
        DioPitch()(np.zeros(1000, np.int16))


# ---- post-processing rules --------------------------------------------------------------------

def test_round_f0() -> None:
    np.testing.assert_array_equal(round_f0(np.array([220.04, 220.06, 0.0, 99.95001])), [220.0, 220.1, 0.0, 100.0])


def test_resize_is_nan_aware() -> None:
    src = np.array([100.0, 100.0, 0.0, 0.0, 200.0, 200.0])
    out = resize_f0(src, 12)  # x_j = j / 2
    expected = [100, 100, 100, 0, 0, 0, 0, 0, 200, 200, 200, 200]  # never a blend of voiced and unvoiced
    np.testing.assert_allclose(out, expected)
    np.testing.assert_allclose(resize_f0(np.array([100.0, 200.0, 300.0]), 6), [100, 150, 200, 250, 300, 300])
    assert resize_f0(np.array([100.0, 0.0005]), 4)[2:].tolist() == [0, 0]  # < 0.001 counts as unvoiced


def test_interpolate_unvoiced() -> None:
    f0, uv = interpolate_unvoiced(np.array([0, 100, 0, 0, 200, 0], dtype=np.float64))
    np.testing.assert_allclose(f0, [100, 100, 400 / 3, 500 / 3, 200, 200], rtol=1e-6)
    np.testing.assert_array_equal(uv, [0, 1, 0, 0, 1, 0])
    assert not interpolate_unvoiced(np.zeros(5))[0].any()


def test_one_voiced_frame_quirk() -> None:
    # the official code fills with f0[0], which is 0 unless frame 0 is the voiced one
    assert not interpolate_unvoiced(np.array([0.0, 0.0, 150.0, 0.0]))[0].any()
    np.testing.assert_array_equal(interpolate_unvoiced(np.array([150.0, 0.0, 0.0]))[0], [150, 150, 150])


def test_map_to_times() -> None:
    src_t = np.array([0.0, 0.01, 0.02, 0.03])
    out = map_f0_to_times(np.array([100.0, 200.0, 0.0, 300.0]), src_t, np.array([0.005, 0.015, 0.04, -1.0]))
    np.testing.assert_allclose(out, [150, 0, 300, 100])


def test_frame_times() -> None:
    np.testing.assert_allclose(frame_times(3), [0, 128 / 24000, 256 / 24000])
    np.testing.assert_allclose(fcpe_frame_times(2), [0.005, 0.015])


def test_shift_f0() -> None:
    np.testing.assert_allclose(shift_f0(np.array([220.0, 0.0]), 12), [440.0, 0.0])
    assert torch.allclose(shift_f0(torch.tensor([440.0]), -12), torch.tensor([220.0]))
    assert shift_f0(100.0, 7) == pytest.approx(100 * 2 ** (7 / 12))


def test_hold_unvoiced() -> None:
    f0, uv = hold_unvoiced(np.array([0, 100, 0, 0, 200, 0], dtype=np.float64))
    np.testing.assert_array_equal(f0, [100, 100, 100, 100, 200, 200])  # before the first: the first value
    np.testing.assert_array_equal(uv, [0, 1, 0, 0, 1, 0])
    assert not hold_unvoiced(np.zeros(4))[0].any() and hold_unvoiced(np.zeros(0))[0].shape == (0,)


# ---- YIN (the low-latency voices): training's values are the engine's -------------------------

def _speechlike(seconds: float, seed: int) -> np.ndarray:
    """A gliding harmonic voice with pauses and noise, 24 kHz."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    f0 = 140 * 2 ** (np.sin(np.arange(n) / SR * 2.1) * 0.6)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voice = sum(np.sin(k * phase) / k for k in range(1, 6))
    gate = (np.sin(np.arange(n) / SR * 2 * np.pi * 0.7) > -0.5).astype(np.float64)
    return (0.2 * voice * gate + 0.002 * rng.standard_normal(n)).astype(np.float32)


def test_yin_is_the_engines_yin_frames_in_any_chunking() -> None:
    wav = _speechlike(1.5, seed=0)
    f0, voiced = YinPitch().raw(wav)
    n = len(wav) // 128
    assert f0.shape == (n,) and f0.dtype == np.float32 and voiced.any() and not voiced.all()
    stream = np.concatenate([np.zeros(SPAN - WINDOW_END, np.float32), wav])  # frame k: stream[128 k, 128 k + SPAN)
    rng = np.random.default_rng(1)
    chunks, k = [], 0
    while k < n:
        m = int(min(n - k, rng.integers(1, 40)))
        chunks.append(yin_frames(stream[128 * k: 128 * (k + m - 1) + SPAN], m))
        k += m
    np.testing.assert_array_equal(np.concatenate(chunks), f0)  # bit-identical, not rounded


def test_yin_tracks_a_glide_within_a_few_cents() -> None:
    t = np.arange(int(1.0 * SR)) / SR
    freq = 150 * 2 ** (t / 1.0)  # one octave per second, upwards
    wav = (0.4 * np.sin(2 * np.pi * np.cumsum(freq) / SR)).astype(np.float32)
    f0, voiced = YinPitch().raw(wav)
    k = np.arange(len(f0))
    inner = slice(10, -2)  # the first window is mostly the zeros before the stream
    assert voiced[inner].all()
    # the estimate is about the newest INTEGRATION samples: their middle, 256 samples before the window end
    centre = np.clip(128 * k + 64 - 256, 0, None)
    cents = 1200 * np.log2(f0[inner] / (150 * 2 ** (centre[inner] / SR)))
    assert np.abs(cents).max() < 5, np.abs(cents).max()


def test_yin_agrees_with_librosa_on_a_steady_tone() -> None:
    import librosa

    wav = tone(233.0, 1.0)
    ours, voiced = YinPitch().raw(wav)
    ref = librosa.yin(wav.astype(np.float64), fmin=50, fmax=1100, sr=SR, frame_length=1024, hop_length=128)
    inner = slice(10, -10)
    assert voiced[inner].all()
    assert np.abs(1200 * np.log2(ours[inner] / np.median(ref[4:-4]))).max() < 10


def test_f0_agreement_tells_a_vocoder_that_follows_f0_from_one_that_buzzes() -> None:
    """The vocoder validation's pitch check: a glide rendered at the given f0 agrees with it; a buzz at
    the frame rate (187.5 Hz, what a vocoder that ignores its harmonic source makes) does not."""
    n = SR * 2
    contour = np.geomspace(140.0, 320.0, n // 128).astype(np.float32)     # f0 [T] the vocoder was given
    per_sample = np.repeat(contour, 128)
    glide = 0.3 * np.sin(2 * np.pi * np.cumsum(per_sample) / SR).astype(np.float32)
    buzz = np.zeros(n, np.float32)
    buzz[::128] = 0.5
    voiced = np.ones(len(contour), np.float32)
    rmse, corr = f0_agreement(YinPitch().raw(glide)[0], contour, voiced)
    assert corr > 0.99 and rmse < 30
    rmse, corr = f0_agreement(YinPitch().raw(buzz)[0], contour, voiced)
    assert not corr > 0.5 and rmse > 300


def test_factory() -> None:
    assert isinstance(make_pitch_extractor("dio"), DioPitch)
    assert isinstance(make_pitch_extractor("yin"), YinPitch)
    with pytest.raises(ValueError, match="dio"):
        make_pitch_extractor("crepe")


def test_fcpe_module_and_shim(fcpe: FcpePitch) -> None:
    assert isinstance(fcpe.module, torch.nn.Module)
    import torchfcpe.mel_extractor as me
    try:
        import torchaudio  # noqa: F401
    except Exception:  # noqa: BLE001 - the shim case: nothing fake left behind, resampler refuses
        assert "torchaudio" not in sys.modules
        with pytest.raises(RuntimeError, match="16 kHz"):
            me.Resample(24000, 16000)
