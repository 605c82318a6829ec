"""CoMoSVC acoustic model (conditioner + EDM/consistency decoder) and the official checkpoint loader.

State-dict keys are exactly the official inference keys: `unit_embed.*`, `f0_embed.*`,
`volume_embed.*`, `aug_shift_embed.weight`, `spk_embed.weight` (n_spk > 1) and
`decoder.denoise_fn.*`. Official checkpoints also carry `decoder.pe.*` (an unused pitch extractor)
and, for students, `decoder.denoise_fn_ema.*` / `decoder.denoise_fn_pretrained.*` (EMA target and
frozen teacher); `load_official` drops those. Inference always uses the online `denoise_fn`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from models.audio import N_MELS, denormalize_mel
from models.checkpoints import CheckpointError, load_yaml, safe_load
from models.conditioner import Conditioner
from models.edm import SIGMA_MAX, EDMDecoder, c_in, c_noise, c_out, c_skip, consistency_sample, teacher_sample
from models.streaming import DelayLine, StreamContext, collect_states
from models.wavenet import StreamingWaveNet, WaveNet

#: checkpoint key prefixes that are not needed for inference (dropped, counted in `LoadedModel.ignored`)
IGNORED_PREFIXES: tuple[str, ...] = ("decoder.pe.", "decoder.denoise_fn_ema.", "decoder.denoise_fn_pretrained.")
STUDENT_MARKER = "decoder.denoise_fn_ema."


class CheckpointMismatchError(CheckpointError):
    """The checkpoint's tensors do not fit the model its config.yaml describes."""


class CoMoSVC(Conditioner):
    """Conditioner (top-level embeddings, inherited) + `decoder` (EDM preconditioned WaveNet)."""

    def __init__(self, units_dim: int = 768, n_spk: int = 1, n_layers: int = 20, n_chans: int = 512,
                 n_hidden: int = 256, n_mels: int = N_MELS, use_pitch_aug: bool = True,
                 right_context: int | None = None) -> None:
        super().__init__(units_dim=units_dim, n_hidden=n_hidden, n_spk=n_spk, use_pitch_aug=use_pitch_aug)
        self.n_mels = n_mels
        self.decoder = EDMDecoder(WaveNet(in_dims=n_mels, n_layers=n_layers, n_chans=n_chans, n_hidden=n_hidden,
                                          right_context=right_context))

    def infer_mel(self, units: torch.Tensor, f0: torch.Tensor, volume: torch.Tensor,
                  speaker: torch.Tensor | None, noise: torch.Tensor, steps: int = 1,
                  teacher: bool = False, renoise: torch.Tensor | None = None) -> torch.Tensor:
        """Mel from features.

        units [B,T,C], f0 [B,T] Hz (already shifted/interpolated), volume [B,T], speaker [B] int64
        or None (single-speaker), noise [B,T,80] standard normal, steps = NFE. teacher=True runs the
        Euler teacher sampler, else the consistency sampler (`renoise` [steps-1,B,T,80] optional).
        Returns the de-normalised log10 mel [B,T,80].
        """
        if not torch.jit.is_tracing() and noise.shape != (*units.shape[:2], self.n_mels):
            raise ValueError(f"noise must be [B, T, {self.n_mels}] = {(*units.shape[:2], self.n_mels)}, "
                             f"got {tuple(noise.shape)}")
        cond = self.condition(units, f0, volume, speaker)

        def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            return self.decoder(x, sigma, cond)

        if teacher:
            x = teacher_sample(denoise, noise, steps)
        else:
            x = consistency_sample(denoise, noise, steps, renoise=renoise)
        return denormalize_mel(x)

    def forward(self, units: torch.Tensor, f0: torch.Tensor, volume: torch.Tensor,
                speaker: torch.Tensor | None, noise: torch.Tensor, steps: int = 1,
                teacher: bool = False) -> torch.Tensor:
        """Same as `infer_mel` (one-step student by default: the exported decoder)."""
        return self.infer_mel(units, f0, volume, speaker, noise, steps, teacher)


class OneStepDecoder(torch.nn.Module):
    """The exported decoder: conditioner + one-step consistency student, every input a tensor.

    units [B,T,C], f0 [B,T] Hz, volume [B,T], speaker [B] int64 (ignored by single-speaker models),
    noise [B,T,80] standard normal -> log10 mel [B,T,80]. (Tracing `CoMoSVC` itself would turn its
    Python `steps`/`teacher` defaults into graph inputs.)
    """

    def __init__(self, model: CoMoSVC) -> None:
        super().__init__()
        self.model = model

    def forward(self, units: torch.Tensor, f0: torch.Tensor, volume: torch.Tensor, speaker: torch.Tensor,
                noise: torch.Tensor) -> torch.Tensor:
        return self.model.infer_mel(units, f0, volume, speaker, noise, steps=1, teacher=False)


