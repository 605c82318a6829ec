"""exporters.fcpe: FCPE as pitch.onnx — accuracy, frame convention, parity with torchfcpe, receptive field."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from engine.voicepack import NetworkSpec, TensorSpec, sha256_file
from exporters.fcpe import (TRACE_SAMPLES, FcpeParityError, check_fcpe_parity, export_fcpe, fcpe_frame_centres,
                            fcpe_num_frames, synthetic_voice, torchfcpe_reference)
from models.fcpe_graph import DftMel, FcpeGraph
from models.pitch import FcpePitch

SR = 16000


@pytest.fixture(scope="module")
def fcpe() -> FcpePitch:
    torch.set_num_threads(1)
    return FcpePitch()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("pack") / "pitch.onnx"
    return path, export_fcpe(path)


@pytest.fixture(scope="module")
def session(exported: tuple[Path, dict]) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(exported[0]), sess_options=opts, providers=["CPUExecutionProvider"])


def run(session: ort.InferenceSession, audio: np.ndarray) -> np.ndarray:
    (f0,) = session.run(["f0"], {"audio": np.asarray(audio, np.float32)[None, :]})
    assert f0.dtype == np.float32 and f0.shape == (1, fcpe_num_frames(len(audio)))
    return f0[0]


def cents(f0: np.ndarray, ref: np.ndarray | float) -> np.ndarray:
    return 1200.0 * np.log2(f0 / ref)


def test_manifest_entry(exported: tuple[Path, dict]) -> None:
    path, info = exported
    assert info["inputs"] == [{"name": "audio", "shape": [1, "samples"], "dtype": "float32"}]
    assert info["outputs"] == [{"name": "f0", "shape": [1, "frames"], "dtype": "float32"}]
    assert (info["sample_rate"], info["hop"]) == (16000, 160)
    assert info["sha256"] == sha256_file(path) and info["size"] == path.stat().st_size
    # conv_only model: no attention, but GroupNorm over time makes it unbounded
    assert info["receptive_field"] is None
    assert info["extra"]["conv_receptive_field"] == [92, 92]
    assert any("GroupNorm" in why for why in info["extra"]["unbounded_because"])
    spec = NetworkSpec(file=info["file"], sha256=info["sha256"], size=info["size"],
                       inputs=[TensorSpec(**t) for t in info["inputs"]],
                       outputs=[TensorSpec(**t) for t in info["outputs"]],
                       receptive_field=info["receptive_field"], frame_unit=info["frame_unit"])
    model = onnx.load(str(path))
    graph_in = [(i.name, [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]) for i in model.graph.input]
    graph_out = [(o.name, [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]) for o in model.graph.output]
    assert graph_in == [(t.name, t.shape) for t in spec.inputs]
    assert graph_out == [(t.name, t.shape) for t in spec.outputs]


@pytest.mark.parametrize("freq", [220.0, 660.0])
def test_tone_within_20_cents(session: ort.InferenceSession, freq: float) -> None:
    t = np.arange(SR) / SR
    f0 = run(session, 0.5 * np.sin(2 * np.pi * freq * t))
    inner = f0[6:-6]  # the tone starts/stops abruptly at the clip edges
    assert (inner > 0).all()
    assert np.abs(cents(inner, freq)).max() < 20


def test_glide_follows_frame_centres(session: ort.InferenceSession) -> None:
    """An exponential glide 150 -> 600 Hz: frame j must read the frequency at sample 160 j + 80."""
    n = 2 * SR
    rate = np.log2(600 / 150) / n  # octaves per sample
    k = np.arange(n)
    freq = 150 * 2.0 ** (rate * k)
    audio = 0.5 * np.sin(2 * np.pi * np.cumsum(freq) / SR)
    f0 = run(session, audio)
    j = np.arange(8, len(f0) - 8)
    assert (f0[j] > 0).all()

    def error(shift_frames: int) -> float:
        centre = fcpe_frame_centres(len(f0))[j] + 160 * shift_frames
        return float(np.median(np.abs(cents(f0[j], 150 * 2.0 ** (rate * centre)))))

    assert error(0) < 10
    assert error(0) < min(error(-2), error(2))  # the documented centre fits better than neighbours


def test_silence_is_unvoiced(session: ort.InferenceSession) -> None:
    assert (run(session, np.zeros(12000)) == 0).all()
    assert (run(session, 1e-5 * np.random.default_rng(0).standard_normal(12000)) == 0).all()


@pytest.mark.parametrize("n", [433, 7777, 12345, 33333])
def test_dynamic_lengths_match_torchfcpe(session: ort.InferenceSession, fcpe: FcpePitch, n: int) -> None:
    assert n != TRACE_SAMPLES
    audio = synthetic_voice(n, seed=n)
    f0 = run(session, audio).astype(np.float64)
    ref = torchfcpe_reference(fcpe, audio)["f0"]
    assert f0.shape == ref.shape == (n // 160 + 1,)
    voiced = (f0 > 0) & (ref > 0)
    assert ((f0 > 0) != (ref > 0)).sum() <= max(1, len(f0) // 100)
    if voiced.any():
        assert np.abs(cents(f0[voiced], ref[voiced])).max() < 1.0


def test_parity_report(exported: tuple[Path, dict]) -> None:
    report = check_fcpe_parity(exported[0])
    assert report["verified"] and report["voiced_frames"] > 100
    assert report["frames"] == sum(fcpe_num_frames(n) for n in report["lengths"])
    assert report["max_cents"] < 1.0 and report["voicing_flip_fraction"] <= 0.01
    assert report["mel_rel_l2"] < 1e-4 and report["latent_rel_l2"] < 1e-4


def test_parity_catches_a_wrong_graph(exported: tuple[Path, dict], tmp_path: Path) -> None:
    """The check must fail on a graph that is off by 2 cents."""
    model = onnx.load(str(exported[0]))
    out = model.graph.output[0]
    inner = "f0_unscaled"
    for node in model.graph.node:
        node.output[:] = [inner if o == out.name else o for o in node.output]
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.array(2 ** (2 / 1200), np.float32), "scale"))
    model.graph.node.append(onnx.helper.make_node("Mul", [inner, "scale"], [out.name]))
    bad = tmp_path / "pitch.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(FcpeParityError, match="cents"):
        check_fcpe_parity(bad, lengths=(16000,))


def _float64_mel(audio: np.ndarray, mel_basis: torch.Tensor) -> np.ndarray:
    """torchfcpe's mel computed in float64 (the exact value both float32 versions approximate)."""
    x = torch.from_numpy(audio.astype(np.float64))[None, None]
    x = nn.functional.pad(x, (432, 432), mode="reflect")[:, 0]
    spec = torch.stft(x, 1024, 160, 1024, torch.hann_window(1024, dtype=torch.float64), center=False,
                      return_complex=True)
    mel = torch.log(torch.clamp(mel_basis.double() @ torch.sqrt(spec.abs() ** 2 + 1e-9), min=1e-5))
    mel = mel.transpose(1, 2)
    return torch.cat([mel, mel[:, -1:]], 1)[0].numpy()


