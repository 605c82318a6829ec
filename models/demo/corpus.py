"""The synthesised corpus in memory at 16 kHz, for training and scoring the PPG encoder."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from models.demo.utterance import Utterance, read_audio, read_meta

SAMPLE_RATE = 16000


@dataclass
class Clip:
    """One utterance at 16 kHz: int16 audio and its phone segmentation in 16 kHz samples."""

    id: str
    speaker: str
    audio: np.ndarray     # int16 [N]
    phones: np.ndarray    # int64 [S]
    ends: np.ndarray      # float64 [S], increasing, last = N

    def labels_at(self, positions: np.ndarray) -> np.ndarray:
        """Phone class at each (fractional) sample position; past the end -> the last phone."""
        idx = np.searchsorted(self.ends, positions, side="right")
        return self.phones[np.minimum(idx, len(self.phones) - 1)]

    def float_audio(self) -> np.ndarray:
        return self.audio.astype(np.float32) / 32768.0


def load_clip(json_path: Path) -> Clip:
    meta: Utterance = read_meta(json_path)
    audio = read_audio(json_path)
    if meta.sample_rate != SAMPLE_RATE:
        audio = soxr.resample(audio, meta.sample_rate, SAMPLE_RATE)
    scale = SAMPLE_RATE / meta.sample_rate
    ends = np.asarray(meta.ends, dtype=np.float64) * scale
    ends[-1] = len(audio)
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    return Clip(meta.id, meta.speaker, pcm, np.asarray(meta.phones, dtype=np.int64), ends)


def split_files(data: Path, split: str) -> list[Path]:
    """Finished utterances of a split (those with a sidecar), sorted by id."""
    folder = data / split
    if not folder.exists():
        return []
    return sorted(folder.glob("*.json"))


class ClipStore:
    """Clips of one split, loaded once; `refresh()` adds the utterances written since."""

    def __init__(self, data: Path, split: str):
        self.data, self.split = data, split
        self.clips: list[Clip] = []
        self._seen: set[str] = set()

    def refresh(self) -> int:
        """Load new utterances; -> how many were added."""
        new = [p for p in split_files(self.data, self.split) if p.stem not in self._seen]
        for path in new:
            self.clips.append(load_clip(path))
            self._seen.add(path.stem)
        return len(new)

    @property
    def seconds(self) -> float:
        return sum(len(c.audio) for c in self.clips) / SAMPLE_RATE
