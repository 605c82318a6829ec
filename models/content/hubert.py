"""ContentVec / HuBERT-Base in plain PyTorch (spec §2), loading fairseq and HF checkpoints.

CoMoSVC's content features are fairseq `HubertModel.extract_features(wav, padding_mask=all False,
output_layer=12)`: the output of the last transformer layer, no `final_proj`. The model is post-LN
("layer_norm_first=False"):

    wav [B, N] -> conv extractor (7 convs, GroupNorm on conv 0 only, GELU) -> [B, T, 512]
    -> layer_norm -> post_extract_proj (512 -> 768)
    -> x + GELU(pos_conv(x)) -> encoder.layer_norm
    -> 12 x [x = LN(x + attn(x)); x = LN(x + fc2(GELU(fc1(x))))]            -> [B, T, 768]

fairseq pads the sequence to a multiple of 2 and masks the pad as an attention key, which leaves the
real frames unchanged, so it is not reproduced here. The input is not normalised (the legacy
checkpoint was trained with `normalize=False`).

Module names follow fairseq; the HF (`lengyue233/content-vec-best`, transformers `HubertModel`)
names are mapped onto them, and the weight-normed positional conv is folded into a plain weight.
"""
from __future__ import annotations

import ast
import json
import math
import os
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.checkpoints import CheckpointError, safe_load
from models.content.base import ContentEncoder

# (channels, kernel, stride) of HuBERT-Base's conv feature extractor: 400-sample window, hop 320.
HUBERT_CONV_LAYERS: tuple[tuple[int, int, int], ...] = (
    (512, 10, 5), (512, 3, 2), (512, 3, 2), (512, 3, 2), (512, 3, 2), (512, 2, 2), (512, 2, 2))


@dataclass(frozen=True)
class ContentVecConfig:
    """Sizes of a HuBERT-style encoder. Defaults are HuBERT-Base / ContentVec (94.4 M parameters)."""

    conv_layers: tuple[tuple[int, int, int], ...] = HUBERT_CONV_LAYERS
    conv_bias: bool = False
    embed_dim: int = 768
    ffn_dim: int = 3072
    num_layers: int = 12
    num_heads: int = 12
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16
    layer_norm_eps: float = 1e-5


# --------------------------------------------------------------------------------------------- modules


class ConvBlock(nn.Module):
    """Conv1d (+ GroupNorm with one group per channel on the first block) + GELU. [B, C, T] -> [B, C', T']"""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, bias: bool, group_norm: bool):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride=stride, bias=bias)
        # fairseq "default" extractor mode: GroupNorm(C, C) on layer 0 only, i.e. per-channel
        # normalisation over the whole utterance (this is what makes the receptive field unbounded).
        self.norm = nn.GroupNorm(c_out, c_out, affine=True) if group_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        return F.gelu(x)


class ConvFeatureExtractor(nn.Module):
    """Raw audio [B, N] -> features [B, C, T_c]."""

    def __init__(self, layers: tuple[tuple[int, int, int], ...], bias: bool):
        super().__init__()
        blocks, c_in = [], 1
        for i, (c_out, kernel, stride) in enumerate(layers):
            blocks.append(ConvBlock(c_in, c_out, kernel, stride, bias, group_norm=i == 0))
            c_in = c_out
        self.conv_layers = nn.ModuleList(blocks)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = audio.unsqueeze(1)
        for block in self.conv_layers:
            x = block(x)
        return x


class PositionalConv(nn.Module):
    """Convolutional relative position embedding: [B, T, D] -> GELU(conv(x)) [B, T, D].

    'Same' padding of kernel//2; for an even kernel that yields one frame too many, dropped at the end.
    """

    def __init__(self, dim: int, kernel: int, groups: int):
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=groups)
        self.drop_last = kernel % 2 == 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.transpose(1, 2))
        if self.drop_last:
            y = y[:, :, :-1]
        return F.gelu(y).transpose(1, 2)