def test_dft_mel_equals_torchfcpe_mel(fcpe: FcpePitch) -> None:
    wav2mel = fcpe.module.wav2mel
    dft = DftMel.from_torchfcpe(wav2mel)
    for n in (433, 5000, 24001):
        audio = synthetic_voice(n, seed=1)
        x = torch.from_numpy(audio)[None]
        with torch.no_grad():
            mine = dft(x)[0].numpy()
            ref = wav2mel(x[..., None], SR)[0].numpy()
        assert mine.shape == ref.shape == (n // 160 + 1, 128)
        assert np.linalg.norm(mine - ref) / np.linalg.norm(ref) < 1e-5
        assert np.abs(mine - ref).max() < 1e-3
        # what max error remains is float32 rounding, of the same size as torchfcpe's own
        exact = _float64_mel(audio, wav2mel.mel_extractor.mel_basis)
        assert np.abs(mine - exact).max() < 3 * np.abs(ref - exact).max() + 1e-5


def test_frame_window_convention(fcpe: FcpePitch) -> None:
    """Mel frame j reads exactly samples [160 j - 431, 160 j + 592) (its window starts at 160 j - 432
    with Hann weight 0), so it is centred at 160 j + 80. float64, so that window-edge weights of
    ~1e-5 are visible."""
    dft = DftMel.from_torchfcpe(fcpe.module.wav2mel).double()
    audio = synthetic_voice(8000, seed=3).astype(np.float64)
    j = 20

    def frame_change(sample: int) -> float:
        bumped = audio.copy()
        bumped[sample] += 0.5
        with torch.no_grad():
            a, b = (dft(torch.from_numpy(x)[None])[0, j].numpy() for x in (audio, bumped))
        return float(np.abs(a - b).max())

    assert frame_change(160 * j - 432) == 0.0 and frame_change(160 * j + 592) == 0.0
    assert frame_change(160 * j - 431) > 0.0 and frame_change(160 * j + 591) > 0.0
    first, last = 160 * j - 431, 160 * j + 591
    assert (first + last) / 2 == fcpe_frame_centres(j + 1)[j]


class _FrozenGroupNorm(nn.Module):
    """GroupNorm with mean/variance fixed from one input: the network minus its only global op."""

    def __init__(self, norm: nn.GroupNorm, x: torch.Tensor) -> None:
        super().__init__()
        self.norm = norm
        g = x.reshape(x.shape[0], norm.num_groups, -1)
        self.mean, self.var = g.mean(-1), g.var(-1, unbiased=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t = x.shape
        g = x.reshape(b, self.norm.num_groups, -1)
        g = (g - self.mean[..., None]) / torch.sqrt(self.var[..., None] + self.norm.eps)
        return g.reshape(b, c, t) * self.norm.weight[:, None] + self.norm.bias[:, None]


def test_receptive_field(fcpe: FcpePitch) -> None:
    """Unbounded because of GroupNorm; with its statistics frozen, exactly 92 frames each side.

    Run in float64, where nothing outside the bound can leak in through rounding, so "unchanged"
    means bit-identical and the faint reach of the outermost conv taps is still measurable.
    """
    graph = FcpeGraph(fcpe.module).eval().double()
    t = np.arange(4 * SR) / SR  # voiced throughout, so the latent at frame m is far from 0
    phase = 2 * np.pi * (200 * t + 2 * np.sin(2 * np.pi * 3 * t))
    audio = sum(0.3 / h * np.sin(h * phase) for h in range(1, 6))
    audio = audio + 0.01 * np.random.default_rng(7).standard_normal(len(t))
    m, reach = 200, 92  # middle frame, conv reach in frames
    first = 160 * (m - reach) - 432  # window start of frame m - 92 (a zero of the Hann window)
    end = 160 * (m + reach) + 592  # one past the window end of frame m + 92

    def encoded(model: nn.Module, wav: np.ndarray) -> np.ndarray:
        """The conformer's output at frame m [512] (before the final norm / sigmoid, not saturated)."""
        with torch.no_grad():
            x = model.input_stack(graph.mel(torch.from_numpy(wav)[None]).transpose(1, 2))
            return model.net(x.transpose(1, 2))[0, m].numpy()

    def perturbed(lo: int, hi: int) -> np.ndarray:
        out = audio.copy()
        out[lo:hi] += 0.3 * np.random.default_rng(lo).standard_normal(hi - lo)
        return out

    def change(model: nn.Module, lo: int, hi: int) -> float:
        return float(np.abs(encoded(model, perturbed(lo, hi)) - encoded(model, audio)).max())

    assert change(graph.model, end + 8000, len(audio)) > 1.0  # global: GroupNorm statistics

    frozen = copy.deepcopy(graph.model)
    with torch.no_grad():
        stem_in = frozen.input_stack[0](graph.mel(torch.from_numpy(audio)[None]).transpose(1, 2))
    frozen.input_stack[1] = _FrozenGroupNorm(frozen.input_stack[1], stem_in)
    np.testing.assert_allclose(encoded(frozen, audio), encoded(graph.model, audio), atol=1e-9)
    assert change(frozen, end, len(audio)) == 0.0  # everything beyond the bound, both sides
    assert change(frozen, 0, first + 1) == 0.0
    assert change(frozen, end - 160, end) > 1e-10  # the last hop inside it still reaches frame m
    assert change(frozen, first + 1, first + 161) > 1e-10
