"""NSF-HiFiGAN vocoder (spec §8): log10 mel [B, T, 80] + f0 [B, T] Hz -> 24 kHz waveform [B, T·hop].

Two checkpoint layouts load into the same module (state-dict names as the official code, with
weight norm folded into plain `weight`s at load, so exported graphs contain no weight-norm ops):

- 'm4singer' (DiffSinger/M4Singer `HifiGanGenerator`, used by CoMoSVC): `model_ckpt_steps_*.ckpt` =
  `{'state_dict': {'model_gen': generator}}` + `config.yaml` beside it. `conv_pre` always takes 80
  bins; each `noise_convs` output goes through ReLU and a parameter-free LayerNorm over channels.
- 'openvpi' (openvpi / so-vits-svc `Generator`): `model` = `{'generator': generator}` +
  `config.json` beside it. `conv_pre` takes `num_mels` bins, no ReLU/LayerNorm on the source
  branch, and it was trained on natural-log mels, so our log10 input is multiplied by ln 10 inside.

Both use LeakyReLU(0.1) inside, and `F.leaky_relu(x)` with PyTorch's default slope 0.01 before
`conv_post` (read in the DiffSinger, CoMoSVC, so-vits-svc and openvpi/DiffSinger sources alike),
then tanh. The harmonic source is `models.nsf_source.HarmonicSource` (9 harmonics) with explicit
phase and noise. openvpi computes the sine phase differently (per-frame accumulation plus linear
interpolation, random phase added per frame for k ≥ 2), which is the same sin(2π·cumsum(k·f0/sr))
up to the initial phase, so one source serves both layouts.

Every hyper-parameter comes from the config and is checked against the checkpoint's tensor shapes.

`right_context` (frames; an optional config key, absent from official configs = the symmetric
network) bounds the lookahead: conv_pre looks min(right_context, 3) frames ahead and every later
layer is causal (residual and post convolutions padded on the left only, transposed convolutions
cropped on the right only, the source convolutions aligned on their stride). Only padding changes,
not the weights. `StatefulVocoder` runs either kind on chunks with cached state.
"""
from __future__ import annotations

import abc
import json
import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from models.checkpoints import CheckpointError, safe_load
from models.nsf_source import HarmonicSource
from models.streaming import (
    CachedConv1d,
    CachedConvTranspose1d,
    DelayLine,
    StateSpec,
    Stream,
    StreamContext,
    align,
    collect_states,
    crop_conv_transpose1d,
    pad_conv1d,
    split_right,
)

LAYOUTS = ("m4singer", "openvpi")
HARMONIC_NUM = 8                      # fixed in both official generators
LRELU_SLOPE = 0.1                     # inside the generator
FINAL_LRELU_SLOPE = 0.01              # `F.leaky_relu(x)` before conv_post (PyTorch default)
M4SINGER_MEL_BINS = 80                # conv_pre in-channels hard-coded in the M4Singer code
#: (sample rate, hop, mel bins) that the CoMoSVC acoustic model produces (spec §1)
MODEL_AUDIO = (24000, 128, 80)
#: (n_fft, win, fmin, fmax) of our mel front end; a vocoder trained on other mels still runs
MODEL_MEL = (512, 512, 30.0, 12000.0)

# official config key of each field, per layout
_AUDIO_KEYS = {
    "m4singer": {"sample_rate": "audio_sample_rate", "hop_size": "hop_size",
                 "num_mels": "audio_num_mel_bins", "n_fft": "fft_size", "win_size": "win_size",
                 "fmin": "fmin", "fmax": "fmax"},
    "openvpi": {"sample_rate": "sampling_rate", "hop_size": "hop_size", "num_mels": "num_mels",
                "n_fft": "n_fft", "win_size": "win_size", "fmin": "fmin", "fmax": "fmax"},
}
_NET_KEYS = ("resblock", "upsample_rates", "upsample_kernel_sizes", "upsample_initial_channel",
             "resblock_kernel_sizes", "resblock_dilation_sizes")
_CONFIG_FILE = {"m4singer": "config.yaml", "openvpi": "config.json"}


class VocoderConfigError(ValueError):
    """The vocoder config is invalid, does not describe the checkpoint, or does not fit the model audio."""


