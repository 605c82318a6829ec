"""`evaluate WORK_DIR --ckpt STUDENT`: teacher (N steps) vs student (1 step) on the validation set.

Each validation item is resynthesised for its own speaker from its own features, so it has a ground
truth. Metrics per system: mel L1 to the ground-truth mel; F0 RMSE (cents) and correlation between
FCPE on the output and the input F0 over frames voiced in both; speaker similarity (resemblyzer:
cosine of the output's embedding to the speaker's centroid over its training items); real-time
factor (acoustic model + vocoder seconds per second of audio). Writes report.md + report.png
(mels side by side and F0 curves of the first item) and the audio.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.audio import SAMPLE_RATE
from models.checkpoints import CheckpointError, safe_load
from models.comosvc import CoMoSVC, model_from_config
from models.train.acoustic import load_checkpoint
from models.train.checkpoint_io import newest_vocoder
from models.train.dataset import item_tensors, load_item, read_list
from models.train.errors import TrainError

PRETRAINED = "decoder.denoise_fn_pretrained."
CENTROID_ITEMS = 10


def teacher_inside_student(ckpt: str | Path, config: dict[str, Any]) -> CoMoSVC:
    """The frozen teacher copy a student checkpoint carries (conditioner + denoise_fn_pretrained)."""
    state = safe_load(ckpt)["model"]
    own = {k: v for k, v in state.items() if not k.startswith("decoder.")}
    own.update({"decoder.denoise_fn." + k[len(PRETRAINED):]: v for k, v in state.items() if k.startswith(PRETRAINED)})
    model = model_from_config(config, use_pitch_aug="aug_shift_embed.weight" in own)
    model.load_state_dict(own, strict=True)
    return model.eval()


class SpeakerSimilarity:
    """resemblyzer cosine similarity to per-speaker centroids; `missing` says why it is unavailable."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir, self.centroids, self.missing = work_dir, {}, ""
        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # webrtcvad's pkg_resources deprecation notice
                from resemblyzer import VoiceEncoder, preprocess_wav
        except ImportError as exc:
            self.missing = f"speaker similarity not computed: resemblyzer is not installed ({exc})"
            return
        self.encoder, self.preprocess = VoiceEncoder("cpu", verbose=False), preprocess_wav

    def embed(self, wav: np.ndarray) -> np.ndarray:
        e = self.encoder.embed_utterance(self.preprocess(np.asarray(wav, dtype=np.float32), source_sr=SAMPLE_RATE))
        return e / (np.linalg.norm(e) + 1e-9)

    def __call__(self, speaker: str, wav: np.ndarray, train_names: list[str]) -> float | None:
        if self.missing:
            return None
        if speaker not in self.centroids:
            names = [n for n in train_names if n.split("/")[0] == speaker][:CENTROID_ITEMS]
            embs = [self.embed(load_item(self.work_dir, n, ("audio",))["audio"]) for n in names]
            c = np.mean(embs, axis=0)
            self.centroids[speaker] = c / (np.linalg.norm(c) + 1e-9)
        return float(self.embed(wav) @ self.centroids[speaker])