class StatefulDecoder(torch.nn.Module):
    """`OneStepDecoder` on chunks of new frames with cached state (exported as decoder_stateful.onnx).

    forward(units [1,n,C], f0 [1,n], volume [1,n], speaker [1], noise [1,n,80], position [1] int64,
            *states) -> (mel [1,n,80], position + n, *new states)
    The mel of a call is that of frames position − delay … position + n − delay − 1 (frames before 0
    are meaningless and dropped by the caller); the noise of a frame must be the one the whole-sequence
    decoder would get at that frame. States: `state_specs` (float32 [1, *shape], zeros at the start).
    """

    def __init__(self, model: CoMoSVC) -> None:
        super().__init__()
        self.model = model
        self.wavenet = StreamingWaveNet(model.decoder.denoise_fn)
        self.delay = self.wavenet.delay
        self.noise_delay = DelayLine(model.n_mels, self.delay, "decoder_noise")  # c_skip·x path
        self.state_specs = collect_states(self)

    def forward(self, units: torch.Tensor, f0: torch.Tensor, volume: torch.Tensor, speaker: torch.Tensor,
                noise: torch.Tensor, position: torch.Tensor, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ctx = StreamContext(position, {spec.name: s for spec, s in zip(self.state_specs, states)})
        cond = self.model.condition(units, f0, volume, speaker)
        sigma = torch.full((1,), SIGMA_MAX, dtype=noise.dtype)
        x = noise * SIGMA_MAX
        f = self.wavenet(c_in(sigma) * x, c_noise(sigma), cond, ctx)
        x = self.noise_delay(x.transpose(1, 2), ctx).transpose(1, 2)
        mel = denormalize_mel(c_skip(sigma) * x + c_out(sigma) * f)
        return (mel, position + units.shape[1], *ctx.outputs(self.state_specs))


# --------------------------------------------------------------------------------------------------
# Official checkpoints
# --------------------------------------------------------------------------------------------------

@dataclass
class LoadedModel:
    model: CoMoSVC
    config: dict
    speakers: dict[str, int]
    kind: str  # 'teacher' | 'student'
    global_step: int | None
    ignored: dict[str, int] = field(default_factory=dict)  # dropped prefix -> number of keys


#: Upper bounds of the config's sizes: far above any CoMoSVC (official: 768 / 20 / 512 / 256), far
#: below what would exhaust memory before the checkpoint's tensors could disagree.
CONFIG_LIMITS = {"encoder_out_channels": 4096, "n_spk": 65536, "n_layers": 256, "n_chans": 8192, "n_hidden": 8192,
                 "right_context": 4096}
#: Parameters of the three WaveNets a student file builds (official: ≈1.4e8), checked before allocating.
MAX_DENOISER_PARAMS = 1.5e9


def _config_int(config: dict, section: str, key: str, default: int | None = None, low: int = 1) -> int:
    """`config[section][key]` as an integer in low..CONFIG_LIMITS[key] (a whole float like 512.0 counts)."""
    block = config.get(section) or {}
    if not isinstance(block, dict):
        raise CheckpointError(f"config.yaml {section} must be a mapping, got {type(block).__name__}")
    value = block.get(key, default)
    if value is None:
        raise CheckpointError(f"config.yaml has no {section}.{key}")
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole:
        raise CheckpointError(f"config.yaml {section}.{key} must be an integer, got {value!r}")
    limit = CONFIG_LIMITS[key]
    if not low <= value <= limit:
        raise CheckpointError(f"config.yaml {section}.{key} = {value!r} is outside {low}..{limit}")
    return int(value)


def _speakers(config: dict, config_path: str) -> dict[str, int]:
    """The config's `spk` mapping (name → integer id), refusing anything else with a sentence."""
    raw = config.get("spk") or {}
    if not isinstance(raw, dict):
        raise CheckpointError(f"{config_path}: spk must map speaker names to ids, got {type(raw).__name__}")
    bad = {name: idx for name, idx in raw.items() if isinstance(idx, bool) or not isinstance(idx, int)}
    if bad:
        raise CheckpointError(f"{config_path}: speaker ids must be integers, got {bad}")
    return {str(name): idx for name, idx in raw.items()}


def model_from_config(config: dict, use_pitch_aug: bool | None = None) -> CoMoSVC:
    """Build an (untrained) CoMoSVC with the sizes of an official config.yaml dict."""
    model_cfg = config.get("model") or {}
    if use_pitch_aug is None:
        use_pitch_aug = bool(model_cfg.get("use_pitch_aug", True))
    n_layers, n_chans = _config_int(config, "model", "n_layers", 20), _config_int(config, "model", "n_chans", 512)
    n_hidden = _config_int(config, "model", "n_hidden", 256)
    # Per WaveNet layer: dilated conv c→2c (k=3), output c→2c, conditioner h→2c; three WaveNets.
    params = 3 * n_layers * (8 * n_chans ** 2 + 2 * n_hidden * n_chans)
    if params > MAX_DENOISER_PARAMS:
        raise CheckpointError(f"config.yaml model sizes (n_layers={n_layers}, n_chans={n_chans}, n_hidden={n_hidden}) "
                              f"describe about {params:.1e} parameters, far beyond any CoMoSVC "
                              f"(limit {MAX_DENOISER_PARAMS:.1e}); the config does not belong to this checkpoint")
    return CoMoSVC(
        units_dim=_config_int(config, "data", "encoder_out_channels", 768),
        n_spk=_config_int(config, "model", "n_spk", 1),
        n_layers=n_layers,
        n_chans=n_chans,
        n_hidden=n_hidden,
        use_pitch_aug=use_pitch_aug,
        # not in official configs: our causal / bounded-lookahead models (models/wavenet.py)
        right_context=(None if (config.get("model") or {}).get("right_context") is None
                       else _config_int(config, "model", "right_context", low=0)),
    )


def _split_state(state: dict) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    kept: dict[str, torch.Tensor] = {}
    ignored: dict[str, int] = {}
    for key, value in state.items():
        prefix = next((p for p in IGNORED_PREFIXES if key.startswith(p)), None)
        if prefix is None:
            kept[key] = value
        else:
            ignored[prefix] = ignored.get(prefix, 0) + 1
    return kept, ignored


def _check_keys(model: CoMoSVC, state: dict[str, torch.Tensor], ckpt_path: str, config_path: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k}: checkpoint {list(state[k].shape)} vs model {list(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    not_tensor = sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor))
    if not (missing or unexpected or mismatched or not_tensor):
        return
    lines = [f"{ckpt_path} does not match the CoMoSVC model described by {config_path} "
             f"(n_spk={model.n_spk}, units_dim={model.units_dim}, n_hidden={model.n_hidden}, "
             f"n_layers={model.decoder.denoise_fn.n_layers}, n_chans={model.decoder.denoise_fn.n_chans}):"]
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected),
                         ("shape mismatches", mismatched), ("non-tensor values", not_tensor)):
        if items:
            shown = items[:20] + ([f"... and {len(items) - 20} more"] if len(items) > 20 else [])
            lines.append(f"  {title} ({len(items)}): " + "; ".join(shown))
    raise CheckpointMismatchError("\n".join(lines))