@dataclass(frozen=True)
class VocoderConfig:
    """Generator hyper-parameters and audio parameters, named independently of the layout."""

    layout: str
    sample_rate: int
    hop_size: int
    num_mels: int
    n_fft: int
    win_size: int
    fmin: float
    fmax: float
    resblock: str
    upsample_rates: tuple[int, ...]
    upsample_kernel_sizes: tuple[int, ...]
    upsample_initial_channel: int
    resblock_kernel_sizes: tuple[int, ...]
    resblock_dilation_sizes: tuple[tuple[int, ...], ...]
    source: str = "<config>"  # where it was read from, for error messages
    right_context: int | None = None  # frames of lookahead; None = the official symmetric network

    @classmethod
    def from_dict(cls, layout: str, raw: Mapping[str, Any], source: str = "<config>") -> VocoderConfig:
        """Read the official keys of `layout` from a parsed config.yaml / config.json."""
        if layout not in LAYOUTS:
            raise VocoderConfigError(f"unknown vocoder layout {layout!r}; expected one of {LAYOUTS}")
        if not isinstance(raw, Mapping):
            raise VocoderConfigError(f"{source}: expected a mapping of settings, got {type(raw).__name__}")

        def get(key: str) -> Any:
            if key not in raw:
                raise VocoderConfigError(f"{source}: missing key {key!r} (needed by the {layout} vocoder)")
            return raw[key]

        if layout == "m4singer" and not get("use_pitch_embed"):
            raise VocoderConfigError(
                f"{source}: use_pitch_embed is false — a plain HiFi-GAN without the harmonic source; "
                "only NSF-HiFiGAN checkpoints are supported")
        audio = {field: get(key) for field, key in _AUDIO_KEYS[layout].items()}
        try:
            config = cls(
                layout=layout,
                sample_rate=int(audio["sample_rate"]), hop_size=int(audio["hop_size"]),
                num_mels=int(audio["num_mels"]), n_fft=int(audio["n_fft"]),
                win_size=int(audio["win_size"]), fmin=float(audio["fmin"]), fmax=float(audio["fmax"]),
                resblock=str(get("resblock")),
                upsample_rates=tuple(int(v) for v in get("upsample_rates")),
                upsample_kernel_sizes=tuple(int(v) for v in get("upsample_kernel_sizes")),
                upsample_initial_channel=int(get("upsample_initial_channel")),
                resblock_kernel_sizes=tuple(int(v) for v in get("resblock_kernel_sizes")),
                resblock_dilation_sizes=tuple(tuple(int(d) for d in ds)
                                              for ds in get("resblock_dilation_sizes")),
                source=source,
                right_context=None if raw.get("right_context") is None else int(raw["right_context"]),
            )
        except (TypeError, ValueError) as exc:
            raise VocoderConfigError(f"{source}: malformed vocoder setting ({exc})") from exc
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        """The official config keys of this layout (what config.yaml / config.json hold)."""
        out: dict[str, Any] = {key: getattr(self, field) for field, key in _AUDIO_KEYS[self.layout].items()}
        for key in _NET_KEYS:
            value = getattr(self, key)
            out[key] = [list(v) for v in value] if key == "resblock_dilation_sizes" else (
                list(value) if isinstance(value, tuple) else value)
        if self.layout == "m4singer":
            out["use_pitch_embed"] = True
        if self.right_context is not None:
            out["right_context"] = self.right_context
        return out

    @property
    def mel_in(self) -> int:
        """conv_pre in-channels: 80 in the M4Singer code whatever the config says, else num_mels."""
        return M4SINGER_MEL_BINS if self.layout == "m4singer" else self.num_mels

    @property
    def n_resblocks(self) -> int:
        """Parallel residual blocks per upsampling stage."""
        return len(self.resblock_kernel_sizes)

    def stage_channels(self, stage: int) -> int:
        """Channels after upsampling stage `stage` (0-based): C0 / 2^(stage+1)."""
        return self.upsample_initial_channel // 2 ** (stage + 1)

    def source_stride(self, stage: int) -> int:
        """Excitation samples per step of stage `stage`'s output: Π(upsample_rates[stage+1:])."""
        return math.prod(self.upsample_rates[stage + 1:])

    def dilations(self, j: int) -> tuple[int, ...]:
        """Dilations residual block `j` of a stage uses (the official blocks read the first 3 / 2)."""
        return self.resblock_dilation_sizes[j][: 3 if self.resblock == "1" else 2]

    def validate(self) -> None:
        """Raise VocoderConfigError for settings the official generator cannot run with."""
        src, rates, kernels = self.source, self.upsample_rates, self.upsample_kernel_sizes
        if self.right_context is not None and self.right_context < 0:
            raise VocoderConfigError(f"{src}: right_context must be >= 0 frames, got {self.right_context}")
        if self.resblock not in ("1", "2"):
            raise VocoderConfigError(f"{src}: resblock must be '1' or '2', got {self.resblock!r}")
        if not rates or len(rates) != len(kernels):
            raise VocoderConfigError(
                f"{src}: upsample_rates {list(rates)} and upsample_kernel_sizes {list(kernels)} "
                "must be non-empty and of equal length")
        if not self.resblock_kernel_sizes or len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise VocoderConfigError(
                f"{src}: resblock_kernel_sizes {list(self.resblock_kernel_sizes)} and "
                f"resblock_dilation_sizes {[list(d) for d in self.resblock_dilation_sizes]} must be "
                "non-empty and of equal length")
        if math.prod(rates) != self.hop_size:
            raise VocoderConfigError(
                f"{src}: the product of upsample_rates {list(rates)} is {math.prod(rates)}, but hop_size "
                f"is {self.hop_size}")
        for i, (u, k) in enumerate(zip(rates, kernels)):
            if u < 1 or k < u or (k - u) % 2:
                raise VocoderConfigError(
                    f"{src}: upsample_kernel_sizes[{i}]={k} with upsample_rates[{i}]={u}: the kernel must "
                    "be ≥ the rate and differ from it by an even number, or the stage does not "
                    "upsample exactly")
            s = self.source_stride(i)
            if i + 1 < len(rates) and s % 2:
                raise VocoderConfigError(
                    f"{src}: noise_convs.{i} would have stride {s} (product of upsample_rates[{i + 1}:]); "
                    "an odd stride does not line up with the upsampled signal")
        if self.upsample_initial_channel % 2 ** len(rates):
            raise VocoderConfigError(
                f"{src}: upsample_initial_channel={self.upsample_initial_channel} cannot be halved "
                f"{len(rates)} times")
        need = 3 if self.resblock == "1" else 2
        for j, (k, ds) in enumerate(zip(self.resblock_kernel_sizes, self.resblock_dilation_sizes)):
            if k % 2 == 0 or k < 1:
                raise VocoderConfigError(f"{src}: resblock_kernel_sizes[{j}]={k} must be odd")
            if len(ds) < need:
                raise VocoderConfigError(
                    f"{src}: resblock_dilation_sizes[{j}]={list(ds)}: resblock '{self.resblock}' needs "
                    f"{need} dilations")


