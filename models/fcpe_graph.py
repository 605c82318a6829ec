"""FCPE (torchfcpe's bundled `fcpe_c_v001`) as one exportable PyTorch module, and its receptive field.

`FcpeGraph`: `audio [1, N]` (16 kHz) -> `f0 [1, N // 160 + 1]` Hz, 0 where unvoiced: torchfcpe's
mel front end with the STFT as a strided Conv1d (`DftMel`, because `torch.stft` returns complex
values, which the TorchScript ONNX exporter refuses), its network with weight norm folded, and its
`local_argmax` decoder followed by `models.pitch.FcpePitch`'s clamp. `exporters.fcpe` turns it into
`pitch.onnx` and checks it against torchfcpe.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from models.pitch import F0_MAX, F0_MIN, FCPE_THRESHOLD

LOCAL_ARGMAX_WIDTH = 9  # torchfcpe's local argmax averages the 9 bins around the peak


class DftMel(nn.Module):
    """torchfcpe's `Wav2MelModule` (16 kHz in, keyshift 0) with the STFT as a Conv1d.

    `audio [B, N] -> log mel [B, N // hop + 1, n_mels]` (natural log, clamped at `clip`).
    Same reflect padding `((win - hop) // 2, (win - hop + 1) // 2)`, periodic Hann window, no
    centring, magnitude `sqrt(re^2 + im^2 + 1e-9)`, and the duplicated last frame.
    Needs `N > (win - hop) // 2` (reflect padding); torchfcpe switches to zero padding below that.
    """

    def __init__(self, mel_basis: torch.Tensor, n_fft: int, win_size: int, hop: int, clip: float) -> None:
        super().__init__()
        if win_size > n_fft:
            raise ValueError(f"win_size {win_size} > n_fft {n_fft}")
        bins = n_fft // 2 + 1
        if mel_basis.shape[-1] != bins:
            raise ValueError(f"mel basis has {mel_basis.shape[-1]} bins, n_fft {n_fft} needs {bins}")
        # torch.stft centres a shorter window inside the n_fft frame
        window = torch.zeros(n_fft, dtype=torch.float64)
        offset = (n_fft - win_size) // 2
        window[offset:offset + win_size] = torch.hann_window(win_size, periodic=True, dtype=torch.float64)
        n = torch.arange(n_fft, dtype=torch.int64)
        k = torch.arange(bins, dtype=torch.int64)
        # exact integer phase k*n mod n_fft keeps the float64 basis accurate for high bins
        phase = 2.0 * math.pi * ((k[:, None] * n[None, :]) % n_fft).to(torch.float64) / n_fft
        basis = torch.cat([torch.cos(phase) * window, -torch.sin(phase) * window])  # [2·bins, n_fft]
        self.register_buffer("basis", basis.float()[:, None, :], persistent=False)
        self.register_buffer("mel_basis", mel_basis.detach().float().clone(), persistent=False)
        self.bins = bins
        self.hop = hop
        self.pad = ((win_size - hop) // 2, (win_size - hop + 1) // 2)
        self.clip = clip

    @classmethod
    def from_torchfcpe(cls, wav2mel: nn.Module) -> "DftMel":
        """Build from torchfcpe's `Wav2MelModule` (its mel basis and STFT settings)."""
        ext = wav2mel.mel_extractor
        if getattr(ext, "out_stft", False):
            raise ValueError("this FCPE model uses linear STFT features (mel.type 'stft'), not a mel")
        return cls(ext.mel_basis, ext.n_fft, ext.win_size, ext.hop_length, ext.clip_val)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(audio[:, None, :], self.pad, mode="reflect")  # [B, 1, N + 864]
        spec = nn.functional.conv1d(x, self.basis, stride=self.hop)  # [B, 2·bins, N // hop]
        re, im = spec[:, :self.bins], spec[:, self.bins:]
        magnitude = torch.sqrt(re * re + im * im + 1e-9)
        mel = torch.log(torch.clamp(torch.matmul(self.mel_basis, magnitude), min=self.clip))
        mel = mel.transpose(1, 2)  # [B, T, n_mels]
        return torch.cat([mel, mel[:, -1:]], dim=1)  # torchfcpe pads to N // hop + 1 frames