class SelfAttention(nn.Module):
    """Multi-head self-attention without masks. [B, T, D] -> [B, T, D]"""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"embed dim {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape

        def split(y: torch.Tensor) -> torch.Tensor:  # [B, T, D] -> [B, H, T, D/H]
            return y.view(b, t, self.heads, d // self.heads).transpose(1, 2)

        # Same math as fairseq (q scaled by head_dim^-0.5 after the bias), memory-efficient in eager.
        y = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)))
        return self.out_proj(y.transpose(1, 2).reshape(b, t, d))


class EncoderLayer(nn.Module):
    """Post-LN transformer layer. [B, T, D] -> [B, T, D]"""

    def __init__(self, dim: int, ffn_dim: int, heads: int, eps: float):
        super().__init__()
        self.self_attn = SelfAttention(dim, heads)
        self.self_attn_layer_norm = nn.LayerNorm(dim, eps=eps)
        self.fc1 = nn.Linear(dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.self_attn_layer_norm(x + self.self_attn(x))
        return self.final_layer_norm(x + self.fc2(F.gelu(self.fc1(x))))


class TransformerEncoder(nn.Module):
    """x + pos_conv(x) -> layer_norm (before the layers: post-LN model) -> layers. [B, T, D] -> [B, T, D]"""

    def __init__(self, cfg: ContentVecConfig):
        super().__init__()
        self.pos_conv = PositionalConv(cfg.embed_dim, cfg.pos_conv_kernel, cfg.pos_conv_groups)
        self.layer_norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.layer_norm_eps)
        self.layers = nn.ModuleList(
            EncoderLayer(cfg.embed_dim, cfg.ffn_dim, cfg.num_heads, cfg.layer_norm_eps)
            for _ in range(cfg.num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer_norm(x + self.pos_conv(x))
        for layer in self.layers:
            x = layer(x)
        return x


class ContentVec(ContentEncoder):
    """HuBERT-Base / ContentVec: audio [B, N] float 16 kHz -> layer-12 features [B, T_c, 768].

    `ignored_keys` lists the checkpoint entries that were deliberately not loaded (final_proj, ...).
    """

    kind = "contentvec"

    def __init__(self, config: ContentVecConfig = ContentVecConfig()):
        super().__init__()
        self.config = config
        self.width = config.embed_dim
        self.hop = math.prod(s for _, _, s in config.conv_layers)
        # Each conv widens the window by (kernel - 1) input steps of its own stride.
        self.window, jump = 1, 1
        for _, kernel, stride in config.conv_layers:
            self.window += (kernel - 1) * jump
            jump *= stride
        self.ignored_keys: tuple[str, ...] = ()
        c_feat = config.conv_layers[-1][0]
        self.feature_extractor = ConvFeatureExtractor(config.conv_layers, config.conv_bias)
        self.layer_norm = nn.LayerNorm(c_feat, eps=config.layer_norm_eps)
        self.post_extract_proj = nn.Linear(c_feat, config.embed_dim)
        self.encoder = TransformerEncoder(config)

    @property
    def receptive_field(self) -> None:
        """Unbounded: attention over the whole input (and utterance-level GroupNorm)."""
        return None

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """audio [B, N] float, 16 kHz, not normalised -> units [B, T_c, D]."""
        self.check_audio(audio)
        x = self.feature_extractor(audio).transpose(1, 2)
        x = self.post_extract_proj(self.layer_norm(x))
        return self.encoder(x)

    @classmethod
    def from_fairseq(cls, checkpoint: Mapping[str, Any]) -> ContentVec:
        """Build from a loaded fairseq checkpoint dict (`model` state dict + `args` and/or `cfg`)."""
        state = checkpoint.get("model")
        if not isinstance(state, Mapping):
            raise CheckpointError("fairseq checkpoint has no 'model' state dict")
        sources = [_lookup(checkpoint.get("cfg"), "model"), checkpoint.get("args")]
        hints = _fairseq_hints([s for s in sources if s is not None])
        return _build(state, _FAIRSEQ_RULES, _FAIRSEQ_IGNORED, hints, "fairseq")

    @classmethod
    def from_hf(cls, state: Mapping[str, torch.Tensor], config: Mapping[str, Any] | None = None) -> ContentVec:
        """Build from a transformers `HubertModel` state dict (optionally `hubert.`-prefixed) and its
        config.json dict (optional: sizes are then inferred from tensor shapes)."""
        state = {k.removeprefix("hubert."): v for k, v in state.items()}
        return _build(state, _HF_RULES, _HF_IGNORED, _hf_hints(config or {}), "HF")


# --------------------------------------------------------------------------------------------- loading

# Checkpoint key -> our key. Applied after the positional conv's weight norm has been folded into
# `<prefix>.weight`. Keys matching no rule and not ignorable are an error.
_FAIRSEQ_RULES: tuple[tuple[str, str], ...] = (
    (r"^feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)$", r"feature_extractor.conv_layers.\1.conv.\2"),
    (r"^feature_extractor\.conv_layers\.0\.2\.(weight|bias)$", r"feature_extractor.conv_layers.0.norm.\1"),
    (r"^(layer_norm|post_extract_proj)\.(weight|bias)$", r"\1.\2"),
    (r"^encoder\.pos_conv\.0\.(weight|bias)$", r"encoder.pos_conv.conv.\1"),
    (r"^encoder\.layer_norm\.(weight|bias)$", r"encoder.layer_norm.\1"),
    (r"^encoder\.layers\.(\d+)\.(self_attn\.[qkv]_proj|self_attn\.out_proj|self_attn_layer_norm|fc1|fc2"
     r"|final_layer_norm)\.(weight|bias)$", r"encoder.layers.\1.\2.\3"),
)
_FAIRSEQ_IGNORED = re.compile(r"^(final_proj\..*|label_embs_concat|mask_emb)$")

_HF_RULES: tuple[tuple[str, str], ...] = (
    (r"^feature_extractor\.conv_layers\.(\d+)\.conv\.(weight|bias)$", r"feature_extractor.conv_layers.\1.conv.\2"),
    (r"^feature_extractor\.conv_layers\.0\.layer_norm\.(weight|bias)$", r"feature_extractor.conv_layers.0.norm.\1"),
    (r"^feature_projection\.layer_norm\.(weight|bias)$", r"layer_norm.\1"),
    (r"^feature_projection\.projection\.(weight|bias)$", r"post_extract_proj.\1"),
    (r"^encoder\.pos_conv_embed\.conv\.(weight|bias)$", r"encoder.pos_conv.conv.\1"),
    (r"^encoder\.layer_norm\.(weight|bias)$", r"encoder.layer_norm.\1"),
    (r"^encoder\.layers\.(\d+)\.attention\.([qkv]_proj|out_proj)\.(weight|bias)$", r"encoder.layers.\1.self_attn.\2.\3"),
    (r"^encoder\.layers\.(\d+)\.layer_norm\.(weight|bias)$", r"encoder.layers.\1.self_attn_layer_norm.\2"),
    (r"^encoder\.layers\.(\d+)\.feed_forward\.intermediate_dense\.(weight|bias)$", r"encoder.layers.\1.fc1.\2"),
    (r"^encoder\.layers\.(\d+)\.feed_forward\.output_dense\.(weight|bias)$", r"encoder.layers.\1.fc2.\2"),
    (r"^encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)$", r"encoder.layers.\1.final_layer_norm.\2"),
)
_HF_IGNORED = re.compile(r"^(final_proj\..*|masked_spec_embed)$")

# Weight-norm parameter pairs (magnitude g, direction v): old-style attributes and torch parametrizations.
_WEIGHT_NORM_PAIRS = (("weight_g", "weight_v"), ("parametrizations.weight.original0", "parametrizations.weight.original1"))


def fold_weight_norm(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """w = g * v / ||v||, the norm taken over every dim where g has size 1 (torch weight_norm)."""
    dims = [d for d in range(v.dim()) if g.shape[d] == 1]
    return v * (g / v.norm(2, dim=dims, keepdim=True))


def _fold_all_weight_norms(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = dict(state)
    for g_name, v_name in _WEIGHT_NORM_PAIRS:
        for key in [k for k in out if k.endswith("." + g_name)]:
            prefix = key[: -len(g_name)]
            if prefix + v_name not in out:
                raise CheckpointError(f"{key} has no matching {prefix + v_name}")
            g, v = out.pop(key), out.pop(prefix + v_name)
            if g.dim() != v.dim() or any(a not in (1, b) for a, b in zip(g.shape, v.shape)):
                raise CheckpointError(
                    f"weight norm {key} {tuple(g.shape)} does not fit {prefix + v_name} {tuple(v.shape)}")
            out[prefix + "weight"] = fold_weight_norm(g.float(), v.float())
    return out


def _map_keys(state: Mapping[str, torch.Tensor], rules: tuple[tuple[str, str], ...], ignored: re.Pattern,
              layout: str) -> tuple[dict[str, torch.Tensor], dict[str, str], tuple[str, ...]]:
    """-> (our state dict, our key -> checkpoint key, ignored checkpoint keys). Unknown keys raise."""
    mapped, origin, skipped, unknown = {}, {}, [], []
    for key, value in _fold_all_weight_norms(state).items():
        if ignored.match(key):
            skipped.append(key)
            continue
        for pattern, repl in rules:
            if re.match(pattern, key):
                new = re.sub(pattern, repl, key)
                mapped[new], origin[new] = value, key
                break
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"{layout} ContentVec checkpoint has unexpected keys: {sorted(unknown)[:10]}"
                              + (" ..." if len(unknown) > 10 else ""))
    return mapped, origin, tuple(sorted(skipped))


def _lookup(source: Any, name: str) -> Any:
    """source[name] for dicts, source.name for namespaces, else None."""
    if isinstance(source, Mapping):
        return source.get(name)
    return getattr(source, name, None) if source is not None else None


def parse_conv_layers(spec: str) -> tuple[tuple[int, int, int], ...]:
    """fairseq `conv_feature_layers`, e.g. "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2", without eval."""
    layers: list[tuple[int, int, int]] = []
    for term in spec.split("+"):
        m = re.fullmatch(r"\s*(\[.*\])\s*(?:\*\s*(\d+))?\s*", term)
        if not m:
            raise CheckpointError(f"cannot parse conv_feature_layers {spec!r}")
        try:
            items = ast.literal_eval(m.group(1))
        except (ValueError, SyntaxError) as exc:
            raise CheckpointError(f"cannot parse conv_feature_layers {spec!r}") from exc
        layers += [tuple(int(v) for v in item) for item in items] * int(m.group(2) or 1)
    if not layers or any(len(layer) != 3 for layer in layers):
        raise CheckpointError(f"conv_feature_layers {spec!r} is not a list of (dim, kernel, stride)")
    return tuple(layers)


def _fairseq_hints(sources: list[Any]) -> dict[str, Any]:
    """Sizes named by fairseq args/cfg (first source that has a field wins)."""

    def get(name: str) -> Any:
        return next((v for v in (_lookup(s, name) for s in sources) if v is not None), None)

    if get("extractor_mode") not in (None, "default"):
        raise CheckpointError(f"unsupported fairseq extractor_mode {get('extractor_mode')!r} (need 'default')")
    if get("layer_norm_first"):
        raise CheckpointError("unsupported fairseq layer_norm_first=True (ContentVec is post-LN)")
    conv = get("conv_feature_layers")
    return {"conv_layers": parse_conv_layers(conv) if isinstance(conv, str) else None,
            "num_layers": get("encoder_layers"), "embed_dim": get("encoder_embed_dim"),
            "ffn_dim": get("encoder_ffn_embed_dim"), "num_heads": get("encoder_attention_heads"),
            "pos_conv_kernel": get("conv_pos"), "pos_conv_groups": get("conv_pos_groups"),
            "conv_bias": get("conv_bias")}


def _hf_hints(config: Mapping[str, Any]) -> dict[str, Any]:
    """Sizes named by a transformers HubertConfig dict."""
    if config.get("do_stable_layer_norm"):
        raise CheckpointError("unsupported HF config do_stable_layer_norm=True (ContentVec is post-LN)")
    if config.get("feat_extract_norm", "group") != "group":
        raise CheckpointError(f"unsupported HF feat_extract_norm {config['feat_extract_norm']!r} (need 'group')")
    conv = None
    if all(k in config for k in ("conv_dim", "conv_kernel", "conv_stride")):
        conv = tuple(zip(config["conv_dim"], config["conv_kernel"], config["conv_stride"], strict=True))
    return {"conv_layers": conv, "num_layers": config.get("num_hidden_layers"),
            "embed_dim": config.get("hidden_size"), "ffn_dim": config.get("intermediate_size"),
            "num_heads": config.get("num_attention_heads"), "pos_conv_kernel": config.get("num_conv_pos_embeddings"),
            "pos_conv_groups": config.get("num_conv_pos_embedding_groups"),
            "layer_norm_eps": config.get("layer_norm_eps"), "conv_bias": config.get("conv_bias")}


def _shape(state: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...]:
    if key not in state:
        raise CheckpointError(f"ContentVec checkpoint is missing (our name) {key}")
    return tuple(state[key].shape)


def infer_config(state: Mapping[str, torch.Tensor], hints: Mapping[str, Any]) -> ContentVecConfig:
    """Sizes from tensor shapes (our key names), checked against the checkpoint's config where it names them.

    Not visible in shapes: conv strides (HuBERT's when the kernels are HuBERT's) and the head count
    (embed_dim / 64, HuBERT's head size); both are taken from the config when it has them.
    """
    conv_ids = sorted(int(m.group(1)) for k in state
                      if (m := re.fullmatch(r"feature_extractor\.conv_layers\.(\d+)\.conv\.weight", k)))
    if conv_ids != list(range(len(conv_ids))) or not conv_ids:
        raise CheckpointError(f"ContentVec checkpoint has conv layers {conv_ids}, expected 0..n-1")
    conv_shapes = [_shape(state, f"feature_extractor.conv_layers.{i}.conv.weight") for i in conv_ids]
    kernels = tuple(s[2] for s in conv_shapes)
    layer_ids = {int(m.group(1)) for k in state if (m := re.match(r"encoder\.layers\.(\d+)\.", k))}
    embed_dim = _shape(state, "post_extract_proj.weight")[0]
    pos_shape = _shape(state, "encoder.pos_conv.conv.weight")
    inferred = {
        "conv_bias": "feature_extractor.conv_layers.0.conv.bias" in state,
        "num_layers": len(layer_ids),
        "embed_dim": embed_dim,
        "ffn_dim": _shape(state, "encoder.layers.0.fc1.weight")[0] if layer_ids else 4 * embed_dim,
        "pos_conv_kernel": pos_shape[2],
        "pos_conv_groups": embed_dim // pos_shape[1],
    }
    for name, value in inferred.items():
        hint = hints.get(name)
        if hint is not None and hint != value:
            raise CheckpointError(f"checkpoint config says {name}={hint} but the tensors give {value}")
    conv = hints.get("conv_layers")
    if conv is None:
        if kernels != tuple(k for _, k, _ in HUBERT_CONV_LAYERS):
            raise CheckpointError(f"conv kernels {kernels} are not HuBERT's and the checkpoint names no strides")
        conv = tuple((s[0], k, stride) for s, (_, k, stride) in zip(conv_shapes, HUBERT_CONV_LAYERS))
    got = tuple((s[0], s[2]) for s in conv_shapes)
    if tuple((c, k) for c, k, _ in conv) != got:
        raise CheckpointError(f"checkpoint config conv layers {conv} do not match the tensors' (dim, kernel) {got}")
    heads = hints.get("num_heads") or embed_dim // 64
    eps = hints.get("layer_norm_eps") or ContentVecConfig.layer_norm_eps
    return ContentVecConfig(conv_layers=tuple(conv), num_heads=int(heads), layer_norm_eps=float(eps), **inferred)


def _build(state: Mapping[str, torch.Tensor], rules: tuple[tuple[str, str], ...], ignored: re.Pattern,
           hints: Mapping[str, Any], layout: str) -> ContentVec:
    mapped, origin, skipped = _map_keys(state, rules, ignored, layout)
    model = ContentVec(infer_config(mapped, hints))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(mapped))
    if missing:
        raise CheckpointError(f"{layout} ContentVec checkpoint is missing {missing[:10]}"
                              + (" ..." if len(missing) > 10 else ""))
    for key, param in expected.items():
        if tuple(mapped[key].shape) != tuple(param.shape):
            raise CheckpointError(f"{layout} key {origin[key]} has shape {tuple(mapped[key].shape)}, "
                                  f"model {key} needs {tuple(param.shape)}")
    model.load_state_dict({k: v.float() for k, v in mapped.items()}, strict=True)
    model.ignored_keys = skipped
    return model.eval()


def read_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a .safetensors file (8-byte header length, JSON header, raw little-endian data). No code runs."""
    dtypes = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
              "I64": torch.int64, "I32": torch.int32}
    data = Path(path).read_bytes()
    try:
        (n,) = struct.unpack("<Q", data[:8])
        if n > len(data) - 8:
            raise ValueError(f"header length {n} exceeds the file")
        header = json.loads(data[8:8 + n])
    except (struct.error, ValueError) as exc:
        raise CheckpointError(f"{path}: not a safetensors file ({exc})") from exc
    body, out = memoryview(data)[8 + n:], {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        if info["dtype"] not in dtypes:
            raise CheckpointError(f"{path}: {key} has unsupported dtype {info['dtype']}")
        start, end = info["data_offsets"]
        if not 0 <= start <= end <= len(body):
            raise CheckpointError(f"{path}: {key} data offsets {start}..{end} are outside the file")
        if start == end:  # torch.frombuffer refuses empty buffers
            out[key] = torch.empty(info["shape"], dtype=dtypes[info["dtype"]])
            continue
        flat = torch.frombuffer(bytearray(body[start:end]), dtype=dtypes[info["dtype"]])
        out[key] = flat.reshape(info["shape"])
    return out


def _read_hf_config(folder: Path) -> dict[str, Any] | None:
    path = folder / "config.json"
    return json.loads(path.read_text()) if path.is_file() else None


def contentvec_from_object(obj: Any, source: str | os.PathLike) -> ContentVec:
    """Build from what `safe_load(source)` returned: a fairseq dict or an HF state dict (whose
    config.json, when present, is read from the same folder)."""
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        return ContentVec.from_fairseq(obj)
    if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return ContentVec.from_hf(obj, _read_hf_config(Path(source).parent))
    raise CheckpointError(f"{source}: neither a fairseq checkpoint (dict with 'model') nor an HF state dict")


def load_contentvec(path: str | os.PathLike) -> ContentVec:
    """Load ContentVec from a fairseq .pt, an HF folder (config.json + pytorch_model.bin or
    model.safetensors) or an HF weights file. Returns the model in eval mode."""
    path = Path(path)
    if path.is_dir():
        for name in ("pytorch_model.bin", "model.safetensors"):
            if (path / name).is_file():
                return load_contentvec(path / name)
        raise CheckpointError(f"{path}: no pytorch_model.bin or model.safetensors in the folder")
    if path.suffix == ".safetensors":
        return ContentVec.from_hf(read_safetensors(path), _read_hf_config(path.parent))
    return contentvec_from_object(safe_load(path), path)


__all__ = ["ContentVec", "ContentVecConfig", "HUBERT_CONV_LAYERS", "load_contentvec", "contentvec_from_object",
           "fold_weight_norm", "parse_conv_layers", "infer_config", "read_safetensors"]
