"""The training config: the official `config.yaml` sections plus ours, presets, overrides, checks.

Official sections (spec §9.1) keep their names so the file written beside every checkpoint loads
through `models.comosvc.load_official`: `data`, `model`, `vocoder`, `infer`, `env`, `train`, `spk`,
`device`. Ours: `content` (encoder path + kind), `vocoder_model` (NSF-HiFiGAN sizes), `vocoder_train`,
`distill`, and `right_context` per network (`model`, `vocoder_model`, `content`): None keeps the
network's own receptive field; an integer asks for causal convolutions with that many frames of
lookahead (the content encoder is given, not built: its own right context is checked against the
value, see `check_content_right_context`).

`vocoder_model.type` picks the vocoder trained from scratch: "nsf-hifigan" (default; the sizes are
the section's official keys, trained with spectral losses then LSGAN from
`vocoder_train.adv_start_step`) or "hn", the harmonic-plus-noise vocoder (`models.hn_vocoder`; sizes
in `vocoder_model.hn`, trained with the spectral losses only — no discriminators, so
`vocoder_train.adv_start_step`, `discriminators`, `disc_base` and `lambda_fm` are unused; it keeps
its pitch by construction and trains in CPU minutes — measured with `vocoder_train.lr` 1e-3; causal,
`right_context` null counts as 0).
Keys added after configs were first written (`ADDED_KEYS`) get their defaults in an older config,
which was written for exactly that behaviour.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from models.audio import HOP, SAMPLE_RATE
from models.checkpoints import CheckpointError, load_yaml
from models.pitch import EXTRACTORS
from models.train.errors import TrainError

CONFIG_NAME = "config.yaml"

#: network sizes per preset: acoustic WaveNet (layers, channels, cond width), NSF-HiFiGAN and
#: harmonic-plus-noise vocoder channels
PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(n_layers=2, n_chans=16, n_hidden=16, vocoder_channels=32, hn_channels=16),
    "demo": dict(n_layers=10, n_chans=128, n_hidden=128, vocoder_channels=128, hn_channels=192),
    "official": dict(n_layers=20, n_chans=512, n_hidden=256, vocoder_channels=512, hn_channels=192),
}
VOCODER_TYPES = ("nsf-hifigan", "hn")

_BASE: dict[str, Any] = {
    "data": {
        "sampling_rate": SAMPLE_RATE, "hop_length": HOP, "duration": 2.0,
        "extensions": ["wav", "flac", "ogg", "mp3"],
        "encoder": "vec768l12", "encoder_sample_rate": 16000, "encoder_hop_size": 320,
        "encoder_out_channels": 768, "unit_interpolate_mode": "nearest",
        "training_files": "filelists/train.txt", "validation_files": "filelists/val.txt",
        # ours: preparation
        "f0_extractor": "dio", "slice_seconds": 10.0, "min_seconds": 0.5, "silence_db": -40.0,
        "min_silence_ms": 600, "keep_silence_ms": 200, "target_rms_db": -20.0, "peak": 0.95,
        "val_per_speaker": 2, "keyshift_range": 5.0,
    },
    "content": {"path": None, "kind": None, "right_context": None},
    "model": {"type": "Diffusion", "n_layers": 20, "n_chans": 512, "n_hidden": 256, "use_pitch_aug": True,
              "n_spk": 1, "right_context": None},
    "vocoder": {"type": "m4-gan", "ckpt": None},
    "vocoder_model": {
        "type": "nsf-hifigan",
        "layout": "m4singer", "resblock": "1", "upsample_rates": [8, 4, 2, 2], "upsample_kernel_sizes": [16, 8, 4, 4],
        "upsample_initial_channel": 512, "resblock_kernel_sizes": [3, 7, 11],
        "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "right_context": None,
        "hn": {"channels": 192, "kernel_size": 3, "dilations": [1, 2, 4, 1], "sines": 96, "noise_bands": 48,
               "noise_taps": 128, "nyquist_margin": 500.0},
    },
    "infer": {"speedup": 10, "method": "dpm-solver++"},
    "env": {"expdir": "logs"},
    "train": {
        "batch_size": 48, "lr": 1e-4, "comolr": 5e-5, "weight_decay": 0.0, "decay_step": 100000, "gamma": 0.5,
        "interval_log": 10, "interval_val": 2000, "interval_force_save": 2000, "num_workers": 2, "seed": 1234,
        "amp": True, "aug_prob": 0.5, "val_items": 4, "val_teacher_steps": 50, "save_opt": False,
        # ours: teacher steps spent first on L1 regression at sigma_max (models/train/teacher.py); 0 = official
        "prior_steps": 0,
    },
    "distill": {"ema": 0.95, "loss_scale": 1000.0},
    "vocoder_train": {
        "batch_size": 16, "segment_frames": 64, "lr": 2e-4, "betas": [0.8, 0.99],
        "adv_start_step": 20000, "discriminators": ["mpd", "mrd"], "lambda_mel": 45.0, "lambda_stft": 2.5,
        "lambda_fm": 2.0, "disc_base": 32,
    },
    "spk": {},
    "device": "cuda",
}

# key -> type checks for the values a user is likely to set by hand
_TYPES: dict[str, tuple[type, ...]] = {
    "data.duration": (int, float), "data.f0_extractor": (str,), "data.slice_seconds": (int, float),
    "data.min_seconds": (int, float), "data.val_per_speaker": (int,), "data.keyshift_range": (int, float),
    "data.encoder_out_channels": (int,), "data.silence_db": (int, float), "data.peak": (int, float),
    "model.n_layers": (int,), "model.n_chans": (int,), "model.n_hidden": (int,), "model.n_spk": (int,),
    "vocoder_model.upsample_initial_channel": (int,),
    "train.batch_size": (int,), "train.lr": (int, float), "train.comolr": (int, float),
    "train.weight_decay": (int, float), "train.decay_step": (int,), "train.gamma": (int, float),
    "train.interval_log": (int,), "train.interval_val": (int,), "train.interval_force_save": (int,),
    "train.num_workers": (int,), "train.seed": (int,), "train.amp": (bool,), "train.aug_prob": (int, float),
    "train.val_items": (int,), "train.val_teacher_steps": (int,), "train.prior_steps": (int,),
    "distill.ema": (int, float), "distill.loss_scale": (int, float),
    "vocoder_train.batch_size": (int,), "vocoder_train.segment_frames": (int,), "vocoder_train.lr": (int, float),
    "vocoder_train.adv_start_step": (int,), "vocoder_train.lambda_mel": (int, float),
    "vocoder_train.lambda_stft": (int, float), "vocoder_train.lambda_fm": (int, float),
    "vocoder_train.disc_base": (int,),
}
_POSITIVE = ("model.n_layers", "model.n_chans", "model.n_hidden", "model.n_spk", "train.batch_size",
             "train.interval_log", "train.interval_val", "train.interval_force_save", "vocoder_train.batch_size",
             "vocoder_train.segment_frames", "data.duration", "data.slice_seconds", "train.decay_step",
             "train.val_teacher_steps", "vocoder_model.upsample_initial_channel", "vocoder_train.disc_base")
RIGHT_CONTEXT_KEYS = ("model.right_context", "vocoder_model.right_context", "content.right_context")
#: keys added after configs were first written: (section, key), filled with the default when absent
ADDED_KEYS = (("vocoder_model", "type"), ("vocoder_model", "hn"), ("train", "prior_steps"))
DISCRIMINATORS = ("mpd", "mrd", "msd")


def default_config(preset: str = "official") -> dict[str, Any]:
    """A full config with the sizes of `preset` (one of PRESETS)."""
    if preset not in PRESETS:
        raise TrainError(f"unknown size preset {preset!r}; choose one of {', '.join(PRESETS)}")
    cfg = copy.deepcopy(_BASE)
    sizes = PRESETS[preset]
    cfg["model"].update(n_layers=sizes["n_layers"], n_chans=sizes["n_chans"], n_hidden=sizes["n_hidden"])
    cfg["vocoder_model"]["upsample_initial_channel"] = sizes["vocoder_channels"]
    cfg["vocoder_model"]["hn"]["channels"] = sizes["hn_channels"]
    if preset == "tiny":  # tiny data in tests: short crops, small batches, frequent checkpoints
        cfg["data"]["duration"] = 0.5
        cfg["train"].update(batch_size=4, interval_val=100, interval_force_save=100, num_workers=0, val_items=2,
                            val_teacher_steps=8)
        cfg["vocoder_train"].update(batch_size=2, segment_frames=16, disc_base=4)
    return cfg


def get(cfg: dict[str, Any], dotted: str) -> Any:
    """cfg['a']['b'] for 'a.b' (None when absent)."""
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def apply_overrides(cfg: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of cfg with each 'section.key=value' set (value parsed as YAML: 1e-4, true, [1, 2], null)."""
    cfg = copy.deepcopy(cfg)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise TrainError(f"--set expects section.key=value, got {item!r}")
        parts = key.strip().split(".")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise TrainError(f"--set {item!r}: the value is not valid YAML") from None
        if isinstance(value, str):  # YAML 1.1 reads 2e-3 (no dot) as text
            try:
                value = float(value)
            except ValueError:
                pass
        node = cfg
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise TrainError(f"--set {item!r}: the config has no section {'.'.join(parts[:-1])!r}")
            node = node[part]
        if parts[-1] not in node:
            raise TrainError(f"--set {item!r}: unknown key {key.strip()!r} (known in this section: "
                             f"{', '.join(sorted(node))})")
        node[parts[-1]] = value
    return cfg