def evaluate(work_dir: Path, cfg: dict[str, Any], ckpt: str, teacher: str | None, vocoder: str | None,
             steps: int, out: Path | None, device: str | None, quiet: bool = False) -> Path:
    from tqdm import tqdm

    from models.pitch import f0_agreement, make_pitch_extractor
    from models.vocoder import VocoderConfigError, load_vocoder, seeded_source_noise

    if steps < 1:
        raise TrainError(f"--steps must be >= 1, got {steps}")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    student = load_checkpoint(ckpt, "--ckpt")
    if student.kind != "student":
        raise TrainError(f"--ckpt {ckpt} is a teacher checkpoint; pass the student (logs/como/model_<step>.pt)")
    try:
        teacher_model = (load_checkpoint(teacher, "--teacher").model if teacher
                         else teacher_inside_student(ckpt, student.config))
    except (CheckpointError, KeyError, RuntimeError) as exc:
        raise TrainError(f"cannot rebuild the teacher from {ckpt} ({exc}); pass --teacher") from None
    voc_path = vocoder or cfg["vocoder"].get("ckpt") or newest_vocoder(work_dir / cfg["env"]["expdir"] / "vocoder")
    if not voc_path:
        raise TrainError("no vocoder: pass --vocoder, set vocoder.ckpt in the config or train one "
                         "(`python -m models.train vocoder WORK_DIR`)")
    try:
        voc = load_vocoder(voc_path).to(dev)
    except (CheckpointError, VocoderConfigError, OSError) as exc:
        raise TrainError(f"--vocoder {voc_path}: {exc}") from None
    cfg = dict(cfg, spk=student.speakers)
    names = read_list(work_dir, "val")
    if not names:
        raise TrainError(f"{work_dir}: the validation list is empty (prepare gives each speaker with 2+ items some)")
    train_names = read_list(work_dir, "train")
    out = Path(out) if out else work_dir / "eval"
    (out / "audio").mkdir(parents=True, exist_ok=True)
    pitch = make_pitch_extractor("fcpe")
    similarity = SpeakerSimilarity(work_dir)
    systems = {f"teacher ({steps} steps)": (teacher_model.to(dev).eval(), steps, True),
               "student (1 step)": (student.model.to(dev).eval(), 1, False)}
    rows: dict[str, dict[str, list[float]]] = {s: {"mel_l1": [], "f0_rmse": [], "f0_corr": [], "sim": [], "rtf": []}
                                               for s in systems}
    first: dict[str, Any] = {}
    for name in tqdm(names, desc="evaluate", unit="item", disable=quiet, file=sys.stderr):
        feats = item_tensors(work_dir, cfg, name, dev)
        noise = torch.randn(feats["mel"].shape, generator=torch.Generator().manual_seed(0)).to(dev)
        seconds = feats["audio"].shape[1] / SAMPLE_RATE
        for label, (model, n, is_teacher) in systems.items():
            t0 = time.perf_counter()
            with torch.no_grad():
                mel = model.infer_mel(feats["units"], feats["f0"], feats["volume"], feats["speaker"], noise,
                                      steps=n, teacher=is_teacher)
                wav = voc(mel, feats["f0"], None, seeded_source_noise(voc, mel.shape[1], 0, dev))[0].cpu().numpy()
            elapsed = time.perf_counter() - t0
            f0_out, _ = pitch.raw(wav)
            rmse, corr = f0_agreement(f0_out, feats["f0"][0].cpu().numpy(), feats["uv"][0].cpu().numpy())
            r = rows[label]
            r["mel_l1"].append(float((mel - feats["mel"]).abs().mean()))
            r["f0_rmse"].append(rmse)
            r["f0_corr"].append(corr)
            r["rtf"].append(elapsed / seconds)
            sim = similarity(name.split("/")[0], wav, train_names)
            if sim is not None:
                r["sim"].append(sim)
            import soundfile as sf

            tag = "teacher" if is_teacher else "student"
            sf.write(str(out / "audio" / f"{name.replace('/', '_')}_{tag}.wav"), wav, SAMPLE_RATE, subtype="FLOAT")
            if not first or first["name"] == name:
                first.update(name=name, gt=feats["mel"][0].cpu().numpy(), f0_in=feats["f0"][0].cpu().numpy())
                first[label] = (mel[0].cpu().numpy(), f0_out)
    report = out / "report.md"
    report.write_text(_markdown(rows, ckpt, str(voc_path), len(names), similarity.missing, dev), encoding="utf-8")
    _figure(first, list(systems), out / "report.png")
    return report


def _fmt(values: list[float], digits: int = 3) -> str:
    v = [x for x in values if np.isfinite(x)]
    return f"{np.mean(v):.{digits}f}" if v else "n/a"


def _markdown(rows: dict[str, dict[str, list[float]]], ckpt: str, vocoder: str, n_items: int, sim_missing: str,
              device: torch.device) -> str:
    lines = [f"# Evaluation of {ckpt}", "",
             f"{n_items} validation item(s), each resynthesised for its own speaker; vocoder {vocoder}; "
             f"device {device}.", "",
             "| system | mel L1 to ground truth | F0 RMSE (cents) | F0 correlation | speaker similarity | RTF |",
             "|---|---|---|---|---|---|"]
    for label, r in rows.items():
        lines.append(f"| {label} | {_fmt(r['mel_l1'])} | {_fmt(r['f0_rmse'], 1)} | {_fmt(r['f0_corr'])} | "
                     f"{_fmt(r['sim']) if r['sim'] else 'missing'} | {_fmt(r['rtf'], 4)} |")
    lines += ["", "F0: FCPE on the output vs the input F0, frames voiced in both. Speaker similarity: resemblyzer "
              "cosine to the speaker's centroid over up to 10 training items. RTF: acoustic model + vocoder time "
              "per second of audio.", "", "![mels and F0](report.png)"]
    if sim_missing:
        lines += ["", f"Note: {sim_missing}."]
    return "\n".join(lines) + "\n"


def _figure(first: dict[str, Any], systems: list[str], path: Path) -> None:
    from models.train.logger import mel_figure

    mels = {"ground truth": first["gt"], **{s: first[s][0] for s in systems}}
    fig = mel_figure(mels)
    if fig is None:
        raise TrainError("matplotlib is needed for the report figure: pip install matplotlib (train extra)")
    import matplotlib.pyplot as plt

    fig.set_size_inches(4 * len(mels), 6)
    for ax in fig.axes:
        ax.set_position([ax.get_position().x0, 0.45, ax.get_position().width, 0.48])
    f0_ax = fig.add_axes([0.06, 0.08, 0.9, 0.28])
    f0_ax.plot(first["f0_in"], label="input F0", color="black")
    for s in systems:
        f0_ax.plot(np.where(first[s][1] > 0, first[s][1], np.nan), label=f"{s} (FCPE)")
    f0_ax.set_xlabel(f"frame ({first['name']})")
    f0_ax.set_ylabel("Hz")
    f0_ax.legend(fontsize=7)
    fig.savefig(path, dpi=80)
    plt.close(fig)
