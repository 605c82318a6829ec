"""Harmonic-plus-noise vocoder (DDSP style): log10 mel [B, T, 80] + f0 [B, T] Hz -> 24 kHz wave [B, T·hop].

A small causal convolution network reads each frame's log-mel and log f0 and predicts, per frame, the
*controls* of a fixed synthesiser:

- an overall harmonic amplitude and a softmax distribution over `sines` harmonics (harmonics at or
  above Nyquist − `nyquist_margin` Hz and all harmonics of unvoiced frames, f0 = 0, are silenced);
- the gains of `noise_bands` noise bands.

The synthesiser is not trained. Harmonic k is sin(2π·k·φ), φ the fundamental's running phase in
cycles accumulated sample by sample from f0 (constant within a frame, as NSF-HiFiGAN's source:
`models.nsf_source.sample_phases`), so the output's pitch is the f0 it is given by construction —
a spectral-loss-only training cannot train the pitch out, unlike NSF-HiFiGAN's learned source
branch. The noise is the caller's white noise (`noise[..., 0]`) through a fixed bank of linearly
spaced band-pass FIR filters (a causal convolution; the bands sum to about a unit impulse), each
band times its gain (the filters are a buffer: never trained, saved with the weights). Amplitudes and
gains move linearly from the previous frame's values to the current frame's over the first half of
the frame's samples and hold from its centre (where its mel frame is centred) to its end, so the
synthesis looks at no later frame; the lookahead is the network's `right_context` frames only. Not STFT-based: every part is a causal
convolution or a per-sample formula, so it streams exactly.

Interface of `models.vocoder.NSFHiFiGAN`, so the engine runs both kinds of graphs unchanged:
`phase` and `noise` keep NSF-HiFiGAN's H+1 = 9 channels (`n_harmonics`); only channel 0 is used —
`phase[:, 0]` is φ before the first sample, `phase_out[:, 0]` φ after the last, and channels 1…8
pass through unchanged; `noise[..., 0]` is the white noise, channels 1…8 are ignored. The default
`noise` of `forward` is zeros (no noise part), as NSF-HiFiGAN's: training and resynthesis pass
standard normal noise.

Checkpoints (`HarmonicNoiseVocoder.checkpoint`, `load_hn_vocoder`): one file `hn_vocoder_<step>.ckpt` =
`{'hn_vocoder': {'config': {...}, 'state': {name: tensor}}, 'global_step': n}`, plain data and
tensors only (`models.checkpoints.safe_load`); `models.vocoder.load_vocoder` recognises it.
`StatefulHarmonicNoiseVocoder` runs it on chunks with cached state (exported as
vocoder_stateful.onnx).
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.checkpoints import CheckpointError, safe_load
from models.nsf_source import sample_phases
from models.streaming import (CachedConv1d, DelayLine, StateSpec, Stream, StreamContext, collect_states,
                              pad_conv1d, split_right, valid_mask)
from models.vocoder import HARMONIC_NUM, LRELU_SLOPE, MODEL_AUDIO, Vocoder, VocoderConfigError

LAYOUT = "hn"
CHECKPOINT_KEY = "hn_vocoder"
F0_FLOOR = 30.0          # Hz: log f0 input of unvoiced frames (f0 = 0) and of very low f0
LOG_F0_CENTER = 5.0      # log(148 Hz): centres the log f0 input
AMPLITUDE_OFFSET = 3.0   # softplus(x − 3) ≈ 0.05 at x = 0: a quiet start
GAIN_OFFSET = 5.0        # softplus(x − 5) ≈ 0.007 per band at x = 0


@dataclass(frozen=True)
class HNConfig:
    """Sizes of a `HarmonicNoiseVocoder` (the dict of `to_dict` is stored in its checkpoints)."""

    sample_rate: int = MODEL_AUDIO[0]
    hop_size: int = MODEL_AUDIO[1]
    num_mels: int = MODEL_AUDIO[2]
    channels: int = 192
    kernel_size: int = 3
    dilations: tuple[int, ...] = (1, 2, 4, 1)
    sines: int = 96                 # harmonics of f0 synthesised
    noise_bands: int = 48           # linearly spaced over [0, sr/2]
    noise_taps: int = 128           # FIR length of each band filter (samples)
    nyquist_margin: float = 500.0   # Hz below sr/2 where harmonics stop
    right_context: int = 0          # frames of lookahead of the network
    source: str = "<config>"        # where it was read from, for error messages

    layout = LAYOUT  # the kind of vocoder, as `VocoderConfig.layout` (not a field)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "<config>") -> HNConfig:
        """The config of `to_dict`'s keys (all optional: defaults above); unknown keys are refused."""
        if not isinstance(raw, Mapping):
            raise VocoderConfigError(f"{source}: expected a mapping of settings, got {type(raw).__name__}")
        known = {f.name for f in fields(cls)} - {"source"}
        unknown = sorted(set(map(str, raw)) - known)
        if unknown:
            raise VocoderConfigError(f"{source}: unknown harmonic-plus-noise vocoder setting(s) {unknown}; "
                                     f"known: {sorted(known)}")
        try:
            values = {k: tuple(int(d) for d in v) if k == "dilations" else
                      float(v) if k == "nyquist_margin" else int(v) for k, v in raw.items()}
        except (TypeError, ValueError) as exc:
            raise VocoderConfigError(f"{source}: malformed harmonic-plus-noise vocoder setting ({exc})") from None
        config = cls(**values, source=source)
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("source")
        out["dilations"] = list(self.dilations)
        return out

    def validate(self) -> None:
        """Raise VocoderConfigError for sizes the vocoder cannot be built with."""
        positive = ("sample_rate", "hop_size", "num_mels", "channels", "kernel_size", "sines", "noise_bands",
                    "noise_taps")
        bad = [f"{k}={getattr(self, k)}" for k in positive if getattr(self, k) < 1]
        bad += [f"dilations={list(self.dilations)}"] if any(d < 1 for d in self.dilations) else []
        bad += [f"right_context={self.right_context}"] if self.right_context < 0 else []
        bad += [f"nyquist_margin={self.nyquist_margin}"] if not 0 <= self.nyquist_margin < self.sample_rate / 2 else []
        if bad:
            raise VocoderConfigError(f"{self.source}: invalid harmonic-plus-noise vocoder setting(s) {', '.join(bad)} "
                                     "(sizes ≥ 1, right_context ≥ 0, 0 ≤ nyquist_margin < sr/2)")

    def layer_pads(self) -> list[tuple[int, int]]:
        """(left, right) padding of the input convolution and of each dilated one: causal, with the
        `right_context` frames of lookahead given to the first layers that can take them."""
        spans = [self.kernel_size - 1] + [(self.kernel_size - 1) * d for d in self.dilations]
        pads, ahead = [], self.right_context
        for span in spans:
            pads.append(split_right(span, ahead))
            ahead -= pads[-1][1]
        return pads