def _plain_copy(infer_module: nn.Module) -> nn.Module:
    """A fresh `CFNaiveMelPE` with `infer_module.model`'s weights and weight norm folded into plain
    weights. (Not a deepcopy: a parametrized module's class is shared by its copies, and removing
    the parametrization from one would break the other.)"""
    from torch.nn.utils import parametrize
    from torchfcpe.models_infer import spawn_model
    from torchfcpe.tools import DotDict

    model = spawn_model(DotDict(infer_module.args_dict))
    model.load_state_dict(infer_module.model.state_dict())
    model.eval()
    for module in model.modules():
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    return model


class FcpeGraph(nn.Module):
    """`audio [1, N]` (16 kHz) -> `f0 [1, N // 160 + 1]` Hz, 0 where unvoiced.

    torchfcpe's `local_argmax` decoder (`CFNaiveMelPE.latent2cents_local_decoder` + `cent_to_f0`)
    written without in-place masking, then `FcpePitch`'s clamp.
    """

    def __init__(self, infer_module: nn.Module, threshold: float = FCPE_THRESHOLD,
                 f0_min: float = F0_MIN, f0_max: float = F0_MAX) -> None:
        super().__init__()
        self.mel = DftMel.from_torchfcpe(infer_module.wav2mel)
        self.model = _plain_copy(infer_module)
        self.register_buffer("cent_table", self.model.cent_table.detach().clone(), persistent=False)
        self.register_buffer("offsets", torch.arange(LOCAL_ARGMAX_WIDTH) - LOCAL_ARGMAX_WIDTH // 2,
                             persistent=False)
        self.threshold = float(threshold)
        self.f0_min = float(f0_min)
        self.f0_max = float(f0_max)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """latent [B, T, bins] -> f0 [B, T] Hz (0 where unvoiced)."""
        confident, peak = torch.max(latent, dim=-1, keepdim=True)  # [B, T, 1]
        index = torch.clamp(peak + self.offsets, 0, latent.shape[-1] - 1)  # [B, T, 9], edge bins repeat
        y = torch.gather(latent, -1, index)
        cents = torch.sum(self.cent_table[index] * y, dim=-1) / torch.sum(y, dim=-1)
        f0 = 10.0 * torch.pow(2.0, cents / 1200.0)
        voiced = (confident[..., 0] > self.threshold) & (f0 >= self.f0_min)
        return torch.where(voiced, torch.clamp(f0, max=self.f0_max), torch.zeros_like(f0))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.decode(self.model(self.mel(audio)))


def conv_receptive_field(model: nn.Module) -> tuple[int, int]:
    """(left, right) mel frames reached by the stacked time convolutions of `CFNaiveMelPE`.

    Every Conv1d there has stride 1 and sits on the main path in sequence (the residual branches
    only add reach, never more than their own convs), so the reaches add up.
    """
    left = right = 0
    for module in model.modules():
        if isinstance(module, nn.Conv1d):
            if module.stride[0] != 1:
                raise ValueError(f"unexpected strided conv {module}")
            reach = module.dilation[0] * (module.kernel_size[0] - 1)
            pad = module.padding[0]
            if not isinstance(pad, int):
                raise ValueError(f"unexpected padding mode {module.padding!r}")
            left += pad
            right += reach - pad
    return left, right


def global_time_ops(model: nn.Module) -> list[str]:
    """Names of layers that mix information over the whole time axis (why a receptive field is None)."""
    found = []
    for name, module in model.named_modules():
        kind = type(module).__name__
        if isinstance(module, (nn.GroupNorm, nn.InstanceNorm1d)):
            found.append(f"{name} ({kind}: statistics over all frames)")
        elif kind == "SelfAttention" and getattr(module, "global_heads", 0) > 0:
            found.append(f"{name} (global attention, {module.global_heads} heads)")
        elif kind == "LocalAttention":  # bounded, but not handled here: refuse to guess
            found.append(f"{name} (local attention, window {getattr(module, 'window_size', '?')})")
    return found


def fcpe_receptive_field(model: nn.Module) -> tuple[int, int] | None:
    """(left, right) FCPE frames an f0 frame depends on, or None when unbounded (any global op)."""
    return None if global_time_ops(model) else conv_receptive_field(model)