def validate(cfg: dict[str, Any], source: str = CONFIG_NAME) -> dict[str, Any]:
    """Raise TrainError naming the first bad setting; return cfg."""
    missing = [s for s in _BASE if s not in cfg]
    if missing:
        raise TrainError(f"{source} lacks the section(s) {', '.join(missing)}; re-run `prepare` or restore the file")
    for key, types in _TYPES.items():
        value = get(cfg, key)
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            names = " or ".join(t.__name__ for t in types)
            raise TrainError(f"{source}: {key} must be {names}, got {value!r}")
    for key in _POSITIVE:
        if get(cfg, key) <= 0:
            raise TrainError(f"{source}: {key} must be positive, got {get(cfg, key)!r}")
    for key in RIGHT_CONTEXT_KEYS:
        value = get(cfg, key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise TrainError(f"{source}: {key} must be null (the network's own context) or a non-negative "
                             f"integer number of frames, got {value!r}")
    if not 0.0 < float(get(cfg, "distill.ema")) < 1.0:
        raise TrainError(f"{source}: distill.ema must lie strictly between 0 and 1, got {get(cfg, 'distill.ema')}")
    if get(cfg, "train.prior_steps") < 0:
        raise TrainError(f"{source}: train.prior_steps must be 0 or more, got {get(cfg, 'train.prior_steps')}")
    if not 0.0 <= float(get(cfg, "train.aug_prob")) <= 1.0:
        raise TrainError(f"{source}: train.aug_prob must lie in [0, 1], got {get(cfg, 'train.aug_prob')}")
    if get(cfg, "vocoder_model.type") not in VOCODER_TYPES:
        raise TrainError(f"{source}: vocoder_model.type must be one of {', '.join(VOCODER_TYPES)}, "
                         f"got {get(cfg, 'vocoder_model.type')!r}")
    if not isinstance(get(cfg, "vocoder_model.hn"), dict):
        raise TrainError(f"{source}: vocoder_model.hn must be a mapping of harmonic-plus-noise vocoder sizes, "
                         f"got {get(cfg, 'vocoder_model.hn')!r}")
    discs = get(cfg, "vocoder_train.discriminators")
    if not isinstance(discs, list) or not discs or any(d not in DISCRIMINATORS for d in discs):
        raise TrainError(f"{source}: vocoder_train.discriminators must be a non-empty list of "
                         f"{', '.join(DISCRIMINATORS)}, got {discs!r}")
    if get(cfg, "data.f0_extractor") not in EXTRACTORS:
        raise TrainError(f"{source}: data.f0_extractor must be one of {', '.join(EXTRACTORS)}, "
                         f"got {get(cfg, 'data.f0_extractor')!r}")
    spk = cfg.get("spk")
    if not isinstance(spk, dict) or any(not isinstance(v, int) for v in spk.values()):
        raise TrainError(f"{source}: spk must map speaker names to integer ids, got {spk!r}")
    if spk and sorted(spk.values()) != list(range(len(spk))):
        raise TrainError(f"{source}: speaker ids {sorted(spk.values())} must be 0..{len(spk) - 1} without gaps")
    if spk and get(cfg, "model.n_spk") != len(spk):
        raise TrainError(f"{source}: model.n_spk is {get(cfg, 'model.n_spk')} but spk names {len(spk)} speakers")
    return cfg


def check_content_right_context(cfg: dict[str, Any], encoder_right: int | None) -> None:
    """`content.right_context` is a promise about the given encoder, not a size to build: refuse an
    encoder that looks further ahead (`encoder_right` content frames; None = unbounded, e.g. ContentVec)."""
    asked = get(cfg, "content.right_context")
    if asked is None:
        return
    if encoder_right is None or encoder_right > asked:
        seen = "an unbounded" if encoder_right is None else f"{encoder_right} frames of"
        raise TrainError(f"content.right_context={asked}: the content encoder {get(cfg, 'content.path')} has "
                         f"{seen} right context; give an encoder trained with at most {asked} or set it to null")


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read, override and validate a training config; TrainError with one sentence when unusable."""
    path = Path(path)
    if not path.is_file():
        raise TrainError(f"no training config at {path}: run `python -m models.train prepare DATA_DIR "
                         f"{path.parent}` first (it writes {CONFIG_NAME})")
    try:
        cfg = load_yaml(path)
    except CheckpointError as exc:
        raise TrainError(f"cannot use the training config: {exc}") from None
    return validate(apply_overrides(with_added_keys(cfg), overrides or []), str(path))


def with_added_keys(cfg: dict[str, Any]) -> dict[str, Any]:
    """cfg with the defaults of the `ADDED_KEYS` it lacks (a config written before they existed)."""
    for section, key in ADDED_KEYS:
        if isinstance(cfg.get(section), dict) and key not in cfg[section]:
            cfg[section][key] = copy.deepcopy(_BASE[section][key])
    return cfg


def write_config(cfg: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write cfg as YAML atomically (a crash never leaves half a config)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)
    return path