def band_filters(config: HNConfig) -> torch.Tensor:
    """The fixed noise filter bank [bands, 1, taps]: Hann-windowed sinc band-passes over
    [b·W, (b+1)·W) Hz, W = sr / 2 / bands. Together they pass white noise nearly unchanged (each band
    carries ≈ 1/bands of its power), so equal gains g give white noise of RMS ≈ g."""
    taps, bands, sr = config.noise_taps, config.noise_bands, config.sample_rate
    n = torch.arange(taps, dtype=torch.float64) - (taps - 1) / 2
    window = torch.hann_window(taps, periodic=False, dtype=torch.float64)
    edges = torch.linspace(0.0, 1.0, bands + 1, dtype=torch.float64)  # fractions of Nyquist

    def lowpass(cut: torch.Tensor) -> torch.Tensor:
        return cut[:, None] * torch.sinc(cut[:, None] * n)

    bank = (lowpass(edges[1:]) - lowpass(edges[:-1])) * window
    return bank[:, None, :].float()


class FixedFilterBank(nn.Conv1d):
    """A 1 → `bands` channel convolution whose weights are a buffer, not parameters: never trained, but
    saved with the checkpoint, so a vocoder always synthesises with the filters it was trained with;
    a `nn.Conv1d`, so `CachedConv1d` streams it."""

    def __init__(self, filters: torch.Tensor) -> None:
        super().__init__(1, filters.shape[0], filters.shape[2], bias=False)
        del self.weight
        self.register_buffer("weight", filters)


