"""`como-live --self-test`: check that an installed CoMo Live converts audio, with no devices or window.

Loads the voice a fresh install starts with (`AppConfig().voice`: today the built-in DSP voice, the
bundled demo pack once it is the default), feeds 2 s of a generated voice-like signal through the
streaming `Converter` in live-sized blocks, checks the result and prints the provider, the latency
and the compute time per block. It also loads PortAudio, the one native library the engine needs
that converting a file does not touch. Exit 0 on success, 1 with one sentence on failure.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np

SECONDS = 2.0
DEVICE_RATE = 48_000
INPUT_RMS = 0.3       # the generated voice's level (-10.5 dBFS)
SILENT_DBFS = -50.0   # a voiced input must come out louder than this


class SelfTestError(RuntimeError):
    """The installation does not work; the message says why in one sentence."""


@dataclass(frozen=True)
class SelfTestReport:
    voice: str
    provider: str
    provider_note: str
    latency_ms: float          # the converter's exact delay
    block_ms: float
    compute_ms: list[float]    # time to convert each block
    output_dbfs: float
    portaudio: str

    def lines(self) -> list[str]:
        median, worst = float(np.median(self.compute_ms)), max(self.compute_ms)
        lines = [f"voice: {self.voice}",
                 f"provider: {self.provider}" + (f" ({self.provider_note})" if self.provider_note else ""),
                 f"latency: {self.latency_ms:.1f} ms in the converter + {self.block_ms:g} ms block "
                 f"= {self.latency_ms + self.block_ms:.1f} ms before device buffers",
                 f"compute: {self.block_ms:g} ms block in {median:.1f} ms median, {worst:.1f} ms max "
                 f"(real-time factor {median / self.block_ms:.3f})",
                 f"output level: {self.output_dbfs:.1f} dBFS",
                 f"audio: {self.portaudio}"]
        return lines


def voice_like_signal(seconds: float, rate: int) -> np.ndarray:
    """A sung-vowel stand-in [n]: harmonics of a 140→220 Hz glide with 5 Hz vibrato, at `INPUT_RMS`."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = 140.0 * (220.0 / 140.0) ** (t / seconds) * (1.0 + 0.01 * np.sin(2 * np.pi * 5.0 * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    signal = sum(np.sin(k * phase) / k for k in range(1, 13))
    return (INPUT_RMS * signal / np.sqrt(np.mean(signal ** 2))).astype(np.float32)


def _portaudio_version() -> str:
    try:
        import sounddevice
    except OSError as exc:
        raise SelfTestError(f"PortAudio could not be loaded ({exc}).") from exc
    return sounddevice.get_portaudio_version()[1]


def run_self_test(voice: str | None = None) -> SelfTestReport:
    """Convert `SECONDS` of `voice_like_signal` with `voice` (default: the app's default voice)."""
    from app.engine_adapter import EngineAdapter
    from app.settings_store import AppConfig

    defaults = AppConfig()
    spec = voice or defaults.voice
    settings = defaults.settings
    try:
        name, converter = EngineAdapter().open_converter(spec, settings, DEVICE_RATE)
    except (ValueError, OSError) as exc:  # VoicePackError is a ValueError
        raise SelfTestError(f"the voice {spec!r} could not be loaded: {exc}") from exc
    audio = voice_like_signal(SECONDS, DEVICE_RATE)
    block = int(round(settings.block_ms * DEVICE_RATE / 1000))
    pieces, compute_ms = [], []
    for start in range(0, len(audio), block):
        started = time.perf_counter()
        pieces.append(converter.process(audio[start: start + block]))
        compute_ms.append(1000.0 * (time.perf_counter() - started))
    out = np.concatenate(pieces)
    if len(out) != len(audio):
        raise SelfTestError(f"the converter returned {len(out)} samples for {len(audio)}.")
    if not np.isfinite(out).all():
        raise SelfTestError("the converted audio contains NaN or infinite samples.")
    converted = out[converter.latency():]
    level = 10 * np.log10(max(float(np.mean(converted.astype(np.float64) ** 2)), 1e-20))
    if level < SILENT_DBFS:
        raise SelfTestError(f"the converted audio is silent ({level:.0f} dBFS for a "
                            f"{20 * np.log10(INPUT_RMS):.0f} dBFS voice).")
    return SelfTestReport(voice=f"{name} ({spec})", provider=converter.provider,
                          provider_note=converter.provider_note,
                          latency_ms=1000.0 * converter.latency() / DEVICE_RATE, block_ms=settings.block_ms,
                          compute_ms=compute_ms, output_dbfs=level, portaudio=_portaudio_version())


def main(version: str, voice: str | None = None) -> int:
    """Run the self-test with `voice` (None: the app's default voice) and print its report."""
    print(f"CoMo Live {version} self-test: {SECONDS:g} s of generated voice at {DEVICE_RATE} Hz")
    try:
        report = run_self_test(voice)
    except SelfTestError as exc:
        print(f"self-test failed: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - a broken install can fail anywhere; say where, in one line
        print(f"self-test failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    for line in report.lines():
        print(f"  {line}")
    print("self-test passed")
    return 0
