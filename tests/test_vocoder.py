"""NSF-HiFiGAN (models.vocoder, models.nsf_source): loading, shapes, streaming, receptive field, ONNX."""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from models.checkpoints import CheckpointError, safe_load
from models.nsf_source import HarmonicSource, advance_phase
from models.vocoder import (NSFHiFiGAN, StreamingVocoder, VocoderConfig, VocoderConfigError,
                            fold_weight_norm, load_vocoder, to_checkpoint_state)
from tests.fixtures.vocoder import random_checkpoint_state, vocoder_config, write_vocoder

HOP = 128
SR = 24000


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def rel_l2(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """‖a − b‖ / ‖b − mean(b)‖: relative to the signal's variation, so a DC offset cannot hide errors
    (stricter than plain relative L2)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b - b.mean()))


def cycle_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest distance between phases in cycles, modulo 1."""
    d = (a.double() - b.double()) % 1.0
    return float(torch.minimum(d, 1.0 - d).max())


def vocoder_inputs(frames: int, seed: int = 0, harmonics: int = 9):
    """A plausible log10 mel, a gliding f0 with an unvoiced gap, random phase and noise."""
    g = torch.Generator().manual_seed(seed)
    mel = -4.0 + 1.5 * torch.randn(1, frames, 80, generator=g)
    t = torch.arange(frames, dtype=torch.float64)
    f0 = (220.0 * 2.0 ** (torch.sin(t / 17.0) * 0.8) + 3.0 * torch.rand(frames, generator=g, dtype=torch.float64))
    f0 = f0.float()[None]
    f0[:, frames // 3: frames // 3 + max(1, frames // 10)] = 0.0
    phase = torch.rand(1, harmonics, generator=g)
    noise = torch.randn(1, frames * HOP, harmonics, generator=g)
    return mel, f0, phase, noise


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, NSFHiFiGAN]:
    root = tmp_path_factory.mktemp("vocoders")
    return {layout: load_vocoder(write_vocoder(root / layout, layout, "tiny", seed=3)) for layout in
            ("m4singer", "openvpi")}


# ---------------------------------------------------------------- weight norm, counts, loading
def test_fold_matches_torch_weight_norm():
    torch.manual_seed(0)
    convs = {"a": torch.nn.Conv1d(6, 4, 5), "b": torch.nn.ConvTranspose1d(8, 4, 16, 8, padding=4)}
    state = {}
    for name, conv in convs.items():
        torch.nn.utils.parametrizations.weight_norm(conv)
        with torch.no_grad():
            conv.parametrizations.weight.original0.mul_(torch.rand_like(conv.parametrizations.weight.original0) + 0.5)
        state.update({f"{name}.{k}": v for k, v in conv.state_dict().items()})
    folded, origin = fold_weight_norm(state)
    for name, conv in convs.items():
        torch.testing.assert_close(folded[f"{name}.weight"], conv.weight.detach(), rtol=1e-6, atol=1e-7)
        assert origin[f"{name}.weight"] == f"{name}.parametrizations.weight.original1"
    # the legacy weight_g / weight_v names round-trip through to_checkpoint_state
    model = NSFHiFiGAN(vocoder_config("m4singer", "tiny"))
    ck = to_checkpoint_state(model)
    refolded, _ = fold_weight_norm(ck)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(refolded[key], value, rtol=1e-6, atol=1e-7)


def test_full_m4singer_layout_counts():
    state = random_checkpoint_state(vocoder_config("m4singer", "full"))
    assert len(state) == 244
    assert sum(v.numel() for v in state.values()) == 13_683_980
    assert tuple(state["ups.0.weight_v"].shape) == (512, 256, 16)
    assert tuple(state["ups.0.weight_g"].shape) == (512, 1, 1)
    assert tuple(state["noise_convs.0.weight"].shape) == (256, 1, 32)
    assert tuple(state["noise_convs.3.weight"].shape) == (32, 1, 1)
    assert tuple(state["resblocks.11.convs2.2.weight_v"].shape) == (32, 32, 11)
    assert tuple(state["m_source.l_linear.weight"].shape) == (1, 9)


@pytest.mark.parametrize("layout,size", [("m4singer", "tiny"), ("openvpi", "tiny"), ("m4singer", "full")])
def test_layouts_load_strictly(tmp_path, layout, size):
    path = write_vocoder(tmp_path, layout, size, seed=1)
    model = load_vocoder(path)
    assert model.layout == layout and not model.training
    raw = safe_load(path)
    state = raw["state_dict"]["model_gen"] if layout == "m4singer" else raw["generator"]
    own = model.state_dict()
    # every checkpoint tensor was used: each weight_g/weight_v pair became one weight, nothing else
    n_pairs = sum(k.endswith(".weight_g") for k in state)
    assert len(own) == len(state) - n_pairs
    g, v = state["ups.1.weight_g"], state["ups.1.weight_v"]
    torch.testing.assert_close(own["ups.1.weight"], g * v / v.norm(dim=(1, 2), keepdim=True))
    torch.testing.assert_close(own["noise_convs.0.weight"], state["noise_convs.0.weight"])
    assert not any("weight_g" in k or "parametrizations" in k for k in own)
    with torch.no_grad():
        wav = model(*vocoder_inputs(5)[:2])
    assert wav.shape == (1, 5 * HOP) and torch.isfinite(wav).all() and wav.std() > 1e-4


def reference_generator(state: dict, config: VocoderConfig, mel: torch.Tensor,
                        excitation: torch.Tensor) -> torch.Tensor:
    """The official generator forward (spec §8) restated functionally on the raw checkpoint tensors
    (weight norm applied with torch's own kernel) — an independent oracle for the module."""
    F = torch.nn.functional

    def weight(name: str) -> torch.Tensor:
        return torch._weight_norm(state[name + ".weight_v"], state[name + ".weight_g"], 0)

    rates, n_k = config.upsample_rates, len(config.resblock_kernel_sizes)
    x = mel.transpose(1, 2) * (math.log(10.0) if config.layout == "openvpi" else 1.0)
    x = F.conv1d(x, weight("conv_pre"), state["conv_pre.bias"], padding=3)
    for i, (u, k) in enumerate(zip(rates, config.upsample_kernel_sizes)):
        x = F.conv_transpose1d(F.leaky_relu(x, 0.1), weight(f"ups.{i}"), state[f"ups.{i}.bias"], stride=u,
                               padding=(k - u) // 2)
        s = math.prod(rates[i + 1:])
        src = F.conv1d(excitation, state[f"noise_convs.{i}.weight"], state[f"noise_convs.{i}.bias"], stride=s,
                       padding=s // 2 if i + 1 < len(rates) else 0)
        if config.layout == "m4singer":
            src = F.layer_norm(F.relu(src).transpose(1, -1), (src.shape[1],)).transpose(1, -1)
        x = x + src
        total = 0
        for j, (rk, dil) in enumerate(zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes)):
            y, name = x, f"resblocks.{i * n_k + j}"
            for m, d in enumerate(dil):
                t = F.conv1d(F.leaky_relu(y, 0.1), weight(f"{name}.convs1.{m}"), state[f"{name}.convs1.{m}.bias"],
                             dilation=d, padding=d * (rk - 1) // 2)
                t = F.conv1d(F.leaky_relu(t, 0.1), weight(f"{name}.convs2.{m}"), state[f"{name}.convs2.{m}.bias"],
                             padding=(rk - 1) // 2)
                y = y + t
            total = total + y
        x = total / n_k
    x = F.conv1d(F.leaky_relu(x), weight("conv_post"), state["conv_post.bias"], padding=3)
    return torch.tanh(x)[:, 0]


@pytest.mark.parametrize("layout", ["m4singer", "openvpi"])
def test_generator_matches_official_forward(tmp_path, layout):
    path = write_vocoder(tmp_path, layout, seed=11)
    model = load_vocoder(path)
    raw = safe_load(path)
    state = raw["state_dict"]["model_gen"] if layout == "m4singer" else raw["generator"]
    mel, f0, phase, noise = vocoder_inputs(40, seed=12)
    with torch.no_grad():
        wav = model(mel, f0, phase, noise)
        excitation, _ = model.m_source(f0, phase, noise)
        ref = reference_generator(state, model.config, mel, excitation)
    assert rel_l2(wav, ref) < 1e-5


def test_layouts_differ_as_specified(tiny):
    """Same weights, two layouts: openvpi scales the mel by ln 10 and skips ReLU+LayerNorm."""
    m4, ov = tiny["m4singer"], tiny["openvpi"]
    assert m4.mel_scale == 1.0 and ov.mel_scale == pytest.approx(math.log(10.0))
    assert m4.norm_source and not ov.norm_source
    twin = NSFHiFiGAN(VocoderConfig(**{**vars(m4.config), "layout": "openvpi", "source": "x"}))
    twin.load_state_dict(m4.state_dict())
    mel, f0, phase, noise = vocoder_inputs(12)
    with torch.no_grad():
        assert rel_l2(twin(mel / math.log(10.0), f0, phase, noise), m4(mel, f0, phase, noise)) > 1e-2


def test_not_a_vocoder_checkpoint(tmp_path):
    torch.save({"model": {"x": torch.zeros(1)}}, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="not a vocoder checkpoint"):
        load_vocoder(tmp_path / "m.pt")


def test_missing_config_file(tmp_path):
    path = write_vocoder(tmp_path, "openvpi")
    (tmp_path / "config.json").unlink()
    with pytest.raises(VocoderConfigError, match="config.json"):
        load_vocoder(path)
    raw = vocoder_config("openvpi").to_dict()
    del raw["upsample_rates"]
    (tmp_path / "c.json").write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(VocoderConfigError, match="missing key 'upsample_rates'"):
        load_vocoder(path, tmp_path / "c.json")


@pytest.mark.parametrize("layout,override,key,expected,found", [
    ("m4singer", {"upsample_kernel_sizes": [16, 8, 6, 2]}, "ups.2.weight_v", "[8, 4, 6]", "[8, 4, 4]"),
    ("openvpi", {"upsample_rates": [4, 8, 2, 2]}, "noise_convs.0.weight", "[16, 1, 64]", "[16, 1, 32]"),
    ("m4singer", {"resblock_kernel_sizes": [3, 5, 11]}, "resblocks.1.convs1.0.weight_v", "[16, 16, 5]",
     "[16, 16, 7]"),
    ("openvpi", {"num_mels": 100}, "conv_pre.weight_v", "[32, 100, 7]", "[32, 80, 7]"),
    ("m4singer", {"upsample_initial_channel": 64}, "conv_pre.weight_v", "[64, 80, 7]", "[32, 80, 7]"),
])
def test_config_shape_mismatch_is_named(tmp_path, layout, override, key, expected, found):
    path = write_vocoder(tmp_path, layout, config_overrides=override)
    with pytest.raises(VocoderConfigError) as err:
        load_vocoder(path, check_audio=False)
    message = str(err.value)
    assert f"'{key}'" in message and f"has shape {found}" in message and f"implies {expected}" in message
    assert next(iter(override)) in message  # names the config key responsible


def test_structure_mismatch_errors(tmp_path):
    with pytest.raises(VocoderConfigError, match=r"has 4 upsampling stages.*has 3 entries \[8, 8, 2\]"):
        load_vocoder(write_vocoder(tmp_path / "a", config_overrides={
            "upsample_rates": [8, 8, 2], "upsample_kernel_sizes": [16, 16, 4]}), check_audio=False)
    with pytest.raises(VocoderConfigError, match="resblock '1' weights.*'2'"):
        load_vocoder(write_vocoder(tmp_path / "b", "openvpi", config_overrides={"resblock": "2"}))
    model = NSFHiFiGAN(vocoder_config("m4singer"))
    state = to_checkpoint_state(model)
    del state["conv_post.bias"]
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(VocoderConfigError, match=r"missing \['conv_post.bias'\], unexpected \['extra.weight'\]"):
        model.load_checkpoint_state(state)


def test_config_validation():
    with pytest.raises(VocoderConfigError, match="product of upsample_rates.*hop_size is 256"):
        vocoder_config(hop_size=256).validate()
    with pytest.raises(VocoderConfigError, match=r"upsample_kernel_sizes\[0\]=15"):
        vocoder_config(upsample_kernel_sizes=(15, 8, 4, 4)).validate()
    with pytest.raises(VocoderConfigError, match="use_pitch_embed"):
        VocoderConfig.from_dict("m4singer", {**vocoder_config().to_dict(), "use_pitch_embed": False})


def test_audio_check(tmp_path):
    path = write_vocoder(tmp_path, "m4singer", config_overrides={"audio_sample_rate": 44100})
    with pytest.raises(VocoderConfigError, match=r"audio_sample_rate=44100 \(need 24000\)"):
        load_vocoder(path)
    assert load_vocoder(path, check_audio=False).sample_rate == 44100
    raw = yaml.safe_load((tmp_path / "config.yaml").read_text())
    raw.update(audio_sample_rate=24000, audio_num_mel_bins=128, fmin=40)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(VocoderConfigError, match=r"audio_num_mel_bins=128 \(need 80\)"):
        load_vocoder(path)
    raw.update(audio_num_mel_bins=80)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    with pytest.warns(UserWarning, match="fmin"):
        load_vocoder(path)
    with pytest.raises(VocoderConfigError, match="sampling_rate=24000 \\(need 44100\\)"):
        load_vocoder(write_vocoder(tmp_path / "o", "openvpi")).check_audio(44100, 128, 80)


def test_bad_inputs_are_named(tiny):
    model = tiny["m4singer"]
    mel, f0, phase, noise = vocoder_inputs(4)
    with pytest.raises(ValueError, match=r"f0 must have shape \[1, 4\]"):
        model(mel, f0[:, :3])
    with pytest.raises(ValueError, match=r"mel must be \[B, T, 80\]"):
        model(mel[..., :40], f0)
    with pytest.raises(ValueError, match=r"noise must have shape \[1, 512, 9\]"):
        model.forward_stream(mel, f0, phase, noise[:, :500])


# ---------------------------------------------------------------- harmonic source
def float32_rate(source: HarmonicSource, f0: torch.Tensor) -> torch.Tensor:
    """[B, T, 9] cycles per sample, k·f0/sr rounded to float32 as the source computes it, in float64."""
    return (f0[:, :, None] * source.cycles_per_hz).double()


def official_excitation(source: HarmonicSource, f0: torch.Tensor, phase: torch.Tensor, noise: torch.Tensor):
    """The official SineGen/SourceModuleHnNSF arithmetic in float64: nearest-upsampled f0, inclusive
    sample-level cumsum of (k·f0/sr mod 1) plus the initial phase, sines·uv + amp·noise, l_linear, tanh.

    The per-sample step k·f0/sr is taken as float32 computes it: its rounding (≤ 1.2e-7 relative, a
    0.0002-cent frequency offset) is a property of float32 inputs, not of the phase accumulation tested."""
    f = float32_rate(source, f0).repeat_interleave(HOP, dim=1)
    phases = phase.double()[:, None, :] + torch.cumsum(f % 1.0, dim=1)
    uv = (f0.double() > 0).double().repeat_interleave(HOP, dim=1)[:, :, None]
    mixed = 0.1 * torch.sin(2 * math.pi * phases) * uv + (uv * 0.003 + (1 - uv) * 0.1 / 3) * noise.double()
    w, b = source.l_linear.weight.double(), source.l_linear.bias.double()
    return torch.tanh(mixed @ w.T + b).transpose(1, 2), phases[:, -1] % 1.0


def test_source_equals_official_form():
    torch.manual_seed(0)
    source = HarmonicSource(SR, HOP)
    _, f0, phase, noise = vocoder_inputs(300, seed=2)
    f0[:, 5] = 7000.0  # upper harmonics above Nyquist and above sr: the "% 1" of the official code
    with torch.no_grad():
        exc, phase_out = source(f0, phase, noise)
        ref, ref_out = official_excitation(source, f0, phase, noise)
    assert exc.shape == (1, 1, 300 * HOP)
    assert float((exc.double() - ref).abs().max()) < 2e-6
    assert cycle_distance(phase_out, ref_out) < 1e-6
    # and against exact k·f0/sr: only the float32 frequency rounding (≤ 1.2e-7 relative) remains
    exact = phase.double() + f0.double().sum(1, keepdim=True) * torch.arange(1, 10, dtype=torch.float64) * HOP / SR
    assert cycle_distance(phase_out, exact % 1.0) < 1.2e-7 * float(exact.max()) + 1e-6


def test_source_phase_is_precise_over_long_inputs():
    """20000 frames (107 s): per-sample phase stays within 1e-5 cycles of a float64 reference."""
    torch.manual_seed(0)
    source = HarmonicSource(SR, HOP)
    frames = 20000
    f0 = (300.0 + 200.0 * torch.sin(torch.arange(frames) / 50.0) + torch.rand(frames))[None].float()
    phase = torch.rand(1, 9)
    ph, phase_out = source.phases(f0, phase)
    rate = float32_rate(source, f0)  # cycles per sample (see official_excitation)
    per_frame = torch.cumsum(rate * HOP, dim=1) + phase.double()[:, None]
    assert cycle_distance(phase_out, per_frame[:, -1]) < 2e-6
    # the first and last sample of every frame
    first = torch.cat([phase.double()[:, None], per_frame[:, :-1]], 1) + rate
    assert cycle_distance(ph[:, :, 0, :], first) < 1e-5
    assert cycle_distance(ph[:, :, -1, :], per_frame) < 1e-5
    # the naive float32 sample-level cumsum is far off here, which is what this guards against
    naive = torch.cumsum((f0.repeat_interleave(HOP, 1)[:, :, None] * source.cycles_per_hz) % 1.0, dim=1)
    assert cycle_distance(naive[:, -1] + phase, per_frame[:, -1]) > 1e-2


def test_source_halves_with_carried_phase_equal_whole():
    torch.manual_seed(0)
    source = HarmonicSource(SR, HOP)
    _, f0, phase, noise = vocoder_inputs(101, seed=4)
    cut = 37
    with torch.no_grad():
        whole, out = source(f0, phase, noise)
        first, mid = source(f0[:, :cut], phase, noise[:, :cut * HOP])
        second, out2 = source(f0[:, cut:], mid, noise[:, cut * HOP:])
    torch.testing.assert_close(torch.cat([first, second], 2), whole, rtol=0, atol=2e-6)
    assert cycle_distance(out2, out) < 1e-6
    assert cycle_distance(advance_phase(phase, f0[:, :cut], HOP, SR), mid) < 1e-7
    # a wrong carried phase shows: the test can fail
    with torch.no_grad():
        wrong, _ = source(f0[:, cut:], torch.zeros_like(mid), noise[:, cut * HOP:])
    assert float((wrong - whole[:, :, cut * HOP:]).abs().max()) > 1e-3


# ---------------------------------------------------------------- receptive field and streaming
def test_full_receptive_field():
    assert NSFHiFiGAN(vocoder_config("m4singer", "full")).receptive_field == (15, 15)


@pytest.mark.parametrize("layout,overrides", [
    ("m4singer", {}),
    ("openvpi", {"resblock": "2", "resblock_kernel_sizes": (3, 5), "resblock_dilation_sizes": ((1, 2), (2, 6)),
                 "upsample_rates": (4, 4, 8), "upsample_kernel_sizes": (8, 12, 16)}),
])
def test_receptive_field_matches_gradient(layout, overrides):
    """The computed field equals the set of mel frames with non-zero gradient (float64, random weights)."""
    torch.manual_seed(5)
    model = NSFHiFiGAN(vocoder_config(layout, "tiny", **overrides)).double()
    left, right = model.receptive_field
    frames, t = left + right + 21, left + 10
    mel, f0, phase, noise = (x.double() for x in vocoder_inputs(frames, seed=6))
    mel.requires_grad_(True)
    wav = model.forward_stream(mel, f0, phase, noise)[0]
    wav[0, t * HOP:(t + 1) * HOP].sum().backward()
    used = torch.nonzero(mel.grad[0].abs().sum(1) > 0).flatten()
    assert (int(used.min()), int(used.max())) == (t - left, t + right)


@pytest.mark.parametrize("layout", ["m4singer", "openvpi"])
def test_windows_with_context_equal_whole(tiny, layout):
    """Chunks run on [left ctx + chunk + right ctx] with the carried phase reproduce the whole output."""
    model = tiny[layout]
    left, right = model.receptive_field
    frames, chunk = 100, 25
    mel, f0, phase, noise = vocoder_inputs(frames, seed=7)

    def windowed(ctx_l: int, ctx_r: int) -> torch.Tensor:
        pieces = []
        for start in range(0, frames, chunk):
            a, b = max(0, start - ctx_l), min(frames, start + chunk + ctx_r)
            ph = advance_phase(phase, f0[:, :a], HOP, SR) if a else phase
            wav, _ = model.forward_stream(mel[:, a:b], f0[:, a:b], ph, noise[:, a * HOP:b * HOP])
            pieces.append(wav[:, (start - a) * HOP:(start - a + chunk) * HOP])
        return torch.cat(pieces, 1)

    with torch.no_grad():
        whole = model(mel, f0, phase, noise)
        assert rel_l2(windowed(left, right), whole) < 1e-4
        assert rel_l2(windowed(left + 3, right + 1), whole) < 1e-4
        assert rel_l2(windowed(2, 2), whole) > 1e-3  # too little context shows


# ---------------------------------------------------------------- ONNX
def export_vocoder(model: NSFHiFiGAN, path: Path) -> None:
    """The export call the voice-pack exporter can reuse (legacy TorchScript exporter, dynamic T)."""
    wrapper = StreamingVocoder(model).eval()
    torch.onnx.export(wrapper, wrapper.example_inputs(16), str(path), dynamo=False, opset_version=17,
                      input_names=list(wrapper.input_names), output_names=list(wrapper.output_names),
                      dynamic_axes=wrapper.dynamic_axes)


@pytest.mark.parametrize("layout,lengths", [("m4singer", (3, 57, 2000)), ("openvpi", (41,))])
def test_onnx_matches_torch(tiny, tmp_path, layout, lengths):
    ort = pytest.importorskip("onnxruntime")
    model = tiny[layout]
    path = tmp_path / "vocoder.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_vocoder(model, path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["mel", "f0", "phase", "noise"]
    for frames in lengths:
        mel, f0, phase, noise = vocoder_inputs(frames, seed=frames)
        with torch.no_grad():
            wav, phase_out = model.forward_stream(mel, f0, phase, noise)
        audio, ort_phase = session.run(None, {"mel": mel.numpy(), "f0": f0.numpy(), "phase": phase.numpy(),
                                              "noise": noise.numpy()})
        assert audio.shape == (1, frames * HOP)
        assert rel_l2(audio, wav) < 1e-4, frames
        assert cycle_distance(torch.from_numpy(ort_phase), phase_out) < 1e-6
