"""One synthesised, phone-labelled utterance and how it is stored (audio file + JSON sidecar)."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf


@dataclass
class Utterance:
    """Audio with its phone segmentation: phone `phones[i]` (a class index) ends at sample `ends[i]`.

    `ends` is increasing and its last value is the audio length, so every sample has a label."""

    id: str
    split: str            # 'train' or the name of a test set
    engine: str           # 'kokoro' | 'mbrola' | 'flite' | 'world' (WORLD-modified copy of another)
    speaker: str          # speaker identity (a voice name or a mix recipe)
    text: str
    sample_rate: int
    phones: list[int]
    ends: list[int]
    info: dict = field(default_factory=dict)  # engine settings (speed, mix weights, pitch shift...)
    audio: np.ndarray | None = None           # float32 [N]; not written to the sidecar

    def __post_init__(self) -> None:
        if len(self.phones) != len(self.ends) or not self.phones:
            raise ValueError(f"{self.id}: {len(self.phones)} phones but {len(self.ends)} ends")
        if any(b <= a for a, b in zip(self.ends, self.ends[1:])) or self.ends[0] <= 0:
            raise ValueError(f"{self.id}: phone ends must increase")
        if self.audio is not None and len(self.audio) != self.ends[-1]:
            raise ValueError(f"{self.id}: {len(self.audio)} samples but labels cover {self.ends[-1]}")

    @property
    def seconds(self) -> float:
        return self.ends[-1] / self.sample_rate

    def frame_labels(self, n_frames: int, hop: int, window: int, sample_rate: int) -> np.ndarray:
        """Class of each analysis frame j (samples [hop j, hop j + window) at `sample_rate`): the phone
        at the frame's centre. -> int64 [n_frames]"""
        centres = (np.arange(n_frames) * hop + window / 2) * (self.sample_rate / sample_rate)
        idx = np.searchsorted(np.asarray(self.ends), centres, side="right")
        return np.asarray(self.phones, dtype=np.int64)[np.minimum(idx, len(self.phones) - 1)]


def merge_runs(phones: list[int], ends: list[int]) -> tuple[list[int], list[int]]:
    """Join neighbouring segments of one class and drop empty ones."""
    out_p: list[int] = []
    out_e: list[int] = []
    last = 0
    for p, e in zip(phones, ends):
        if e <= last:
            continue
        if out_p and out_p[-1] == p:
            out_e[-1] = e
        else:
            out_p.append(p)
            out_e.append(e)
        last = e
    return out_p, out_e


def write_utterance(folder: Path, utt: Utterance) -> None:
    """`folder/<id>.flac` then `folder/<id>.json` (the sidecar marks the utterance complete), each
    written whole or not at all (a stopped run leaves at most a `.tmp` file, which no reader lists)."""
    if utt.audio is None:
        raise ValueError(f"{utt.id}: no audio to write")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{utt.id}.flac.tmp"
    sf.write(tmp, np.clip(utt.audio, -1, 1), utt.sample_rate, subtype="PCM_16", format="FLAC")
    os.replace(tmp, folder / f"{utt.id}.flac")
    meta = {k: v for k, v in asdict(utt).items() if k != "audio"}
    tmp = folder / f"{utt.id}.json.tmp"
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, folder / f"{utt.id}.json")


def write_skip(folder: Path, utt_id: str, reason: str) -> None:
    """`folder/<id>.skip`: why an utterance of the plan was passed over (a resumed run does not retry it)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{utt_id}.skip.tmp"
    tmp.write_text(reason)
    os.replace(tmp, folder / f"{utt_id}.skip")


def read_meta(path: Path) -> Utterance:
    """The sidecar only (audio None)."""
    return Utterance(**json.loads(path.read_text()))


def read_audio(json_path: Path) -> np.ndarray:
    audio, _ = sf.read(json_path.with_suffix(".flac"), dtype="float32")
    return audio
