"""FCPE (torchfcpe's bundled `fcpe_c_v001` model) as `pitch.onnx` for the runtime.

    from exporters.fcpe import export_fcpe, check_fcpe_parity
    info = export_fcpe("pack/pitch.onnx")          # manifest entry (inputs, outputs, receptive field, ...)
    report = check_fcpe_parity("pack/pitch.onnx")  # ONNX Runtime vs torchfcpe; raises FcpeParityError

Graph: `audio f32[1, N]` (16 kHz mono, N >= 433) -> `f0 f32[1, T_p]` Hz, 0 where unvoiced, with
`T_p = N // 160 + 1`. It is torchfcpe's `InferCFNaiveMelPE(wav, sr=16000, 'local_argmax', 0.006)`
followed by `models.pitch.FcpePitch`'s clamp (f0 < 50 Hz -> 0, f0 > 1100 Hz -> 1100), with the STFT
replaced by a strided Conv1d whose kernels are the Hann-windowed DFT basis (`torch.stft` returns
complex values, which the TorchScript ONNX exporter refuses). Audio is not clipped to [-1, 1].

Frame times (16 kHz samples): torchfcpe reflect-pads the audio by 432 samples on each side and takes
1024-sample windows every 160 samples, so mel frame `j < N // 160` covers input samples
`[160 j - 432, 160 j + 592)` (the first one has Hann weight 0) and is centred at sample
`160 j + 80`, i.e. time `(160 j + 80) / 16000` s (`models.pitch.fcpe_frame_times`). That gives
`N // 160` mel frames; torchfcpe appends a copy of the last one so that `T_p = N // 160 + 1`: the
last f0 frame sees the same mel as the one before it.

Receptive field: the bundled model is `conv_only` (no attention layers at all; had it attention, it
would be Performer linear attention with `local_heads=0`, i.e. global). Its convolutions reach
92 mel frames each side (2 input convs of kernel 3, 6 depthwise convs of kernel 31), but the input
stack's `GroupNorm(4, 512)` normalises with mean/variance over the whole time axis, so every f0
frame depends (weakly) on all of the input: the receptive field is unbounded (`None`). The conv bound
is still given as `extra.conv_receptive_field`, to size a streaming window.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from engine.voicepack import sha256_file
from exporters.parity import ParityError, relative_l2
from models.fcpe_graph import FcpeGraph, conv_receptive_field, fcpe_receptive_field, global_time_ops
from models.pitch import F0_MAX, F0_MIN, FCPE_HOP, FCPE_SAMPLE_RATE, FCPE_THRESHOLD, FcpePitch

DEFAULT_OPSET = 17
DECODER = "local_argmax"
TRACE_SAMPLES = 20000  # traced length; every other length goes through the dynamic axis
FRAME_UNIT = "pitch_frames"
MIN_SAMPLES = 433  # reflect padding of (1024 - 160) // 2 = 432 samples needs N > 432
REL_L2_TOL = 1e-4  # relative L2 of mel / latent vs torchfcpe
# Max |log-mel| difference vs torchfcpe. float32 rounding alone reaches ~1e-4 in the lowest mel bins
# of quiet frames (levels ~1e-4 of the frame's peak): torchfcpe's own FFT mel is up to 1.1e-4 off a
# float64 STFT there, the Conv1d DFT up to 2e-4. A convention error (window, padding, one-sample
# shift) gives > 1e-1.
MEL_MAX_ABS_TOL = 1e-3
CENTS_TOL = 1.0  # max f0 difference on frames both call voiced
VOICING_TOL = 0.01  # fraction of frames whose voicing may flip, and only near a decision boundary
NEAR_THRESHOLD = 1e-4  # |confidence - threshold| below which a flip counts as "near the threshold"
_META_MEL = "como.fcpe.mel_tensor"
_META_LATENT = "como.fcpe.latent_tensor"
_META_SETTINGS = ("threshold", "f0_min", "f0_max")  # stored as "como.fcpe.<name>"


class FcpeParityError(ParityError):
    """pitch.onnx disagrees with torchfcpe beyond the bounds (a `ParityError`, as the pack exporter expects)."""


# --------------------------------------------------------------------------------------------------
# Frame bookkeeping
# --------------------------------------------------------------------------------------------------

def fcpe_num_frames(n_samples: int) -> int:
    """Number of f0 frames for `n_samples` 16 kHz samples: `n // 160 + 1`."""
    return int(n_samples) // FCPE_HOP + 1


def fcpe_frame_centres(n_frames: int) -> np.ndarray:
    """Centre sample (16 kHz) of f0 frame `j`: `160 j + 80`. [T] int64 (the last frame repeats the
    mel of frame T - 2, see the module docstring)."""
    return np.arange(n_frames, dtype=np.int64) * FCPE_HOP + FCPE_HOP // 2


# --------------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------------

def _last_output_under(graph: onnx.GraphProto, scope: str) -> str:
    nodes = [n for n in graph.node if n.name.startswith(scope)]
    if not nodes:
        raise RuntimeError(f"no ONNX node under scope {scope!r}: cannot expose it for parity checks")
    return nodes[-1].output[0]


def export_fcpe(path: str | Path, opset: int = DEFAULT_OPSET, threshold: float = FCPE_THRESHOLD,
                f0_min: float = F0_MIN, f0_max: float = F0_MAX) -> dict[str, Any]:
    """Write `pitch.onnx` to `path`; return what the voice manifest needs.

    Keys: file, sha256, size, inputs / outputs (`[{name, shape, dtype}]`, axes 'samples'/'frames'),
    sample_rate (16000), hop (160), receptive_field (None: unbounded, see module doc), frame_unit,
    params, precision, opset and `extra` (decoder, threshold, f0 range, frame convention,
    min_samples, conv_receptive_field, why the receptive field is unbounded).
    """
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1) (a sigmoid confidence), got {threshold}")
    if not 0.0 < f0_min < f0_max:
        raise ValueError(f"need 0 < f0_min < f0_max, got f0_min={f0_min}, f0_max={f0_max}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pitch = FcpePitch(device="cpu", threshold=threshold, f0_min=f0_min, f0_max=f0_max)
    graph = FcpeGraph(pitch.module, threshold, f0_min, f0_max).eval()
    example = 0.1 * torch.randn(1, TRACE_SAMPLES, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
        torch.onnx.export(graph, (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=["audio"], output_names=["f0"],
                          dynamic_axes={"audio": {1: "samples"}, "f0": {1: "frames"}})
    proto = onnx.load(str(path))
    # the tracer loses the batch size through torch.where; the input's batch axis is fixed to 1
    proto.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 1
    # remember which tensors are the mel and the latent, so parity checks can expose them
    meta = {_META_MEL: _last_output_under(proto.graph, "/mel/"),
            _META_LATENT: _last_output_under(proto.graph, "/model/"),
            **{f"como.fcpe.{k}": repr(float(v)) for k, v in zip(_META_SETTINGS, (threshold, f0_min, f0_max))}}
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = "FCPE fcpe_c_v001: audio f32[1,N] 16 kHz -> f0 f32[1,N//160+1] Hz (0 = unvoiced)"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))

    conv_rf = conv_receptive_field(graph.model)
    reasons = global_time_ops(graph.model)
    win = pitch.module.wav2mel.mel_extractor.win_size
    pad_left = (win - FCPE_HOP) // 2
    return {
        "file": path.name,
        "sha256": sha256_file(path),
        "size": path.stat().st_size,
        "inputs": [{"name": "audio", "shape": [1, "samples"], "dtype": "float32"}],
        "outputs": [{"name": "f0", "shape": [1, "frames"], "dtype": "float32"}],
        "sample_rate": FCPE_SAMPLE_RATE,
        "hop": FCPE_HOP,
        "receptive_field": fcpe_receptive_field(graph.model),
        "frame_unit": FRAME_UNIT,
        "params": sum(p.numel() for p in graph.model.parameters()),
        "precision": "fp32",
        "opset": opset,
        "extra": {
            "model": "torchfcpe fcpe_c_v001",
            "decoder": DECODER,
            "threshold": threshold,
            "f0_min": f0_min,
            "f0_max": f0_max,
            "frames": f"N // {FCPE_HOP} + 1",
            "frame_centre_sample": f"{FCPE_HOP} * j + {FCPE_HOP // 2}",
            "frame_window_samples": f"[{FCPE_HOP} * j - {pad_left}, {FCPE_HOP} * j + {win - pad_left})",
            "last_frame": "repeats the mel of the frame before it",
            "min_samples": MIN_SAMPLES,
            "conv_receptive_field": list(conv_rf),
            "unbounded_because": reasons,
        },
    }


# --------------------------------------------------------------------------------------------------
# Parity with torchfcpe
# --------------------------------------------------------------------------------------------------

def synthetic_voice(n_samples: int, seed: int = 0) -> np.ndarray:
    """A deterministic test signal [N] at 16 kHz: a harmonic glide with vibrato and syllable-like
    gaps, a noise burst and faint background noise, so that voiced, unvoiced and boundary frames
    all occur."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / FCPE_SAMPLE_RATE
    duration = max(t[-1], 1e-3)
    base = 110.0 * 2.0 ** (2.5 * t / duration)  # 110 -> ~620 Hz
    f0 = base * (1.0 + 0.02 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / FCPE_SAMPLE_RATE
    voice = sum((0.6 / k) * np.sin(k * phase + rng.uniform(0, 2 * np.pi)) for k in range(1, 8))
    envelope = np.clip(2.5 * np.sin(2 * np.pi * 1.7 * t + rng.uniform(0, np.pi)), 0.0, 1.0)  # gaps
    burst = np.zeros(n_samples)
    start = int(rng.integers(0, max(1, n_samples - 3200)))
    burst[start:start + 3200] = 0.2 * rng.standard_normal(min(3200, n_samples - start))
    signal = 0.3 * voice * envelope + burst + 1e-3 * rng.standard_normal(n_samples)
    return np.clip(signal, -1.0, 1.0).astype(np.float32)


def _metadata(proto: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in proto.metadata_props}


def _session(path: Path, expose: bool, threads: int = 1) -> tuple[Any, list[str], dict[str, str]]:
    """(ONNX Runtime CPU session, output names, metadata); with `expose`, the mel and latent
    recorded by `export_fcpe` are added as outputs after `f0`."""
    import onnxruntime as ort

    if not path.is_file():
        raise FileNotFoundError(f"no pitch model at {path}")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    proto = onnx.load(str(path))
    meta = _metadata(proto)
    names = ["f0"]
    if expose and _META_MEL in meta and _META_LATENT in meta:
        for key in (_META_MEL, _META_LATENT):
            proto.graph.output.append(onnx.ValueInfoProto(name=meta[key]))
            names.append(meta[key])
        model: Any = proto.SerializeToString()
    else:
        model = str(path)
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"]), names, meta


def torchfcpe_reference(pitch: FcpePitch, audio: np.ndarray) -> dict[str, np.ndarray]:
    """torchfcpe's own inference on 16 kHz `audio [N]`: f0 [T] (with FcpePitch's clamp), mel
    [T, 128], latent [T, 360], confidence [T] (latent max)."""
    module = pitch.module
    with torch.inference_mode():
        x = torch.from_numpy(np.asarray(audio, np.float32))[None, :, None]
        f0 = module(x, sr=FCPE_SAMPLE_RATE, decoder_mode=DECODER, threshold=pitch.threshold)[0, :, 0]
        mel = module.wav2mel(x, FCPE_SAMPLE_RATE)
        latent = module.model(mel)
    f0 = np.nan_to_num(f0.numpy().astype(np.float64))
    f0[f0 < pitch.f0_min] = 0.0
    f0 = np.minimum(f0, pitch.f0_max)
    latent = latent[0].numpy()
    return {"f0": f0, "mel": mel[0].numpy(), "latent": latent, "confidence": latent.max(axis=-1)}


def check_fcpe_parity(path: str | Path, lengths: tuple[int, ...] = (16000, 24000, 50000)) -> dict[str, Any]:
    """Compare `pitch.onnx` (ONNX Runtime, CPU) with torchfcpe on `synthetic_voice` of each length.

    Bounds: f0 within 1 cent on frames both call voiced; voicing identical except on at most 1 % of
    frames, each within 1e-4 of the confidence threshold or 1 cent of f0_min; mel / latent relative L2
    <= 1e-4 and mel max abs error <= 1e-3 (float32 floor, see MEL_MAX_ABS_TOL) when the graph
    records them, as `export_fcpe` does.
    Returns a JSON-able report; raises `FcpeParityError` when a bound is broken.
    """
    path = Path(path)
    short = [n for n in lengths if int(n) < MIN_SAMPLES]
    if short:
        raise ValueError(f"lengths {short} are below the graph's minimum of {MIN_SAMPLES} samples")
    session, names, meta = _session(path, expose=True)
    # compare with torchfcpe under the settings the graph was exported with
    settings = {k: float(meta.get(f"como.fcpe.{k}", default)) for k, default in
                zip(_META_SETTINGS, (FCPE_THRESHOLD, F0_MIN, F0_MAX))}
    pitch = FcpePitch(device="cpu", **settings)
    report: dict[str, Any] = {"lengths": list(lengths), "frames": 0, "voiced_frames": 0,
                              "max_cents": 0.0, "voicing_flips": 0, "mel_max_abs": None,
                              "mel_rel_l2": None, "latent_rel_l2": None}
    problems: list[str] = []
    for i, n in enumerate(lengths):
        audio = synthetic_voice(int(n), seed=i)
        ref = torchfcpe_reference(pitch, audio)
        outs = session.run(names, {"audio": audio[None, :]})
        f0 = outs[0][0].astype(np.float64)
        if f0.shape != ref["f0"].shape or f0.shape[0] != fcpe_num_frames(n):
            raise FcpeParityError(f"pitch.onnx gives {f0.shape[0]} frames for {n} samples, "
                                  f"torchfcpe {ref['f0'].shape[0]}, expected {fcpe_num_frames(n)}")
        if len(outs) == 3:
            mel, latent = outs[1][0], outs[2][0]
            if mel.shape != ref["mel"].shape or latent.shape != ref["latent"].shape:
                raise FcpeParityError(f"exposed mel/latent shapes {mel.shape}/{latent.shape} differ from "
                                      f"torchfcpe's {ref['mel'].shape}/{ref['latent'].shape}")
            for key, value in (("mel_max_abs", float(np.abs(mel - ref["mel"]).max())),
                               ("mel_rel_l2", relative_l2(ref["mel"], mel)),
                               ("latent_rel_l2", relative_l2(ref["latent"], latent))):
                report[key] = max(report[key] or 0.0, value)
        both = (f0 > 0) & (ref["f0"] > 0)
        flips = (f0 > 0) != (ref["f0"] > 0)
        near = (np.abs(ref["confidence"] - pitch.threshold) < NEAR_THRESHOLD) | (
            np.abs(1200 * np.log2(np.maximum(np.maximum(f0, ref["f0"]), 1e-3) / pitch.f0_min)) < CENTS_TOL)
        cents = np.abs(1200 * np.log2(f0[both] / ref["f0"][both])) if both.any() else np.zeros(1)
        report["frames"] += int(f0.size)
        report["voiced_frames"] += int(both.sum())
        report["voicing_flips"] += int(flips.sum())
        report["max_cents"] = max(report["max_cents"], float(cents.max()))
        if (flips & ~near).any():
            problems.append(f"{int((flips & ~near).sum())} voicing flips away from the threshold (N={n})")
    report["voicing_flip_fraction"] = report["voicing_flips"] / max(report["frames"], 1)
    if report["voiced_frames"] == 0:
        problems.append("no voiced frames in the test signals: nothing was compared")
    if report["max_cents"] > CENTS_TOL:
        problems.append(f"f0 differs by {report['max_cents']:.3f} cents > {CENTS_TOL}")
    if report["voicing_flip_fraction"] > VOICING_TOL:
        problems.append(f"voicing differs on {100 * report['voicing_flip_fraction']:.2f} % of frames")
    for key, bound in (("mel_max_abs", MEL_MAX_ABS_TOL), ("mel_rel_l2", REL_L2_TOL),
                       ("latent_rel_l2", REL_L2_TOL)):
        if report[key] is not None and report[key] > bound:
            problems.append(f"{key} {report[key]:.2e} > {bound:.0e}")
    report["verified"] = not problems
    if problems:
        raise FcpeParityError(f"{path.name} differs from torchfcpe: " + "; ".join(problems))
    return report
