"""Score a PPG encoder on the held-out test sets: frame phone accuracy and speaker leakage.

    python -m models.demo ppg-eval WORK [--checkpoint PATH]

- top-1 / top-3 frame accuracy (40 phone classes, label = phone at the sample the frame describes:
  its window centre, or the mel frame's position for the "mel" framing) per test set, read at the
  encoder's rate;
- speaker identification by logistic regression on single frames, from the encoder's content features
  (its log-posteriors) and from the 80-bin log-mel it starts from: trained on half of each speaker's
  utterances, scored on the other half. Content features should identify speakers far worse than mels.
Writes WORK/ppg/eval.json.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from models.content.ppg import PPGEncoder, load_ppg
from models.demo.corpus import Clip, ClipStore
from models.demo.data import DataError
from models.demo.ppg_train import frame_accuracy

TEST_SETS = ("kokoro-heldout", "flite", "kokoro-seen")
FRAMES_PER_SPEAKER = 1500  # per half, subsampled so the regression stays quick


@torch.no_grad()
def clip_features(model: PPGEncoder, clip: Clip) -> tuple[np.ndarray, np.ndarray]:
    """-> (content features [T, width], log-mel [T, n_mels]) of one clip."""
    x = torch.from_numpy(clip.float_audio())[None]
    return model(x)[0].numpy(), model.front(x)[0].T.numpy()


def speaker_id_accuracy(features: dict[str, list[np.ndarray]], seed: int = 0) -> float:
    """Frame-level speaker ID: fit on even-numbered utterances of each speaker, score on odd ones."""
    rng = np.random.default_rng(seed)
    parts: dict[str, tuple[list, list]] = {"fit": ([], []), "score": ([], [])}
    for label, (speaker, utts) in enumerate(sorted(features.items())):
        for half, chosen in (("fit", utts[0::2]), ("score", utts[1::2])):
            frames = np.concatenate(chosen)
            pick = rng.choice(len(frames), size=min(FRAMES_PER_SPEAKER, len(frames)), replace=False)
            parts[half][0].append(frames[pick])
            parts[half][1].append(np.full(len(pick), label))
    x_fit, y_fit = np.concatenate(parts["fit"][0]), np.concatenate(parts["fit"][1])
    x_score, y_score = np.concatenate(parts["score"][0]), np.concatenate(parts["score"][1])
    scaler = StandardScaler().fit(x_fit)
    clf = LogisticRegression(max_iter=500).fit(scaler.transform(x_fit), y_fit)
    return float(clf.score(scaler.transform(x_score), y_score))


def evaluate(work: Path, checkpoint: Path | None = None) -> dict:
    path = checkpoint or work / "ppg" / "ppg.pt"
    model = load_ppg(path)
    torch.set_num_threads(2)
    t0 = time.process_time()
    result: dict = {"checkpoint": str(path), "receptive_field": list(model.receptive_field), "sets": {}}
    content: dict[str, list[np.ndarray]] = {}
    mels: dict[str, list[np.ndarray]] = {}
    for name in TEST_SETS:
        store = ClipStore(work / "data", name, model.sample_rate)
        if store.refresh() == 0:
            raise FileNotFoundError(f"test set {name} is empty: run the data command first")
        top1, top3 = frame_accuracy(model, store.clips)
        result["sets"][name] = {"top1": round(top1, 4), "top3": round(top3, 4), "clips": len(store.clips),
                                "minutes": round(store.seconds / 60, 2)}
        for clip in store.clips:
            c, m = clip_features(model, clip)
            content.setdefault(clip.speaker, []).append(c)
            mels.setdefault(clip.speaker, []).append(m)
    speakers = {s: u for s, u in content.items() if len(u) >= 2}
    if len(speakers) < 2:
        raise DataError("speaker ID needs at least two speakers with two test utterances each")
    result["speaker_id"] = {
        "speakers": len(speakers), "chance": round(1 / len(speakers), 4),
        "content_features": round(speaker_id_accuracy(speakers), 4),
        "log_mel": round(speaker_id_accuracy({s: mels[s] for s in speakers}), 4)}
    result["cpu_seconds"] = round(time.process_time() - t0, 1)
    (work / "ppg").mkdir(parents=True, exist_ok=True)
    (work / "ppg" / "eval.json").write_text(json.dumps(result, indent=1))
    for name, s in result["sets"].items():
        print(f"{name:15s} top-1 {s['top1']:.3f}  top-3 {s['top3']:.3f}  ({s['clips']} clips, {s['minutes']} min)")
    sid = result["speaker_id"]
    print(f"speaker ID over {sid['speakers']} speakers (chance {sid['chance']:.3f}): "
          f"content features {sid['content_features']:.3f}, log-mel {sid['log_mel']:.3f}")
    return result