class HarmonicNoiseVocoder(Vocoder):
    """Harmonic-plus-noise vocoder with the call interface of `NSFHiFiGAN`.

    forward(mel [B, T, 80] log10, f0 [B, T] Hz, phase [B, H+1] | None, noise [B, T·hop, H+1] | None)
      -> wav [B, T·hop]
    forward_stream(mel, f0, phase, noise) -> (wav [B, T·hop], phase_out [B, H+1])
    (H+1 = `n_harmonics` = 9 channels, of which only 0 is used: see the module docstring.)
    """

    def __init__(self, config: HNConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.layout = LAYOUT
        self.sample_rate, self.hop_size, self.num_mels = config.sample_rate, config.hop_size, config.num_mels
        self.n_harmonics = HARMONIC_NUM + 1
        c, k = config.channels, config.kernel_size
        self.pads = config.layer_pads()
        self.inp = nn.Conv1d(config.num_mels + 1, c, k)
        self.blocks = nn.ModuleList(nn.Conv1d(c, c, k, dilation=d) for d in config.dilations)
        self.head = nn.Conv1d(c, 1 + config.sines + config.noise_bands, 1)
        # a fresh vocoder renders a quiet band-limited pulse train at f0 (equal harmonics) and faint
        # white noise, whatever its input: training starts from the right pitch
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.noise_filter = FixedFilterBank(band_filters(config))
        self.noise_pads = (config.noise_taps - 1, 0)
        harmonics = torch.arange(1, config.sines + 1, dtype=torch.float32)
        self.register_buffer("harmonics", harmonics, persistent=False)                       # [K]
        self.register_buffer("cycles_per_hz", torch.tensor([1.0 / config.sample_rate]), persistent=False)
        self.register_buffer("ramp", torch.arange(1, config.hop_size + 1, dtype=torch.float32)[:, None],
                             persistent=False)                                                 # [hop, 1]
        # weight of the current frame's controls at each sample of the frame (the rest: the previous
        # frame's): a ramp over the first half, then held, so frame t's values sound at its centre
        # (sample hop·t + hop/2, where its mel frame is centred) without looking at frame t + 1
        blend = (self.ramp[:, 0] / (config.hop_size // 2)).clamp(max=1.0)
        self.register_buffer("blend", blend, persistent=False)                                 # [hop]

    # ------------------------------------------------------------------ the parts
    def conditioning(self, mel: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
        """mel [B, T, M], f0 [B, T] -> network input [B, M + 1, T]: log-mel, centred log f0. (Training
        data and the engine hold f0 through unvoiced stretches, so the mel alone tells voicing.)"""
        log_f0 = torch.log(f0.clamp_min(F0_FLOOR)) - LOG_F0_CENTER
        return torch.cat([mel.transpose(1, 2), log_f0[:, None]], dim=1)

    def controls(self, hidden: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
        """hidden [B, C, T] (the network's last layer), f0 [B, T] -> controls [B, K + NB, T]:
        K harmonic amplitudes, then NB noise-band gains, all ≥ 0."""
        k = self.config.sines
        out = self.head(hidden)
        amplitude = F.softplus(out[:, :1] - AMPLITUDE_OFFSET)
        audible = (self.harmonics[None, :, None] * f0[:, None] < self.sample_rate / 2 - self.config.nyquist_margin) \
            & (f0[:, None] > 0)                                                                # [B, K, T]
        share = torch.softmax(out[:, 1:1 + k], dim=1) * audible.to(out.dtype)
        share = share / share.sum(dim=1, keepdim=True).clamp_min(1e-6)
        gains = F.softplus(out[:, 1 + k:] - GAIN_OFFSET)
        return torch.cat([amplitude * share, gains], dim=1)

    def render(self, controls: torch.Tensor, previous: torch.Tensor, f0: torch.Tensor, phase: torch.Tensor,
               bands: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The synthesiser: controls and the previous frame's [B, K + NB, T], f0 [B, T] Hz, fundamental
        phase [B, 1] cycles, band-passed noise [B, NB, T·hop] -> (wav [B, T·hop], phase after [B, 1])."""
        b, t = f0.shape
        fundamental, end = sample_phases(f0, phase, self.cycles_per_hz, self.ramp, self.hop_size)  # [B,T,hop,1]
        cycles = fundamental * self.harmonics                                                       # [B,T,hop,K]
        sines = torch.sin((2.0 * math.pi) * (cycles - torch.floor(cycles)))
        noise = bands.reshape(b, self.config.noise_bands, t, self.hop_size).permute(0, 2, 3, 1)     # [B,T,hop,NB]
        basis = torch.cat([sines, noise], dim=-1)
        ends = torch.stack([previous, controls], dim=-1).transpose(1, 2)                           # [B,T,K+NB,2]
        both = torch.matmul(basis, ends)                                                           # [B,T,hop,2]
        wav = both[..., 0] + (both[..., 1] - both[..., 0]) * self.blend
        return wav.reshape(b, t * self.hop_size), end

    # ------------------------------------------------------------------ inference
    def forward_stream(self, mel: torch.Tensor, f0: torch.Tensor, phase: torch.Tensor,
                       noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Same as `forward`, all inputs explicit, also returning phase_out [B, H+1] (channel 0: the
        fundamental's phase after the last sample, in [0, 1); channels 1…8: `phase`'s)."""
        self.check_inputs(mel, f0, phase, noise)
        x = F.leaky_relu(pad_conv1d(self.inp, self.conditioning(mel, f0), self.pads[0]), LRELU_SLOPE)
        for conv, pads in zip(self.blocks, self.pads[1:]):
            x = x + F.leaky_relu(pad_conv1d(conv, x, pads), LRELU_SLOPE)
        controls = self.controls(x, f0)
        previous = F.pad(controls, (1, 0))[..., :-1]
        bands = pad_conv1d(self.noise_filter, noise[..., :1].transpose(1, 2), self.noise_pads)
        wav, end = self.render(controls, previous, f0, phase[:, :1], bands)
        return wav, torch.cat([end, phase[:, 1:]], dim=1)

    # ------------------------------------------------------------------ geometry
    @property
    def receptive_field(self) -> tuple[int, int]:
        """(left, right) mel/f0 frames that output frame t depends on besides frame t, given the carried
        `phase`: left = the network's left context + 1 (the previous frame's controls), and at least
        the frames of noise the band filters look back over; right = the network's lookahead."""
        left = sum(p[0] for p in self.pads) + 1
        noise_frames = -(-(self.config.noise_taps - 1) // self.hop_size)
        return max(left, noise_frames), sum(p[1] for p in self.pads)

    def check_audio(self, sample_rate: int = MODEL_AUDIO[0], hop: int = MODEL_AUDIO[1],
                    n_mels: int = MODEL_AUDIO[2]) -> None:
        """Raise VocoderConfigError unless the vocoder runs at (sample_rate, hop, n_mels)."""
        wrong = [f"{name}={have} (need {want})" for name, have, want in (
            ("sample_rate", self.sample_rate, sample_rate), ("hop_size", self.hop_size, hop),
            ("num_mels", self.num_mels, n_mels)) if have != want]
        if wrong:
            raise VocoderConfigError(
                f"{self.config.source}: this vocoder does not fit the acoustic model's audio ({sample_rate} Hz, "
                f"hop {hop}, {n_mels} mel bins): " + ", ".join(wrong))

    def describe(self) -> dict[str, Any]:
        """What the voice pack's manifest records about this network."""
        c = self.config
        return {"layout": LAYOUT, "sines": c.sines, "noise_bands": c.noise_bands, "noise_taps": c.noise_taps}

    def stateful(self) -> StatefulHarmonicNoiseVocoder:
        return StatefulHarmonicNoiseVocoder(self)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self, step: int) -> dict[str, Any]:
        """The checkpoint object (plain data + tensors) of this vocoder at training step `step`."""
        state = {k: v.detach().cpu().clone() for k, v in self.state_dict().items()}
        return {CHECKPOINT_KEY: {"config": self.config.to_dict(), "state": state}, "global_step": int(step)}


def is_hn_checkpoint(checkpoint: Any) -> bool:
    """Whether a loaded checkpoint object is a harmonic-plus-noise vocoder's."""
    return isinstance(checkpoint, Mapping) and CHECKPOINT_KEY in checkpoint


def from_checkpoint(checkpoint: Mapping[str, Any], source: str = "<checkpoint>") -> HarmonicNoiseVocoder:
    """The vocoder (eval mode) of a loaded checkpoint object; VocoderConfigError / CheckpointError
    with one sentence when it is not a complete, matching one."""
    inner = checkpoint.get(CHECKPOINT_KEY)
    if not isinstance(inner, Mapping) or not isinstance(inner.get("config"), Mapping) \
            or not isinstance(inner.get("state"), Mapping):
        raise CheckpointError(f"{source}: a harmonic-plus-noise vocoder checkpoint needs "
                              f"{{'{CHECKPOINT_KEY}': {{'config': {{…}}, 'state': {{…}}}}}}")
    model = HarmonicNoiseVocoder(HNConfig.from_dict(inner["config"], source=f"{source} (config)"))
    state = dict(inner["state"])
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = [f"{k} {list(state[k].shape)} ≠ {list(own[k].shape)}" for k in sorted(set(own) & set(state))
             if not isinstance(state[k], torch.Tensor) or tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        raise VocoderConfigError(f"{source}: its weights do not match the vocoder its config describes "
                                 f"(missing {missing[:5]}, unexpected {unexpected[:5]}, shapes {wrong[:5]})")
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.eval()


def load_hn_vocoder(path: str | os.PathLike) -> HarmonicNoiseVocoder:
    """Load a harmonic-plus-noise vocoder checkpoint (see the module docstring) in eval mode."""
    path = Path(path)
    checkpoint = safe_load(path)
    if not is_hn_checkpoint(checkpoint):
        raise CheckpointError(f"{path}: not a harmonic-plus-noise vocoder checkpoint (no '{CHECKPOINT_KEY}' entry)")
    return from_checkpoint(checkpoint, str(path))


class StatefulHarmonicNoiseVocoder(nn.Module):
    """`HarmonicNoiseVocoder` on chunks of new frames with cached state (exported as vocoder_stateful.onnx).

    forward(mel [1,n,80], f0 [1,n], noise [1,n·hop,H+1], position [1] int64, *states)
      -> (audio [1, n·hop], position + n, *new states)
    The audio of a call is the whole-sequence output (phase 0 at frame 0) at samples
    hop·position − delay …, delay = hop · right_context: the network's convolutions are cached, and
    the f0 and the white noise are delayed by the network's lookahead so that the synthesiser gets
    each frame's controls together with that frame's f0 and noise. States: the fundamental's phase
    `vocoder_phase` [1], the previous frame's controls, the convolutions' left contexts and the delays.
    """

    def __init__(self, vocoder: HarmonicNoiseVocoder) -> None:
        super().__init__()
        v, c = vocoder, vocoder.config
        self.vocoder = v
        self.inp = CachedConv1d(v.inp, v.pads[0], Stream(1, 0), "vocoder_in")
        stream = self.inp.stream_out
        self.blocks, self.residuals = nn.ModuleList(), nn.ModuleList()
        for i, (conv, pads) in enumerate(zip(v.blocks, v.pads[1:])):
            cached = CachedConv1d(conv, pads, stream, f"vocoder_block{i}")
            self.residuals.append(DelayLine(c.channels, cached.stream_out.delay - stream.delay,
                                            f"vocoder_block{i}_res"))
            self.blocks.append(cached)
            stream = cached.stream_out
        self.frames = stream                   # the controls: rate 1, `lookahead` frames late
        lookahead, hop = stream.delay, c.hop_size
        self.f0_delay = DelayLine(1, lookahead, "vocoder_f0_delay")
        self.noise_delay = DelayLine(1, lookahead * hop, "vocoder_noise_delay")
        self.noise_filter = CachedConv1d(v.noise_filter, v.noise_pads, Stream(hop, lookahead * hop),
                                         "vocoder_noise_filter")
        self.previous = DelayLine(c.sines + c.noise_bands, 1, "vocoder_previous_controls")
        self.delay = lookahead * hop
        self.state_specs = [StateSpec("vocoder_phase", (1,)), *collect_states(self)]

    def forward(self, mel: torch.Tensor, f0: torch.Tensor, noise: torch.Tensor, position: torch.Tensor,
                *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        v = self.vocoder
        ctx = StreamContext(position, {spec.name: s for spec, s in zip(self.state_specs, states)})
        x = F.leaky_relu(self.inp(v.conditioning(mel, f0), ctx), LRELU_SLOPE)
        for conv, residual in zip(self.blocks, self.residuals):
            x = residual(x, ctx) + F.leaky_relu(conv(x, ctx), LRELU_SLOPE)
        f0_late = self.f0_delay(f0[:, None], ctx)[:, 0]
        controls = valid_mask(v.controls(x, f0_late), self.frames, ctx)  # the whole sequence starts at zero
        previous = self.previous(controls, ctx)
        bands = self.noise_filter(self.noise_delay(noise[..., :1].transpose(1, 2), ctx), ctx)
        wav, phase = v.render(controls, previous, f0_late, ctx.take("vocoder_phase"), bands)
        ctx.put("vocoder_phase", phase)
        return (wav, position + mel.shape[1], *ctx.outputs(self.state_specs))


__all__ = ["CHECKPOINT_KEY", "HNConfig", "HarmonicNoiseVocoder", "LAYOUT", "StatefulHarmonicNoiseVocoder",
           "band_filters", "from_checkpoint", "is_hn_checkpoint", "load_hn_vocoder"]
