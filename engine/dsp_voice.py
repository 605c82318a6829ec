"""`DspCore`: the built-in, model-free voice (WORLD analysis + streaming pulse synthesis).

It lets the engine, the CLIs and the app run on any machine without a checkpoint. Analysis uses
pyworld (DIO + StoneMask f0, CheapTrick envelope, D4C aperiodicity) on a window with past context
and a little lookahead. Synthesis is WORLD's pulse-by-pulse method re-implemented in numpy as ONE
continuous stream: the excitation phase is carried from block to block and every pulse's
response is overlap-added into an accumulator that is carried too, so block boundaries are not
special at all (no crossfade, nothing to click).

Streaming design (all sizes in 24 kHz samples; F = 120 = WORLD's 5 ms frame period):

* Input is cut on a fixed internal grid of `hop` samples (a multiple of F), independent of how
  the caller chunks `process()`. Block j synthesises output times `[j*hop, (j+1)*hop)` and runs
  once input up to `(j+1)*hop + lookahead` has arrived. Its analysis window is
  `[j*hop - context, (j+1)*hop + lookahead)`; it analyses the `hop / F` new frames at
  `j*hop + F, ..., (j+1)*hop` and reuses the frame at `j*hop` from block j-1, so each frame is
  computed exactly once.
* Pulses are placed WORLD-style one sample after the excitation phase wraps, each response is
  delayed by `PRE` samples inside its FFT buffer so the fractional-position shift and the
  minimum-phase response's wrapped tail stay causal.
* Latency: `latency_24k = (hop - 1) + lookahead + PRE`. `hop - 1` is the worst-case wait for the
  internal grid with arbitrary chunk sizes (the output FIFO is pre-filled with
  `hop - 1 + lookahead` zeros and never runs dry), `lookahead` is the analysis's right context,
  PRE the synthesis pre-roll. Defaults (10 ms hop, 10 ms lookahead): 239 + 240 + 32 = 511
  samples = 21.3 ms (it was 41.3 ms with a 20 ms hop and 20 ms lookahead). Measured on the
  quality tests (octave shift, identity f0 and level, clicks): 10 ms of lookahead keeps them; 5 ms
  does not (DIO/StoneMask lose the last frames' periodicity and the output stops being periodic),
  nor does less than 100 ms of context. A 10 ms hop costs ~1.3x the compute of a 20 ms hop per
  second of audio (DIO runs on the whole window twice as often); a 5 ms hop ~2-3x.
* Chunking invariance: because all processing happens on the internal grid, the output is
  bit-identical for any chunking of the same input (with parameters fixed; a `set_pitch` applies
  at the next internal block, so *when* it is called relative to the stream matters).
* `passthrough=True` runs the same FIFOs but outputs the input itself: an exact delay line of
  `latency_24k` samples.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyworld as pw

from engine.model_audio import MODEL_RATE
from engine.ringbuffer import RingBuffer

FS = MODEL_RATE
FRAME = 120                       # WORLD frame period, 5 ms at 24 kHz
F0_FLOOR = 71.0                   # CheapTrick's FFT size (1024 at 24 kHz) follows from it
F0_CEIL = 1100.0                  # sung notes go above DIO's 800 Hz default
UNVOICED_PULSE_HZ = 500.0         # WORLD's pulse rate for unvoiced (noise-only) segments
PRE = 32                          # synthesis pre-roll (samples), see module docstring
DIO_SPEED = 2                     # DIO decimates by 2 (12 kHz): half the cost, same f0 to ~0.01 Hz
AP_STRIDE = 2                     # aperiodicity every 10 ms, interpolated (see _analyse)
N_FFT = pw.get_cheaptrick_fft_size(FS, F0_FLOOR)
_SAFE = 1e-12                     # WORLD's kMySafeGuardMinimum for log()


@dataclass(frozen=True)
class DspPreset:
    """A built-in voice: a pitch offset and a formant (spectral envelope) shift, in semitones."""

    name: str
    pitch: float
    formant: float


PRESETS: tuple[DspPreset, ...] = (
    DspPreset("bright", pitch=4.0, formant=2.0),      # default: clearly another, lighter voice
    DspPreset("deep", pitch=-4.0, formant=-2.0),
    DspPreset("identity", pitch=0.0, formant=0.0),    # WORLD resynthesis of the input
)


def minimum_phase(power: np.ndarray) -> np.ndarray:
    """Minimum-phase spectra complex[M, N/2+1] with magnitude sqrt(power[M, N/2+1]) (cepstrum)."""
    n = 2 * (power.shape[-1] - 1)
    cep = np.fft.irfft(0.5 * np.log(power + _SAFE), n=n)
    cep[..., 1: n // 2] *= 2.0
    cep[..., n // 2 + 1:] = 0.0
    return np.exp(np.fft.rfft(cep, n=n))


def warp_envelope(env: np.ndarray, semitones: float) -> np.ndarray:
    """Shift a spectral envelope [M, bins] along frequency by `semitones` (formant shift):
    out(f) = env(f / 2**(semitones/12)), linear interpolation between bins, edge held."""
    if semitones == 0.0:
        return env
    bins = env.shape[-1]
    src = np.arange(bins) / 2.0 ** (semitones / 12.0)
    lo = np.minimum(np.floor(src).astype(np.int64), bins - 2)
    w = np.clip(src - lo, 0.0, 1.0)
    return env[..., lo] * (1.0 - w) + env[..., lo + 1] * w


class DspCore:
    """Built-in WORLD voice implementing `engine.voice_core.VoiceCore`.

    `DspCore(speaker=0, pitch=0.0, formant=None, passthrough=False, hop_ms=10, lookahead_ms=10,
    context_ms=100, seed=0)`. `speaker` picks a `PRESETS` entry; `pitch` is the user's
    transposition on top of the preset's offset; `formant` overrides the preset's formant shift.
    """

    provider = "CPU (built-in DSP voice)"
    provider_note = ""

    def __init__(self, speaker: int = 0, pitch: float = 0.0, formant: float | None = None,
                 passthrough: bool = False, hop_ms: float = 10.0, lookahead_ms: float = 10.0,
                 context_ms: float = 100.0, seed: int = 0) -> None:
        self._hop = self._frames_ms(hop_ms, "hop_ms", minimum=1)
        self._look = self._frames_ms(lookahead_ms, "lookahead_ms", minimum=0)
        self._ctx = self._frames_ms(context_ms, "context_ms", minimum=1)
        if self._ctx < N_FFT + PRE:
            # DIO/CheapTrick need a few periods of the lowest f0 behind the newest frame.
            raise ValueError(f"context_ms must be >= {1000 * (N_FFT + PRE) / FS:.0f} ms, got {context_ms!r}")
        self.passthrough = bool(passthrough)
        self._seed = int(seed)
        self._speaker = 0
        self._pitch = 0.0
        self._formant_override: float | None = None
        self.set_speaker(speaker)
        self.set_pitch(pitch)
        self.set_formant(formant)
        self._window = self._ctx + self._hop + self._look
        self._prefill = self._hop - 1 + self._look
        self.reset()

    @staticmethod
    def _frames_ms(ms: float, name: str, minimum: int) -> int:
        samples = ms * FS / 1000.0
        if not math.isfinite(samples) or abs(samples / FRAME - round(samples / FRAME)) > 1e-9:
            raise ValueError(f"{name} must be a multiple of 5 ms (the WORLD frame), got {ms!r}")
        frames = round(samples / FRAME)
        if frames < minimum:
            raise ValueError(f"{name} must be at least {5 * minimum} ms, got {ms!r}")
        return frames * FRAME

    # -- VoiceCore ------------------------------------------------------------------------------
    @property
    def latency_24k(self) -> int:
        return self._hop - 1 + self._look + PRE

    # The analysis lookahead and pre-roll are one fixed pipeline delay here: the readouts show all
    # of `latency_24k` as the core's own delay (no model lookahead, no block crossfade).
    lookahead_24k = 0
    crossfade_24k = 0

    @property
    def speakers(self) -> tuple[str, ...]:
        return tuple(p.name for p in PRESETS)

    @property
    def formant(self) -> float:
        """Formant shift in use (semitones)."""
        if self._formant_override is not None:
            return self._formant_override
        return PRESETS[self._speaker].formant

    @property
    def total_pitch(self) -> float:
        """Preset offset + user transposition (semitones)."""
        return PRESETS[self._speaker].pitch + self._pitch

    def set_pitch(self, semitones: float) -> None:
        if not (math.isfinite(semitones) and -48.0 <= semitones <= 48.0):
            raise ValueError(f"pitch must be in [-48, 48] semitones, got {semitones!r}")
        self._pitch = float(semitones)

    def set_speaker(self, index: int) -> None:
        if not 0 <= int(index) < len(PRESETS):
            names = ", ".join(f"{i}={p.name}" for i, p in enumerate(PRESETS))
            raise ValueError(f"the built-in DSP voice has speakers {names}; got {index!r}")
        self._speaker = int(index)

    def set_formant(self, semitones: float | None) -> None:
        """Override the preset's formant shift (None = use the preset's)."""
        if semitones is not None and not (math.isfinite(semitones) and -12 <= semitones <= 12):
            raise ValueError(f"formant must be in [-12, 12] semitones or None, got {semitones!r}")
        self._formant_override = None if semitones is None else float(semitones)

    def describe(self) -> str:
        ms = 1000.0 * self.latency_24k / FS
        if self.passthrough:
            return f"Built-in DSP voice: passthrough (exact delay of {self.latency_24k} samples, {ms:.1f} ms)"
        name = PRESETS[self._speaker].name
        return (f"Built-in DSP voice '{name}' (WORLD, pitch {self.total_pitch:+.1f} st, "
                f"formant {self.formant:+.1f} st), latency {ms:.1f} ms")

    def reset(self) -> None:
        self._in = RingBuffer(self._window)
        self._in.write(np.zeros(self._ctx, dtype=np.float32))       # silence before the start
        self._out = RingBuffer(self._prefill + self._hop)
        self._out.write(np.zeros(self._prefill, dtype=np.float32))
        self._win_buf = np.empty(self._window, dtype=np.float32)
        self._ola = np.zeros(self._hop + N_FFT)                      # pulses' responses in flight
        self._phase = 0.0                                            # excitation phase, cycles
        self._ratio = 2.0 ** (self.total_pitch / 12.0)               # pitch ratio in use
        self._last_f0 = 0.0                                          # last voiced f0 seen (Hz)
        bins = N_FFT // 2 + 1
        self._prev = (0.0, np.full(bins, _SAFE), np.ones(bins))     # frame at the block start
        self._rng = np.random.default_rng(self._seed)

    def process(self, x24: np.ndarray) -> np.ndarray:
        x = np.asarray(x24, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"DspCore.process expects mono float32[N], got shape {x.shape}")
        x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        out = np.empty(len(x), dtype=np.float32)
        pos = 0
        while pos < len(x):
            m = min(len(x) - pos, self._in.free())
            self._in.write(x[pos: pos + m])
            if self._in.free() == 0:                 # a full window: one internal block
                self._in.peek(self._window, out=self._win_buf)
                self._in.skip(self._hop)
                self._out.write(self._block(self._win_buf))
            self._out.read(m, out=out[pos: pos + m])
            pos += m
        return out

    # -- one internal block ----------------------------------------------------------------------
    def _block(self, window: np.ndarray) -> np.ndarray:
        """float32[hop] of output for the block whose analysis window is `window`."""
        if self.passthrough:
            start = self._ctx - PRE
            return window[start: start + self._hop].copy()
        f0, sp, ap = self._analyse(window.astype(np.float64))
        return self._synthesise(f0, sp, ap).astype(np.float32)

    def _analyse(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """f0 [K+1], envelope [K+1, bins], aperiodicity [K+1, bins] at block-relative times
        0, F, ..., hop (the first row is the previous block's last frame)."""
        f0_raw, t = pw.dio(w, FS, f0_floor=F0_FLOOR, f0_ceil=F0_CEIL,
                           frame_period=1000.0 * FRAME / FS, speed=DIO_SPEED)
        k = self._hop // FRAME
        new = self._ctx // FRAME + np.arange(1, k + 1)
        f0 = pw.stonemask(w, f0_raw[new], t[new], FS)
        sp = pw.cheaptrick(w, f0, t[new], FS, f0_floor=F0_FLOOR, fft_size=N_FFT)
        # D4C costs ~0.25 ms a frame; aperiodicity changes slowly, so it is analysed on every
        # AP_STRIDE-th frame (always including the block's last one) and interpolated between.
        ap_at = np.arange(k, 0, -AP_STRIDE)[::-1]                       # 1-based new frames
        ap_some = pw.d4c(w, f0[ap_at - 1], t[new][ap_at - 1], FS, fft_size=N_FFT)
        ap_some = np.vstack((self._prev[2], ap_some))
        at = np.concatenate(([0], ap_at))
        hi = np.searchsorted(at, np.arange(1, k + 1))                   # at[hi-1] < i <= at[hi]
        w = ((np.arange(1, k + 1) - at[hi - 1]) / (at[hi] - at[hi - 1]))[:, None]
        ap = ap_some[hi - 1] * (1.0 - w) + ap_some[hi] * w
        sp = np.nan_to_num(sp, nan=_SAFE, posinf=_SAFE, neginf=_SAFE)
        ap = np.nan_to_num(ap, nan=1.0, posinf=1.0, neginf=1.0)
        prev_f0, prev_sp, prev_ap = self._prev
        self._prev = (float(f0[-1]), sp[-1], ap[-1])
        return (np.concatenate(([prev_f0], f0)), np.vstack((prev_sp, sp)), np.vstack((prev_ap, ap)))

    def _f0_track(self, f0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample excitation f0 (Hz, pitch-shifted; 500 Hz noise pulses where unvoiced) and
        voicing [hop] from the K+1 frame values, interpolated like WORLD's synthesis."""
        voiced = f0 > 0.0
        # Unvoiced frames borrow the nearest voiced value so onsets/offsets do not glide from 0.
        filled = f0.copy()
        if voiced.any():
            idx = np.flatnonzero(voiced)
            nearest = idx[np.abs(np.arange(len(f0))[:, None] - idx[None, :]).argmin(axis=1)]
            filled = f0[nearest]
            self._last_f0 = float(f0[idx[-1]])
        else:
            filled[:] = self._last_f0 or UNVOICED_PULSE_HZ
        n = np.arange(self._hop, dtype=np.float64)
        frame_pos = np.arange(len(f0)) * float(FRAME)
        vuv = np.interp(n, frame_pos, voiced.astype(np.float64)) > 0.5
        # The pitch ratio glides over one block after set_pitch/set_speaker (no jump).
        target = 2.0 ** (self.total_pitch / 12.0)
        ratio = self._ratio * (target / self._ratio) ** ((n + 1.0) / self._hop)
        self._ratio = target
        hz = np.where(vuv, np.interp(n, frame_pos, filled) * ratio, UNVOICED_PULSE_HZ)
        return np.clip(hz, 1.0, FS / 4.0), vuv

    def _synthesise(self, f0: np.ndarray, sp: np.ndarray, ap: np.ndarray) -> np.ndarray:
        hop = self._hop
        hz, vuv = self._f0_track(f0)
        inc = hz / FS                                              # cycles per sample
        phase = self._phase + np.cumsum(inc)                       # phase after each sample
        before = np.concatenate(([self._phase], phase[:-1]))
        pulses = np.flatnonzero(np.floor(phase) > np.floor(before))
        frac = (np.floor(phase[pulses]) - before[pulses]) / inc[pulses]   # in (0, 1]
        self._phase = float(phase[-1] - math.floor(phase[-1]))

        if len(pulses):
            formant = self.formant
            sp = warp_envelope(sp, formant)
            ap = warp_envelope(ap, formant)
            # Envelope and aperiodicity at each pulse: linear between frames (as WORLD does).
            u = pulses / FRAME
            i0 = np.minimum(u.astype(np.int64), len(f0) - 2)
            w = (u - i0)[:, None]
            env = sp[i0] * (1.0 - w) + sp[i0 + 1] * w
            ap_ratio = (np.clip(ap[i0] * (1.0 - w) + ap[i0 + 1] * w, 0.001, 1.0 - 1e-12)) ** 2
            voiced = vuv[pulses][:, None]
            periodic = np.where(voiced, env * (1.0 - ap_ratio), _SAFE)
            aperiodic = np.where(voiced, env * ap_ratio, env)
            resp = self._responses(periodic, aperiodic, voiced[:, 0], hz[pulses], frac)
            for p, r in zip(pulses, resp):
                self._ola[p: p + N_FFT] += r
        out = self._ola[:hop].copy()
        self._ola[:-hop] = self._ola[hop:]
        self._ola[-hop:] = 0.0
        return out

    def _responses(self, periodic: np.ndarray, aperiodic: np.ndarray, voiced: np.ndarray,
                   hz: np.ndarray, frac: np.ndarray) -> np.ndarray:
        """Each pulse's waveform float64[P, N_FFT]: periodic part (min-phase, scaled by
        sqrt(period), fractional position) + aperiodic part (min-phase filtered noise of one
        period). The pulse itself sits at index PRE + frac."""
        n_pulses, bins = periodic.shape
        k = np.arange(bins)
        period = np.clip(np.rint(FS / hz), 1, N_FFT // 2).astype(np.int64)
        spectra = minimum_phase(np.concatenate((periodic, aperiodic)))
        shift = np.exp(-2j * np.pi * k[None, :] * (PRE + frac[:, None]) / N_FFT)
        hp = spectra[:n_pulses] * shift
        hp[:, 0] = 0.0                                             # WORLD removes the DC
        wave = np.fft.irfft(hp, n=N_FFT) * np.sqrt(period)[:, None]
        wave[~voiced] = 0.0
        noise = np.zeros((n_pulses, N_FFT))
        draws = self._rng.standard_normal(int(period.sum()))
        starts = np.concatenate(([0], np.cumsum(period)[:-1]))
        for i, (s, length) in enumerate(zip(starts, period)):
            seg = draws[s: s + length]
            noise[i, PRE: PRE + length] = seg - seg.mean()
        wave += np.fft.irfft(spectra[n_pulses:] * np.fft.rfft(noise, axis=1), n=N_FFT)
        return wave