def load_official(ckpt_path: str | os.PathLike, config_path: str | os.PathLike | None = None,
                  device: str | torch.device = "cpu") -> LoadedModel:
    """Load an official CoMoSVC teacher (`logs/teacher/model_*.pt`) or student (`logs/como/...`).

    config_path defaults to `config.yaml` next to the checkpoint. The checkpoint is read with
    `safe_load` (no code execution). Raises `CheckpointError` (missing/corrupt/unsafe) or
    `CheckpointMismatchError` listing every missing/unexpected key and shape mismatch.
    """
    ckpt_path = os.fspath(ckpt_path)
    config_path = os.fspath(config_path) if config_path is not None else str(Path(ckpt_path).parent / "config.yaml")
    if not os.path.isfile(config_path):
        raise CheckpointError(f"config not found: {config_path} (official checkpoints come with a "
                              "config.yaml in the same folder; pass config_path to use another)")
    config = load_yaml(config_path)
    ckpt = safe_load(ckpt_path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        found = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{ckpt_path} is not an official CoMoSVC checkpoint: expected a dict with a "
                              f"'model' state dict, found {found}")
    state, ignored = _split_state(ckpt["model"])
    kind = "student" if ignored.get(STUDENT_MARKER) else "teacher"
    # aug_shift_embed is training-only: follow the checkpoint rather than failing on config drift
    model = model_from_config(config, use_pitch_aug="aug_shift_embed.weight" in state)
    _check_keys(model, state, ckpt_path, config_path)
    model.load_state_dict(state, strict=True)
    model.to(device).eval()

    speakers = _speakers(config, config_path)
    bad = {n: i for n, i in speakers.items() if not 0 <= i < model.n_spk}
    if bad:
        raise CheckpointError(f"{config_path}: speaker ids {bad} are outside 0..{model.n_spk - 1} (model.n_spk)")
    step = ckpt.get("global_step")
    if isinstance(step, torch.Tensor) and step.numel() == 1:
        step = step.item()
    return LoadedModel(model=model, config=config, speakers=speakers, kind=kind,
                       global_step=int(step) if isinstance(step, (int, float)) else None, ignored=ignored)
