"""The synthesised corpus in memory at the PPG encoder's rate (16 kHz for ContentVec's framing, 24 kHz
for the "mel" framing), for training and scoring it. Utterances stored at another rate are resampled
(soxr) on loading."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from models.demo.utterance import Utterance, read_audio, read_meta

SAMPLE_RATE = 16000  # the default: ContentVec's framing


@dataclass
class Clip:
    """One utterance at `sample_rate`: int16 audio and its phone segmentation in samples of that rate."""

    id: str
    speaker: str
    audio: np.ndarray     # int16 [N]
    phones: np.ndarray    # int64 [S]
    ends: np.ndarray      # float64 [S], increasing, last = N
    sample_rate: int = SAMPLE_RATE

    def labels_at(self, positions: np.ndarray) -> np.ndarray:
        """Phone class at each (fractional) sample position; past the end -> the last phone."""
        idx = np.searchsorted(self.ends, positions, side="right")
        return self.phones[np.minimum(idx, len(self.phones) - 1)]

    def float_audio(self) -> np.ndarray:
        return self.audio.astype(np.float32) / 32768.0


def load_clip(json_path: Path, sample_rate: int = SAMPLE_RATE) -> Clip:
    """One stored utterance at `sample_rate` (resampled with soxr when stored at another rate)."""
    meta: Utterance = read_meta(json_path)
    audio = read_audio(json_path)
    if meta.sample_rate != sample_rate:
        audio = soxr.resample(audio, meta.sample_rate, sample_rate)
    scale = sample_rate / meta.sample_rate
    ends = np.asarray(meta.ends, dtype=np.float64) * scale
    ends[-1] = len(audio)
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    return Clip(meta.id, meta.speaker, pcm, np.asarray(meta.phones, dtype=np.int64), ends, sample_rate)


def clip_source(speaker: str) -> str:
    """The engine that spoke an utterance, through WORLD copies ("world:mbrola:..." -> "mbrola")."""
    parts = speaker.split(":")
    return parts[1] if parts[0] == "world" and len(parts) > 1 else parts[0]


def split_files(data: Path, split: str) -> list[Path]:
    """Finished utterances of a split (those with a sidecar), sorted by id."""
    folder = data / split
    if not folder.exists():
        return []
    return sorted(folder.glob("*.json"))


class ClipStore:
    """Clips of one split at `sample_rate`, loaded once; `refresh()` adds the utterances written since.
    Utterances whose `clip_source` is in `exclude` (e.g. the non-commercial MBROLA voices) are skipped."""

    def __init__(self, data: Path, split: str, sample_rate: int = SAMPLE_RATE, exclude: frozenset[str] = frozenset()):
        self.data, self.split, self.sample_rate, self.exclude = data, split, sample_rate, exclude
        self.clips: list[Clip] = []
        self._seen: set[str] = set()

    def refresh(self) -> int:
        """Load new utterances; -> how many were added."""
        added = 0
        for path in split_files(self.data, self.split):
            if path.stem in self._seen:
                continue
            self._seen.add(path.stem)
            if self.exclude and clip_source(read_meta(path).speaker) in self.exclude:
                continue
            self.clips.append(load_clip(path, self.sample_rate))
            added += 1
        return added

    @property
    def seconds(self) -> float:
        return sum(len(c.audio) for c in self.clips) / self.sample_rate
