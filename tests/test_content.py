"""Content encoders: ContentVec loading (fairseq + HF layouts), reference math, ONNX export, PPG
chunk exactness, unit alignment rules."""
from __future__ import annotations

import json
import math
import struct
from fractions import Fraction
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models.checkpoints import CheckpointError
from models.content import (ContentVec, ContentVecConfig, PPGConfig, PPGEncoder, align_units,
                            content_index_for_mel_frames, load_content_encoder)
from models.content.align import interpolate_nearest
from models.content.hubert import parse_conv_layers
from tests.fixtures.contentvec import (FAIRSEQ_UNUSED, HF_UNUSED, SIZES, fairseq_args, fairseq_checkpoint,
                                       fairseq_state_dict, fairseq_to_hf, hf_config, write_contentvec)

torch.set_num_threads(1)


def audio(n: int, seed: int = 0, batch: int = 1) -> torch.Tensor:
    """Speech-like level noise [B, n]."""
    return torch.randn(batch, n, generator=torch.Generator().manual_seed(seed)) * 0.1


def rel_l2(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def tiny_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("contentvec")
    return {
        "fairseq": write_contentvec(root / "fairseq", "fairseq"),
        "hf": write_contentvec(root / "hf", "hf"),
        "hf_parametrizations": write_contentvec(root / "hf_p", "hf", parametrizations=True),
        "hf_prefixed": write_contentvec(root / "hf_prefix", "hf", prefix="hubert."),
    }


@pytest.fixture(scope="module")
def tiny(tiny_paths: dict[str, Path]) -> ContentVec:
    return load_content_encoder(tiny_paths["fairseq"])


# ----------------------------------------------------------------------------------------- ContentVec


@pytest.mark.parametrize("name", ["fairseq", "hf", "hf_parametrizations", "hf_prefixed"])
def test_layouts_load_completely(tiny_paths: dict[str, Path], name: str) -> None:
    model = load_content_encoder(tiny_paths[name])
    assert isinstance(model, ContentVec) and model.kind == "contentvec"
    assert not model.training
    # Loading is strict, so reaching here means zero missing keys; the ignored ones are exactly the
    # explained unused heads of each layout.
    expected_ignored = FAIRSEQ_UNUSED if name == "fairseq" else HF_UNUSED
    assert set(model.ignored_keys) == set(expected_ignored)
    s = SIZES["tiny"]
    assert (model.width, model.config.num_layers, model.config.num_heads) == (s["embed"], s["layers"], s["heads"])
    assert (model.hop, model.window, model.sample_rate) == (320, 400, 16000)
    assert model.receptive_field is None


def test_layouts_give_identical_features(tiny_paths: dict[str, Path]) -> None:
    x = audio(16000 + 123, batch=2)
    with torch.no_grad():
        outs = {name: load_content_encoder(p)(x) for name, p in tiny_paths.items()}
        outs["hf_bin_file"] = load_content_encoder(tiny_paths["hf"] / "pytorch_model.bin")(x)
    ref = outs.pop("fairseq")
    assert ref.shape == (2, (16123 - 400) // 320 + 1, SIZES["tiny"]["embed"])
    for name, out in outs.items():
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-6, msg=f"{name} differs from fairseq")


def reference_forward(sd: dict[str, torch.Tensor], args, wav: torch.Tensor) -> torch.Tensor:
    """fairseq HuBERT extract_features(output_layer=last), written with torch built-ins
    (weight_norm parametrization, nn.MultiheadAttention) rather than our modules."""
    conv = parse_conv_layers(args.conv_feature_layers)
    x = wav[:, None]
    for i, (c, _, stride) in enumerate(conv):
        x = F.conv1d(x, sd[f"feature_extractor.conv_layers.{i}.0.weight"], stride=stride)
        if i == 0:
            x = F.group_norm(x, c, sd["feature_extractor.conv_layers.0.2.weight"], sd["feature_extractor.conv_layers.0.2.bias"])
        x = F.gelu(x)
    x = F.layer_norm(x.transpose(1, 2), (conv[-1][0],), sd["layer_norm.weight"], sd["layer_norm.bias"])
    x = F.linear(x, sd["post_extract_proj.weight"], sd["post_extract_proj.bias"])
    d, k = args.encoder_embed_dim, args.conv_pos
    pos = nn.utils.parametrizations.weight_norm(nn.Conv1d(d, d, k, padding=k // 2, groups=args.conv_pos_groups), dim=2)
    with torch.no_grad():
        pos.parametrizations.weight.original0.copy_(sd["encoder.pos_conv.0.weight_g"])
        pos.parametrizations.weight.original1.copy_(sd["encoder.pos_conv.0.weight_v"])
        pos.bias.copy_(sd["encoder.pos_conv.0.bias"])
    x = x + F.gelu(pos(x.transpose(1, 2))[:, :, :-1]).transpose(1, 2)

    def ln(prefix: str, y: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(y, (d,), sd[prefix + ".weight"], sd[prefix + ".bias"])

    x = ln("encoder.layer_norm", x)
    for i in range(args.encoder_layers):
        p = f"encoder.layers.{i}."
        mha = nn.MultiheadAttention(d, args.encoder_attention_heads, batch_first=True)
        with torch.no_grad():
            mha.in_proj_weight.copy_(torch.cat([sd[p + f"self_attn.{n}_proj.weight"] for n in "qkv"]))
            mha.in_proj_bias.copy_(torch.cat([sd[p + f"self_attn.{n}_proj.bias"] for n in "qkv"]))
            mha.out_proj.weight.copy_(sd[p + "self_attn.out_proj.weight"])
            mha.out_proj.bias.copy_(sd[p + "self_attn.out_proj.bias"])
        x = ln(p + "self_attn_layer_norm", x + mha(x, x, x, need_weights=False)[0])
        h = F.gelu(F.linear(x, sd[p + "fc1.weight"], sd[p + "fc1.bias"]))
        x = ln(p + "final_layer_norm", x + F.linear(h, sd[p + "fc2.weight"], sd[p + "fc2.bias"]))
    return x


def test_matches_reference_math(tiny: ContentVec) -> None:
    x = audio(12345, seed=3)
    with torch.no_grad():
        ref = reference_forward(fairseq_state_dict("tiny"), fairseq_args("tiny"), x)
        out = tiny(x)
    assert rel_l2(out, ref) < 1e-5


def test_frame_count_formula(tiny: ContentVec) -> None:
    for n in [400, 401, 719, 720, 721, 1039, 1040, 16000, 24000, 48000 + 17]:
        expected = (n - 400) // 320 + 1
        assert tiny.num_frames(n) == expected
        with torch.no_grad():
            assert tiny.feature_extractor(audio(n)).shape[-1] == expected, n
    assert tiny.num_frames(399) == 0 and tiny.num_frames(0) == 0
    with pytest.raises(ValueError, match="at least 400 samples"):
        tiny(audio(399))
    with pytest.raises(ValueError, match=r"\[B, N\]"):
        tiny(torch.zeros(16000))


def test_bad_checkpoints_give_clear_errors(tmp_path: Path) -> None:
    ckpt = fairseq_checkpoint("tiny")
    key = "encoder.layers.1.fc2.weight"
    ckpt["model"][key] = ckpt["model"][key][:, :-1]
    ckpt["args"].encoder_ffn_embed_dim = None  # leave the shape check to name the tensor
    ckpt["cfg"]["model"]["encoder_ffn_embed_dim"] = None
    with pytest.raises(CheckpointError, match=rf"{key}.*\(64, 127\).*\(64, 128\)"):
        ContentVec.from_fairseq(ckpt)

    ckpt = fairseq_checkpoint("tiny")
    ckpt["args"].encoder_layers = ckpt["cfg"]["model"]["encoder_layers"] = 3
    with pytest.raises(CheckpointError, match="num_layers=3 but the tensors give 2"):
        ContentVec.from_fairseq(ckpt)

    ckpt = fairseq_checkpoint("tiny")
    ckpt["model"]["encoder.layers.0.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="unexpected keys.*extra"):
        ContentVec.from_fairseq(ckpt)

    ckpt = fairseq_checkpoint("tiny")
    del ckpt["model"]["encoder.layers.1.final_layer_norm.bias"]
    with pytest.raises(CheckpointError, match="missing.*final_layer_norm.bias"):
        ContentVec.from_fairseq(ckpt)

    hf = fairseq_to_hf(fairseq_state_dict("tiny"))
    with pytest.raises(CheckpointError, match="do_stable_layer_norm"):
        ContentVec.from_hf(hf, {**hf_config("tiny"), "do_stable_layer_norm": True})
    with pytest.raises(CheckpointError, match="not found"):
        load_content_encoder(tmp_path / "nope.pt")


def _independent_parameter_count(sd: dict[str, torch.Tensor]) -> int:
    """From the checkpoint's shapes: everything except the unused heads, with the weight-normed
    pos_conv counted as one plain weight (weight_v's shape)."""
    skip = set(FAIRSEQ_UNUSED) | {"encoder.pos_conv.0.weight_g"}
    return sum(v.numel() for k, v in sd.items() if k not in skip)


@pytest.fixture(scope="module")
def full_checkpoint() -> dict:
    return fairseq_checkpoint("full")


def test_full_size_hubert_base(full_checkpoint: dict) -> None:
    model = ContentVec.from_fairseq(full_checkpoint)
    assert model.config == ContentVecConfig()  # HuBERT-Base defaults
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == _independent_parameter_count(full_checkpoint["model"])
    # Layer-wise closed form for HuBERT-Base: convs + GN + LN + proj + pos_conv + LN + 12 layers.
    conv = 512 * 10 + 4 * 512 * 512 * 3 + 2 * 512 * 512 * 2
    layer = 4 * (768 * 768 + 768) + (768 * 3072 + 3072) + (3072 * 768 + 768) + 2 * 2 * 768
    closed = conv + 2 * 512 + 2 * 512 + (512 * 768 + 768) + (768 * 48 * 128 + 768) + 2 * 768 + 12 * layer
    assert n_params == closed
    assert 94.3e6 < n_params < 94.45e6
    with torch.no_grad():
        assert model(audio(4000)).shape == (1, 12, 768)


def test_full_size_without_config_uses_shapes(full_checkpoint: dict) -> None:
    bare = {"model": full_checkpoint["model"], "args": None, "cfg": None}
    assert ContentVec.from_fairseq(bare).config == ContentVecConfig()


def test_safetensors_hf_file(tmp_path: Path, tiny: ContentVec) -> None:
    """A transformers model.safetensors (written here by hand from the format spec) loads the same."""
    sd = fairseq_to_hf(fairseq_state_dict("tiny"), parametrizations=True)
    header, blobs, offset = {}, [], 0
    for key, value in sd.items():
        raw = value.contiguous().numpy().astype("<f4").tobytes()
        header[key] = {"dtype": "F32", "shape": list(value.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps({"__metadata__": {"format": "pt"}, **header}).encode()
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))
    (tmp_path / "config.json").write_text(json.dumps(hf_config("tiny")))
    model = load_content_encoder(tmp_path)
    x = audio(8000)
    with torch.no_grad():
        torch.testing.assert_close(model(x), tiny(x), rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------- ONNX export


def export_content_onnx(model: nn.Module, path: Path, n_trace: int = 8000) -> None:
    """The export call the voice-pack exporter uses for content.onnx (TorchScript exporter)."""
    torch.onnx.export(
        model, (torch.zeros(1, n_trace),), str(path), dynamo=False, opset_version=17,
        input_names=["audio"], output_names=["units"],
        dynamic_axes={"audio": {1: "n_samples"}, "units": {1: "n_frames"}})


def _ppg_with_stats(config: PPGConfig, seed: int = 0) -> PPGEncoder:
    """Random PPG encoder with non-trivial BatchNorm running statistics, in eval mode."""
    torch.manual_seed(seed)
    model = PPGEncoder(config)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("which", ["contentvec", "ppg"])
def test_onnx_export_parity(tmp_path: Path, tiny: ContentVec, which: str) -> None:
    model = tiny if which == "contentvec" else _ppg_with_stats(PPGConfig(channels=32))
    path = tmp_path / "content.onnx"
    export_content_onnx(model, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (400, 5000, 23456):  # none equal to the traced length
        x = audio(n, seed=n)
        got = session.run(["units"], {"audio": x.numpy()})[0]
        with torch.no_grad():
            want = model(x).numpy()
        assert got.shape == want.shape == (1, (n - 400) // 320 + 1, model.width)
        assert rel_l2(got, want) < 1e-4, (which, n)


# ---------------------------------------------------------------------------------------------- PPG


def test_ppg_shapes_and_receptive_field() -> None:
    model = _ppg_with_stats(PPGConfig(channels=16, kernels=(3, 5, 3), dilations=(1, 2, 3), width=12))
    assert model.kind == "ppg" and model.width == 12
    assert model.receptive_field == (1 + 4 + 3, 1 + 4 + 3)
    with torch.no_grad():
        y = model(audio(16000 + 77, batch=2))
    assert y.shape == (2, model.num_frames(16077), 12)
    torch.testing.assert_close(y.exp().sum(-1), torch.ones(2, y.shape[1]))  # log posteriors
    with pytest.raises(ValueError, match="odd"):
        PPGConfig(kernels=(4,), dilations=(1,))


def test_ppg_chunk_exact() -> None:
    model = _ppg_with_stats(PPGConfig(channels=32, kernels=(3, 5, 3), dilations=(1, 2, 1)))
    left, right = model.receptive_field
    x = audio(16000 * 3, seed=5)
    with torch.no_grad():
        full = model(x)[0]
        n = full.shape[0]
        for j0, j1 in [(0, 5), (3, 20), (37, 80), (100, n - 1), (n - 3, n - 1)]:
            a, b = max(j0 - left, 0), min(j1 + right, n - 1)
            chunk = model(x[:, 320 * a: 320 * b + 400])[0]
            torch.testing.assert_close(chunk[j0 - a: j1 - a + 1], full[j0: j1 + 1], rtol=0, atol=2e-5)
        # The receptive field is tight: one frame less of left context changes the first frame kept.
        j0, j1 = 50, 60
        chunk = model(x[:, 320 * (j0 - left + 1): 320 * (j1 + right) + 400])[0]
        assert (chunk[left - 1] - full[j0]).abs().max() > 1e-3


def test_ppg_save_load_roundtrip(tmp_path: Path) -> None:
    model = _ppg_with_stats(PPGConfig(channels=24, kernels=(3, 3), dilations=(1, 2), posteriors=False, width=8))
    path = tmp_path / "ppg.pt"
    model.save(path)
    loaded = load_content_encoder(path)
    assert isinstance(loaded, PPGEncoder) and loaded.config == model.config and not loaded.training
    x = audio(9000)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    bad = model.checkpoint()
    bad["config"]["channels"] = 25
    with pytest.raises(CheckpointError, match="shape"):
        PPGEncoder.from_checkpoint(bad)
    bad = model.checkpoint()
    bad["config"]["mystery"] = 1
    with pytest.raises(CheckpointError, match="unknown keys"):
        PPGEncoder.from_checkpoint(bad)


# -------------------------------------------------------------------------------------------- align


def _left_reference(content: torch.Tensor, target_len: int) -> torch.Tensor:
    """so-vits-svc `repeat_expand_2d_left`, transcribed literally: content [C, T_c] -> [C, T_mel]."""
    src_len = content.shape[-1]
    target = torch.zeros([content.shape[0], target_len], dtype=torch.float)
    temp = torch.arange(src_len + 1) * target_len / src_len
    current_pos = 0
    for i in range(target_len):
        if i < temp[current_pos + 1]:
            target[:, i] = content[:, current_pos]
        else:
            current_pos += 1
            target[:, i] = content[:, current_pos]
    return target


def test_align_nearest_is_f_interpolate() -> None:
    rng = np.random.default_rng(0)
    pairs = [(t, m) for t in range(1, 60) for m in range(1, 240, 5)]
    for seconds in rng.uniform(0.1, 600, size=200):  # realistic file lengths, as the pipeline makes them
        n24 = int(seconds * 24000)
        pairs.append(((int(seconds * 16000) - 400) // 320 + 1, n24 // 128))
    for t_c, t_mel in pairs:
        if t_c < 1:
            continue
        units = torch.arange(t_c, dtype=torch.float32)[None, :, None].expand(2, t_c, 3)
        got = align_units(units, t_mel, "nearest")
        assert torch.equal(got, interpolate_nearest(units, t_mel)), (t_c, t_mel)


def test_align_left_matches_so_vits_loop() -> None:
    # Includes fewer mel than content frames (30 -> 17), where the official loop lags; we follow it.
    for t_c, t_mel in [(1, 1), (1, 7), (5, 19), (49, 187), (100, 375), (187, 701), (10, 10), (12, 20), (30, 17)]:
        content = torch.randn(3, t_c)
        got = align_units(content.T[None], t_mel, "left")[0].T
        torch.testing.assert_close(got, _left_reference(content, t_mel), rtol=0, atol=0)
    # The fast path (>= 2 mel per content frame) against the loop on a long file.
    content = torch.randn(2, 1500)
    torch.testing.assert_close(align_units(content.T[None], 5625, "left")[0].T, _left_reference(content, 5625),
                               rtol=0, atol=0)
    with pytest.raises(ValueError, match="mode"):
        align_units(torch.zeros(1, 3, 2), 10, "linear")


def test_position_locked_content_index() -> None:
    i = np.arange(0, 200000, 7)
    expected = [math.floor(Fraction(int(k) * 128, 24000) * 50) for k in i]
    assert content_index_for_mel_frames(i).tolist() == expected
    assert content_index_for_mel_frames(torch.from_numpy(i)).tolist() == expected
    assert content_index_for_mel_frames(15) == 4 and content_index_for_mel_frames(14) == 3
    assert content_index_for_mel_frames(np.array([0, 1000]), n_content_frames=100).tolist() == [0, 99]
    assert content_index_for_mel_frames(1000, n_content_frames=100) == 99
    with pytest.raises(TypeError):
        content_index_for_mel_frames(np.array([1.5]))
    # It is the long-file limit of the 'nearest' rule: within one content frame of it, for 60 s.
    n24 = 60 * 24000
    t_mel, t_c = n24 // 128, (60 * 16000 - 400) // 320 + 1
    nearest = align_units(torch.arange(t_c, dtype=torch.float32)[None, :, None], t_mel)[0, :, 0].long()
    locked = content_index_for_mel_frames(torch.arange(t_mel), t_c)
    assert (nearest - locked).abs().max() <= 1


# ---- encoders on the mel grid (the PPG's "mel" framing) ------------------------------------------

MEL_FRAMED = PPGConfig(width=8, channels=8, kernels=(3,), dilations=(1,), framing="mel")


def test_mel_rate_alignment_is_the_identity() -> None:
    units = torch.randn(2, 50, 3)
    for t_mel in (50, 47, 1):  # the encoder may give a frame more than the mel (N % 128 >= 64): dropped
        for mode in ("nearest", "left"):
            assert torch.equal(align_units(units, t_mel, mode, content_rate=(128, 24000)), units[:, :t_mel])
    longer = align_units(units, 53, content_rate=(128, 24000))  # short content: its last frame repeats
    assert torch.equal(longer[:, :50], units) and torch.equal(longer[:, 50:], units[:, 49:].expand(2, 3, 3))
    i = np.arange(0, 100000, 13)
    assert content_index_for_mel_frames(i, content_rate=(128, 24000)).tolist() == i.tolist()
    assert content_index_for_mel_frames(torch.arange(5), 3, content_rate=(128, 24000)).tolist() == [0, 1, 2, 2, 2]
    # ContentVec's rate stays the default and unchanged
    assert content_index_for_mel_frames(15, content_rate=(320, 16000)) == content_index_for_mel_frames(15) == 4
    assert torch.equal(align_units(units, 187, content_rate=(320, 16000)), align_units(units, 187))


def test_encoder_input_puts_mel_frame_j_at_content_frame_j(tiny: ContentVec) -> None:
    import soxr

    enc = PPGEncoder(MEL_FRAMED).eval()
    assert enc.frame_rate == (128, 24000)
    wav = audio(128 * 40)[0].numpy()
    x = enc.encoder_input(wav)
    np.testing.assert_array_equal(x, np.pad(wav, (448, 0)))  # no resampling at 24 kHz, 448 zeros in front
    assert enc.num_frames(len(x)) == 40  # one content frame per mel frame
    with torch.no_grad():
        units = enc(torch.from_numpy(x)[None])[0]
        # frame j's window ends at stream sample 128 j + 64; it sees one frame ahead (kernel 3): up to 128 (j + 1) + 64
        j = 20

        def frame_j_after(sample: int) -> torch.Tensor:
            y = wav.copy()
            y[sample] += 0.5
            return enc(torch.from_numpy(enc.encoder_input(y))[None])[0, j]

        assert torch.allclose(frame_j_after(128 * (j + 1) + 64), units[j], atol=1e-6)
        assert not torch.allclose(frame_j_after(128 * (j + 1) + 32), units[j], atol=1e-6)  # (Hann: ~0 at the very end)
    assert enc.encoder_input(wav[:10]).shape == (512,)  # at least one window
    # ContentVec's framing: 16 kHz soxr HQ as before, no zeros in front
    np.testing.assert_array_equal(tiny.encoder_input(wav), soxr.resample(wav, 24000, 16000, quality="HQ"))


def test_labelled_sample_is_the_window_centre_or_the_mel_frames_position() -> None:
    frames = np.arange(4)
    contentvec = PPGEncoder(PPGConfig(width=8, channels=8, kernels=(3,), dilations=(1,)))
    np.testing.assert_array_equal(contentvec.labelled_samples(frames), 320 * frames + 200)  # window centre
    mel = PPGEncoder(MEL_FRAMED)
    # input sample hop j + window - 64 = stream sample 128 j once stream_input's 448 zeros are in front
    np.testing.assert_array_equal(mel.labelled_samples(frames), 128 * frames + 448)
    np.testing.assert_array_equal(mel.labelled_samples(frames) + mel.offset, 128 * frames)