def _same_padding(kernel_size: int, dilation: int = 1) -> int:
    return dilation * (kernel_size - 1) // 2


def _pads(conv: nn.Conv1d, causal: bool) -> tuple[int, int]:
    """(left, right) zero padding of a stride-1 conv: symmetric ('same'), or all on the left."""
    total = conv.dilation[0] * (conv.kernel_size[0] - 1)
    return split_right(total, 0) if causal else (total // 2, total // 2)


class ResBlock1(nn.Module):
    """Three (LReLU → dilated conv → LReLU → conv) residual units; [B, C, L] -> [B, C, L].

    `units` lists, per unit, its convolutions with their (left, right) padding."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...], causal: bool = False) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=_same_padding(kernel_size, d))
            for d in dilations)
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, padding=_same_padding(kernel_size))
            for _ in dilations)
        self.units = [[(c, _pads(c, causal)) for c in pair] for pair in zip(self.convs1, self.convs2)]

    @property
    def radius(self) -> tuple[int, int]:
        """(left, right) samples of context."""
        return (sum(p[0] for unit in self.units for _, p in unit), sum(p[1] for unit in self.units for _, p in unit))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for unit in self.units:
            y = x
            for conv, pads in unit:
                y = pad_conv1d(conv, F.leaky_relu(y, LRELU_SLOPE), pads)
            x = x + y
        return x


class ResBlock2(ResBlock1):
    """Two (LReLU → dilated conv) residual units; [B, C, L] -> [B, C, L]."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...], causal: bool = False) -> None:
        nn.Module.__init__(self)
        self.convs = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=_same_padding(kernel_size, d))
            for d in dilations)
        self.units = [[(c, _pads(c, causal))] for c in self.convs]


def _is_weight_normed(key: str) -> bool:
    """Whether the official code wraps this parameter's conv in weight norm (all but the source branch)."""
    return key.endswith(".weight") and not key.startswith(("noise_convs.", "m_source."))


def fold_weight_norm(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Replace weight-norm pairs by plain weights: w = g · v / ‖v‖ (norm over all dims but 0, as
    `torch.nn.utils.weight_norm(module)` with its default dim=0 for Conv1d and ConvTranspose1d).

    Accepts the old `X.weight_g`/`X.weight_v` names and the parametrization names
    `X.parametrizations.weight.original0/1`. Returns (state with `X.weight`, {new key: checkpoint key}).
    """
    pairs = {".weight_g": ".weight_v", ".parametrizations.weight.original0": ".parametrizations.weight.original1"}
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for key, value in state.items():
        for g_suffix, v_suffix in pairs.items():
            if key.endswith(g_suffix) or key.endswith(v_suffix):
                suffix = g_suffix if key.endswith(g_suffix) else v_suffix
                base = key[: -len(suffix)]
                g_key, v_key = base + g_suffix, base + v_suffix
                if g_key not in state or v_key not in state:
                    raise VocoderConfigError(f"weight-norm pair incomplete: {g_key!r} / {v_key!r}")
                if key == g_key:
                    g, v = state[g_key].float(), state[v_key].float()
                    norm = torch.linalg.vector_norm(v, dim=tuple(range(1, v.dim())), keepdim=True)
                    out[base + ".weight"] = v * (g / norm)
                    origin[base + ".weight"] = v_key
                break
        else:
            out[key] = value.float() if value.is_floating_point() else value
            origin[key] = key
    return out, origin


class Vocoder(nn.Module, abc.ABC):
    """The call interface of every vocoder (`NSFHiFiGAN`, `models.hn_vocoder.HarmonicNoiseVocoder`):

    forward(mel [B, T, num_mels] log10, f0 [B, T] Hz, phase [B, H+1] | None, noise [B, T·hop, H+1] | None)
      -> wav [B, T·hop]
    forward_stream(mel, f0, phase, noise) -> (wav [B, T·hop], phase_out [B, H+1])
    plus `sample_rate`, `hop_size`, `num_mels`, `n_harmonics` (H+1), `receptive_field`, `check_audio`,
    `describe`, `stateful`; the voice pack's vocoder graphs are built from these alone."""

    sample_rate: int
    hop_size: int
    num_mels: int
    n_harmonics: int

    def forward(self, mel: torch.Tensor, f0: torch.Tensor, phase: torch.Tensor | None = None,
                noise: torch.Tensor | None = None) -> torch.Tensor:
        """mel [B, T, 80] log10, f0 [B, T] Hz, phase [B, H+1] cycles (default 0), noise [B, T·hop, H+1]
        (default 0) -> wav [B, T·hop]."""
        if phase is None:
            phase = mel.new_zeros(mel.shape[0], self.n_harmonics)
        if noise is None:
            noise = mel.new_zeros(mel.shape[0], mel.shape[1] * self.hop_size, self.n_harmonics)
        return self.forward_stream(mel, f0, phase, noise)[0]

    @abc.abstractmethod
    def forward_stream(self, mel: torch.Tensor, f0: torch.Tensor, phase: torch.Tensor,
                       noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(wav [B, T·hop], phase_out [B, H+1]) with every input explicit; each vocoder's own synthesis."""

    @abc.abstractmethod
    def stateful(self) -> nn.Module:
        """This vocoder on chunks of new frames with cached state (exporters/stateful.py exports it)."""

    def check_inputs(self, mel: torch.Tensor, f0: torch.Tensor, phase: torch.Tensor, noise: torch.Tensor) -> None:
        """ValueError unless mel [B, T, mels], f0 [B, T], phase [B, H+1], noise [B, T·hop, H+1] fit."""
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return  # shapes are symbolic while exporting
        if mel.dim() != 3 or mel.shape[2] != self.num_mels:
            raise ValueError(f"vocoder: mel must be [B, T, {self.num_mels}], got {tuple(mel.shape)}")
        b, t = mel.shape[:2]
        if t < 1:
            raise ValueError("vocoder: mel has no frames")
        expected = {"f0": (f0, (b, t)), "phase": (phase, (b, self.n_harmonics)),
                    "noise": (noise, (b, t * self.hop_size, self.n_harmonics))}
        for name, (tensor, shape) in expected.items():
            if tuple(tensor.shape) != shape:
                raise ValueError(f"vocoder: {name} must have shape {list(shape)} for mel {tuple(mel.shape)}, "
                                 f"got {list(tensor.shape)}")


class NSFHiFiGAN(Vocoder):
    """NSF-HiFiGAN generator with weight norm folded; state-dict names as the official code.

    forward(mel [B, T, 80] log10, f0 [B, T] Hz, phase [B, H+1] | None, noise [B, T·hop, H+1] | None)
      -> wav [B, T·hop]
    forward_stream(mel, f0, phase, noise) -> (wav [B, T·hop], phase_out [B, H+1])

    `phase`: each harmonic's phase in cycles before the first sample (default 0; the official code
    uses 0 for the fundamental and uniform random for the others). `noise`: standard normal, scaled
    inside as the official source (default 0). `phase_out` is the phase after the last sample, so
    consecutive calls continue the sines; see `receptive_field` for the mel context a chunk needs.
    """

    def __init__(self, config: VocoderConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.layout = config.layout
        self.sample_rate = config.sample_rate
        self.hop_size = config.hop_size
        self.num_mels = config.mel_in
        self.n_harmonics = HARMONIC_NUM + 1
        # openvpi vocoders take ln-mels; ours are log10
        self.mel_scale = math.log(10.0) if config.layout == "openvpi" else 1.0
        self.norm_source = config.layout == "m4singer"

        self.m_source = HarmonicSource(config.sample_rate, config.hop_size, harmonic_num=HARMONIC_NUM)
        c0 = config.upsample_initial_channel
        causal = config.right_context is not None
        self.conv_pre = nn.Conv1d(config.mel_in, c0, 7, padding=3)
        self.pre_pads = split_right(6, config.right_context) if causal else (3, 3)
        self.ups = nn.ModuleList()
        self.up_crops: list[tuple[int, int]] = []
        self.noise_convs = nn.ModuleList()
        self.noise_pads: list[tuple[int, int]] = []
        self.resblocks = nn.ModuleList()
        block = ResBlock1 if config.resblock == "1" else ResBlock2
        for i, (u, k) in enumerate(zip(config.upsample_rates, config.upsample_kernel_sizes)):
            ch = config.stage_channels(i)
            self.ups.append(nn.ConvTranspose1d(2 * ch, ch, k, u, padding=(k - u) // 2))
            self.up_crops.append(split_right(k - u, k - u) if causal else ((k - u) // 2, (k - u) // 2))
            s = config.source_stride(i)
            if i + 1 < len(config.upsample_rates):
                self.noise_convs.append(nn.Conv1d(1, ch, 2 * s, stride=s, padding=s // 2))
                # causal: output m sees excitation [m·s − s, m·s + s), i.e. no later frame
                self.noise_pads.append((s, 0) if causal else (s // 2, s // 2))
            else:
                self.noise_convs.append(nn.Conv1d(1, ch, 1))
                self.noise_pads.append((0, 0))
            for j, rk in enumerate(config.resblock_kernel_sizes):
                self.resblocks.append(block(ch, rk, config.dilations(j), causal))
        self.conv_post = nn.Conv1d(config.stage_channels(len(config.upsample_rates) - 1), 1, 7, padding=3)
        self.post_pads = split_right(6, 0) if causal else (3, 3)

    # ------------------------------------------------------------------ inference
    def forward_stream(self, mel: torch.Tensor, f0: torch.Tensor, phase: torch.Tensor,
                       noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Same as `forward`, all inputs explicit, also returning phase_out [B, H+1] (cycles, [0, 1))."""
        self.check_inputs(mel, f0, phase, noise)
        excitation, phase_out = self.m_source(f0, phase, noise)  # [B, 1, T·hop]
        x = mel.transpose(1, 2)
        if self.mel_scale != 1.0:
            x = x * self.mel_scale
        x = pad_conv1d(self.conv_pre, x, self.pre_pads)
        k = self.config.n_resblocks
        for i, (up, noise_conv) in enumerate(zip(self.ups, self.noise_convs)):
            x = crop_conv_transpose1d(up, F.leaky_relu(x, LRELU_SLOPE), self.up_crops[i])
            x = x + self.source_features(i, pad_conv1d(noise_conv, excitation, self.noise_pads[i]))
            out = self.resblocks[i * k](x)
            for block in self.resblocks[i * k + 1:(i + 1) * k]:
                out = out + block(x)
            x = out / k
        x = pad_conv1d(self.conv_post, F.leaky_relu(x, FINAL_LRELU_SLOPE), self.post_pads)
        return torch.tanh(x)[:, 0], phase_out

    def source_features(self, stage: int, src: torch.Tensor) -> torch.Tensor:
        """The source branch after noise_convs[stage] [B, C, L]: ReLU + LayerNorm over channels (m4singer)."""
        if self.norm_source:
            channels = self.noise_convs[stage].out_channels
            src = F.layer_norm(F.relu(src).transpose(1, 2), (channels,)).transpose(1, 2)
        return src

    # ------------------------------------------------------------------ geometry
    @property
    def receptive_field(self) -> tuple[int, int]:
        """(left, right) mel/f0 frames that output frame t (samples [hop·t, hop·t + hop)) depends on
        besides frame t, given the carried `phase` at the chunk start (f0 before the chunk acts only
        through that phase). Derived from the layers: conv_pre k7, each transposed conv, the residual
        blocks' dilations, the source branch's noise_convs, conv_post k7.

        A chunk run on [left ctx + frames + right ctx] with contexts ≥ these values reproduces the
        whole-signal output on its middle frames."""
        c = self.config
        hop = c.hop_size
        lo, hi = -self.post_pads[0], hop - 1 + self.post_pads[1]  # output samples of frame 0, through conv_post
        f0_lo, f0_hi = 0, 0
        for i in reversed(range(len(c.upsample_rates))):
            blocks = self.resblocks[i * c.n_resblocks:(i + 1) * c.n_resblocks]
            lo = lo - max(block.radius[0] for block in blocks)  # indices of stage i's output that are needed
            hi = hi + max(block.radius[1] for block in blocks)
            s = c.source_stride(i)
            if i + 1 < len(c.upsample_rates):         # noise_convs: kernel 2s, stride s
                pad = self.noise_pads[i][0]
                a, b = lo * s - pad, hi * s - pad + 2 * s - 1
            else:                                     # last stage: kernel 1
                a, b = lo, hi
            f0_lo, f0_hi = min(f0_lo, a // hop), max(f0_hi, b // hop)
            u, k = c.upsample_rates[i], c.upsample_kernel_sizes[i]
            p = self.up_crops[i][0]                   # y[n] = Σ x[m] w[n + p - m·u], 0 ≤ n + p - m·u < k
            lo, hi = -((-(lo + p - k + 1)) // u), (hi + p) // u
        lo, hi = lo - self.pre_pads[0], hi + self.pre_pads[1]  # conv_pre
        return -min(lo, f0_lo), max(hi, f0_hi)

    def describe(self) -> dict[str, Any]:
        """What the voice pack's manifest records about this network."""
        return {"layout": self.layout}

    def stateful(self) -> StatefulVocoder:
        return StatefulVocoder(self)

    def check_audio(self, sample_rate: int = MODEL_AUDIO[0], hop: int = MODEL_AUDIO[1],
                    n_mels: int = MODEL_AUDIO[2]) -> None:
        """Raise VocoderConfigError unless the vocoder runs at (sample_rate, hop, n_mels); warn when
        its mel filterbank (n_fft, win, fmin, fmax) differs from ours (it runs, quality may suffer)."""
        check_config_audio(self.config, sample_rate, hop, n_mels)

    # ------------------------------------------------------------------ checkpoints
    def load_checkpoint_state(self, state: Mapping[str, torch.Tensor], source: str = "<checkpoint>") -> None:
        """Load an official generator state dict (weight norm folded here), strictly.

        Raises VocoderConfigError naming the tensor, the expected and found shapes and the config
        key that implies them when the config does not describe the checkpoint, and listing missing /
        unexpected keys."""
        folded, origin = fold_weight_norm(state)
        c = self.config
        n_ups = 1 + max((int(k.split(".")[1]) for k in folded if k.startswith("ups.")), default=-1)
        if n_ups != len(c.upsample_rates):
            raise VocoderConfigError(
                f"{source} has {n_ups} upsampling stages (ups.*), but upsample_rates in {c.source} has "
                f"{len(c.upsample_rates)} entries {list(c.upsample_rates)}")
        ck_block = "1" if any(".convs1." in k for k in folded) else "2" if any(
            k.startswith("resblocks.") for k in folded) else None
        if ck_block is not None and ck_block != c.resblock:
            raise VocoderConfigError(
                f"{source} holds resblock '{ck_block}' weights, but {c.source} says resblock "
                f"{c.resblock!r}")
        own = self.state_dict()
        for key, tensor in own.items():
            if key in folded and tuple(folded[key].shape) != tuple(tensor.shape):
                raise VocoderConfigError(
                    f"{source}: '{origin[key]}' has shape {list(folded[key].shape)}, but {c.source} implies "
                    f"{list(tensor.shape)} ({self._shape_reason(key)})")
        missing = sorted(set(own) - set(folded))
        unexpected = sorted(set(folded) - set(own))
        if missing or unexpected:
            raise VocoderConfigError(
                f"{source} does not match the {c.layout} generator built from {c.source}: "
                f"missing {missing[:8]}{' …' if len(missing) > 8 else ''}, unexpected "
                f"{[origin[k] for k in unexpected[:8]]}{' …' if len(unexpected) > 8 else ''}")
        self.load_state_dict(folded, strict=True)

    def _shape_reason(self, key: str) -> str:
        """Which config values determine the shape of parameter `key` (for error messages)."""
        c = self.config
        parts = key.split(".")
        if parts[0] == "conv_pre":
            bins = "80 (fixed in the M4Singer code)" if c.layout == "m4singer" else f"num_mels={c.num_mels}"
            return f"[upsample_initial_channel={c.upsample_initial_channel}, mel bins {bins}, kernel 7]"
        if parts[0] == "ups":
            i = int(parts[1])
            return (f"[upsample_initial_channel/2^{i}, upsample_initial_channel/2^{i + 1}, "
                    f"upsample_kernel_sizes[{i}]={c.upsample_kernel_sizes[i]}]")
        if parts[0] == "noise_convs":
            i = int(parts[1])
            if i + 1 < len(c.upsample_rates):
                return (f"kernel 2·prod(upsample_rates[{i + 1}:]) = {2 * c.source_stride(i)} from "
                        f"upsample_rates={list(c.upsample_rates)}")
            return "last stage: kernel 1"
        if parts[0] == "resblocks":
            stage, j = divmod(int(parts[1]), c.n_resblocks)
            return (f"stage {stage} has {c.stage_channels(stage)} channels, "
                    f"resblock_kernel_sizes[{j}]={c.resblock_kernel_sizes[j]}")
        if parts[0] == "conv_post":
            return f"[1, channels of the last stage, 7] from upsample_initial_channel={c.upsample_initial_channel}"
        return f"harmonic_num {HARMONIC_NUM} (fixed in the official code)"


def check_config_audio(config: VocoderConfig, sample_rate: int = MODEL_AUDIO[0], hop: int = MODEL_AUDIO[1],
                       n_mels: int = MODEL_AUDIO[2]) -> None:
    """See `NSFHiFiGAN.check_audio`."""
    keys = _AUDIO_KEYS[config.layout]
    wrong = [f"{keys[field]}={getattr(config, field)} (need {want})"
             for field, want in (("sample_rate", sample_rate), ("hop_size", hop), ("num_mels", n_mels))
             if getattr(config, field) != want]
    if config.mel_in != n_mels and config.num_mels == n_mels:
        wrong.append(f"conv_pre takes {config.mel_in} mel bins (need {n_mels})")
    if wrong:
        raise VocoderConfigError(
            f"{config.source}: this vocoder does not fit the acoustic model's audio "
            f"({sample_rate} Hz, hop {hop}, {n_mels} mel bins): " + ", ".join(wrong))
    got = (config.n_fft, config.win_size, config.fmin, config.fmax)
    if tuple(float(v) for v in got) != tuple(float(v) for v in MODEL_MEL):
        names = [keys[f] for f in ("n_fft", "win_size", "fmin", "fmax")]
        warnings.warn(
            f"{config.source}: vocoder mel settings {dict(zip(names, got))} differ from the acoustic "
            f"model's {dict(zip(names, MODEL_MEL))}; it will run but may sound worse", stacklevel=3)


def to_checkpoint_state(model: NSFHiFiGAN) -> dict[str, torch.Tensor]:
    """The generator state in the official layout: weight-normed convs as `weight_g` (‖w‖ over all
    dims but 0) and `weight_v` (= w), as `torch.nn.utils.weight_norm` stores them; the source branch
    plain. `fold_weight_norm` inverts it."""
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        value = value.detach().clone()
        if _is_weight_normed(key):
            base = key[: -len(".weight")]
            out[base + ".weight_g"] = torch.linalg.vector_norm(
                value, dim=tuple(range(1, value.dim())), keepdim=True)
            out[base + ".weight_v"] = value
        else:
            out[key] = value
    return out


def _read_config(path: Path) -> Mapping[str, Any]:
    if not path.is_file():
        raise VocoderConfigError(f"vocoder config not found: {path} (pass config_path= to point at it)")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise VocoderConfigError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'} "
                                 f"({exc})") from exc
    if not isinstance(data, Mapping):
        raise VocoderConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return data


def detect_layout(checkpoint: Any, source: str = "<checkpoint>") -> tuple[str, Mapping[str, torch.Tensor]]:
    """-> (layout, generator state dict) of a loaded vocoder checkpoint."""
    if isinstance(checkpoint, Mapping):
        inner = checkpoint.get("state_dict")
        if isinstance(inner, Mapping) and isinstance(inner.get("model_gen"), Mapping):
            return "m4singer", inner["model_gen"]
        if isinstance(checkpoint.get("generator"), Mapping):
            return "openvpi", checkpoint["generator"]
        keys = sorted(map(str, checkpoint))[:10]
    else:
        keys = [type(checkpoint).__name__]
    raise CheckpointError(
        f"{source}: not a vocoder checkpoint — expected {{'state_dict': {{'model_gen': …}}}} "
        f"(M4Singer/DiffSinger NSF-HiFiGAN), {{'generator': …}} (openvpi/so-vits-svc NSF-HiFiGAN) or "
        f"{{'hn_vocoder': …}} (this project's harmonic-plus-noise vocoder); found {keys}")


def load_vocoder(path: str | os.PathLike, config_path: str | os.PathLike | None = None, *,
                 check_audio: bool = True) -> Vocoder:
    """Load a vocoder checkpoint in eval mode: NSF-HiFiGAN of either layout, or a harmonic-plus-noise
    vocoder (`models.hn_vocoder`), detected from its contents.

    config_path (NSF-HiFiGAN only; a harmonic-plus-noise checkpoint holds its config) defaults to
    `config.yaml` (m4singer) / `config.json` (openvpi) beside the checkpoint. With check_audio
    (default) the vocoder must run at 24000 Hz, hop 128, 80 mel bins (the CoMoSVC acoustic model's
    output), else VocoderConfigError.
    """
    from models.hn_vocoder import from_checkpoint, is_hn_checkpoint  # it builds on this module

    path = Path(path)
    checkpoint = safe_load(path)
    if is_hn_checkpoint(checkpoint):
        if config_path is not None:
            raise VocoderConfigError(f"{path} is a harmonic-plus-noise vocoder, which carries its own config; "
                                     f"do not pass a config file ({config_path})")
        hn = from_checkpoint(checkpoint, str(path))
        if check_audio:
            hn.check_audio()
        return hn
    layout, state = detect_layout(checkpoint, str(path))
    cfg_path = Path(config_path) if config_path is not None else path.with_name(_CONFIG_FILE[layout])
    config = VocoderConfig.from_dict(layout, _read_config(cfg_path), source=str(cfg_path))
    if check_audio:
        check_config_audio(config)
    model = NSFHiFiGAN(config)
    model.load_checkpoint_state(state, source=str(path))
    return model.eval()


def seeded_source_noise(vocoder: Vocoder, frames: int, seed: int = 0,
                        device: torch.device | str = "cpu") -> torch.Tensor:
    """Standard normal source noise [1, frames·hop, H+1] for `vocoder`, as the engine feeds it (the
    default of `forward` is zeros, which silences the harmonic-plus-noise vocoder's noise part), from
    a CPU generator seeded `seed`, so every device gets the same."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, frames * vocoder.hop_size, vocoder.n_harmonics, generator=generator).to(device)


class StreamingVocoder(nn.Module):
    """ONNX view of a `Vocoder`'s `forward_stream` with the voice-pack names (docs/architecture.md):
    inputs mel [1, T, 80], f0 [1, T], phase [1, H+1], noise [1, T·hop, H+1];
    outputs audio [1, T·hop], phase_out [1, H+1]."""

    input_names = ("mel", "f0", "phase", "noise")
    output_names = ("audio", "phase_out")
    dynamic_axes = {"mel": {1: "frames"}, "f0": {1: "frames"}, "noise": {1: "samples"},
                    "audio": {1: "samples"}}

    def __init__(self, vocoder: Vocoder) -> None:
        super().__init__()
        self.vocoder = vocoder

    def example_inputs(self, frames: int = 16) -> tuple[torch.Tensor, ...]:
        """Inputs of `frames` frames for tracing (a plausible mel level and f0)."""
        v = self.vocoder
        return (torch.full((1, frames, v.num_mels), -4.0), torch.full((1, frames), 220.0),
                torch.zeros(1, v.n_harmonics), torch.zeros(1, frames * v.hop_size, v.n_harmonics))

    def forward(self, mel: torch.Tensor, f0: torch.Tensor, phase: torch.Tensor,
                noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.vocoder.forward_stream(mel, f0, phase, noise)


class _StreamingResBlock(nn.Module):
    """A `ResBlock1`/`ResBlock2` on chunks: each unit's convolutions cached, its residual delayed."""

    def __init__(self, block: ResBlock1, stream: Stream, name: str) -> None:
        super().__init__()
        self.convs = nn.ModuleList()
        self.residuals = nn.ModuleList()
        for u, unit in enumerate(block.units):
            chain = nn.ModuleList()
            start = stream
            for c, (conv, pads) in enumerate(unit):
                chain.append(CachedConv1d(conv, pads, stream, f"{name}_unit{u}_conv{c}"))
                stream = chain[-1].stream_out
            self.convs.append(chain)
            self.residuals.append(DelayLine(unit[0][0].in_channels, stream.delay - start.delay, f"{name}_unit{u}_res"))
        self.stream_out = stream

    def forward(self, x: torch.Tensor, ctx: StreamContext) -> torch.Tensor:
        for chain, residual in zip(self.convs, self.residuals):
            y = x
            for conv in chain:
                y = conv(F.leaky_relu(y, LRELU_SLOPE), ctx)
            x = residual(x, ctx) + y
        return x


class StatefulVocoder(nn.Module):
    """`NSFHiFiGAN` on chunks of new frames with cached state (exported as vocoder_stateful.onnx).

    forward(mel [1,n,80], f0 [1,n], noise [1,n·hop,H+1], position [1] int64, *states)
      -> (audio [1, n·hop], position + n, *new states)
    The audio of a call is the whole-sequence output (phase 0 at frame 0) at samples
    hop·position − delay …; `delay` is the intrinsic delay in samples. The harmonic phase is the state
    `vocoder_phase`, so the sines continue exactly; the source noise of a sample must be the one the
    whole-sequence vocoder would get there."""

    def __init__(self, vocoder: NSFHiFiGAN) -> None:
        super().__init__()
        v, c = vocoder, vocoder.config
        self.vocoder = v
        self.pre = CachedConv1d(v.conv_pre, v.pre_pads, Stream(1, 0), "vocoder_pre")
        stream, excitation = self.pre.stream_out, Stream(c.hop_size, 0)
        self.ups, self.sources, self.up_align, self.source_align = (nn.ModuleList() for _ in range(4))
        self.blocks, self.block_align = nn.ModuleList(), nn.ModuleList()
        for i in range(len(c.upsample_rates)):
            ch = c.stage_channels(i)
            up = CachedConvTranspose1d(v.ups[i], v.up_crops[i], stream, f"vocoder_up{i}")
            source = CachedConv1d(v.noise_convs[i], v.noise_pads[i], excitation, f"vocoder_source{i}")
            delay = align([up.stream_out, source.stream_out])
            self.ups.append(up)
            self.sources.append(source)
            self.up_align.append(DelayLine(ch, delay - up.stream_out.delay, f"vocoder_up{i}_align"))
            self.source_align.append(DelayLine(ch, delay - source.stream_out.delay, f"vocoder_source{i}_align"))
            stream = Stream(up.stream_out.rate, delay)
            blocks = nn.ModuleList(_StreamingResBlock(b, stream, f"vocoder_stage{i}_block{j}")
                                   for j, b in enumerate(v.resblocks[i * c.n_resblocks:(i + 1) * c.n_resblocks]))
            delay = align([b.stream_out for b in blocks])
            self.blocks.append(blocks)
            self.block_align.append(nn.ModuleList(
                DelayLine(ch, delay - b.stream_out.delay, f"vocoder_stage{i}_block{j}_align")
                for j, b in enumerate(blocks)))
            stream = Stream(stream.rate, delay)
        self.post = CachedConv1d(v.conv_post, v.post_pads, stream, "vocoder_post")
        self.delay = self.post.stream_out.delay
        self.state_specs = [StateSpec("vocoder_phase", (v.n_harmonics,)), *collect_states(self)]

    def forward(self, mel: torch.Tensor, f0: torch.Tensor, noise: torch.Tensor, position: torch.Tensor,
                *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        v = self.vocoder
        ctx = StreamContext(position, {spec.name: s for spec, s in zip(self.state_specs, states)})
        excitation, phase = v.m_source(f0, ctx.take("vocoder_phase"), noise)
        ctx.put("vocoder_phase", phase)
        x = mel.transpose(1, 2)
        if v.mel_scale != 1.0:
            x = x * v.mel_scale
        x = self.pre(x, ctx)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE), ctx)
            src = v.source_features(i, self.sources[i](excitation, ctx))
            x = self.up_align[i](x, ctx) + self.source_align[i](src, ctx)
            out = None
            for block, late in zip(self.blocks[i], self.block_align[i]):
                y = late(block(x, ctx), ctx)
                out = y if out is None else out + y
            x = out / len(self.blocks[i])
        x = self.post(F.leaky_relu(x, FINAL_LRELU_SLOPE), ctx)
        return (torch.tanh(x)[:, 0], position + mel.shape[1], *ctx.outputs(self.state_specs))


__all__ = ["LAYOUTS", "MODEL_AUDIO", "NSFHiFiGAN", "StatefulVocoder", "StreamingVocoder", "Vocoder", "VocoderConfig",
           "VocoderConfigError", "check_config_audio", "detect_layout", "fold_weight_norm", "load_vocoder",
           "seeded_source_noise", "to_checkpoint_state"]
