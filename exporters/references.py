"""Speakers' preview clips for a voice pack: `--reference SPEAKER=PATH` → `reference/<speaker>.wav`.

Each clip is the first `REFERENCE_MAX_SECONDS` of any audio file soundfile reads, mixed to mono,
resampled to 24 kHz, brought to a preview level (the RMS of its active 20 ms frames at
`PREVIEW_RMS_DBFS`, peaks at most `PREVIEW_PEAK_DBFS`) and written as 16-bit PCM WAV. A speaker the
voice does not have, an unreadable or silent file: one `ExportError` sentence, before any network is
exported.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from engine.voicepack import REFERENCE_MAX_SECONDS, ListedFile, reference_file_name, sha256_file
from models.audio import SAMPLE_RATE as MODEL_RATE

PREVIEW_RMS_DBFS = -20.0
PREVIEW_PEAK_DBFS = -1.0
#: Frames more than 30 dB below the loudest (pauses, breaths) or below -70 dBFS (silence) do not count
_GATE_BELOW_LOUDEST_DB, _SILENCE_DBFS = 30.0, -70.0
_FRAME = MODEL_RATE // 50     # 20 ms


class ReferenceClipError(ValueError):
    """A `--reference` the exporter cannot use; the message is one sentence."""


def parse_reference(text: str) -> tuple[str, Path]:
    """'SPEAKER=PATH' → (speaker, path), split at the first '=' (a path may hold one, a speaker name not)."""
    speaker, sep, path = text.partition("=")
    if not sep or not speaker or not path:
        raise ReferenceClipError(f"--reference takes SPEAKER=PATH, got {text!r}")
    return speaker, Path(path)


def preview_clip(path: Path) -> np.ndarray:
    """float32 mono [≤ 5 s × 24 kHz] of `path` at the preview level."""
    try:
        with sf.SoundFile(str(path)) as handle:
            audio = handle.read(int(REFERENCE_MAX_SECONDS * handle.samplerate), dtype="float32", always_2d=True)
            rate = handle.samplerate
    except (OSError, RuntimeError, sf.LibsndfileError) as exc:
        raise ReferenceClipError(f"cannot read the reference audio {path} ({str(exc)[:160]})") from exc
    mono = audio.mean(axis=1)
    if rate != MODEL_RATE:
        mono = soxr.resample(mono, rate, MODEL_RATE, quality="HQ")
    mono = mono[:int(REFERENCE_MAX_SECONDS * MODEL_RATE)].astype(np.float32)
    frames = mono[:len(mono) // _FRAME * _FRAME].reshape(-1, _FRAME)
    rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1)) if len(frames) else np.zeros(0)
    gate = max(rms.max(initial=0.0) * 10 ** (-_GATE_BELOW_LOUDEST_DB / 20), 10 ** (_SILENCE_DBFS / 20))
    active = rms[rms > gate]
    if not np.isfinite(mono).all() or not len(active):
        raise ReferenceClipError(f"the reference audio {path} is silent (or holds no valid samples): nothing to preview")
    gain = 10 ** (PREVIEW_RMS_DBFS / 20) / np.sqrt(np.mean(np.square(active)))
    gain = min(gain, 10 ** (PREVIEW_PEAK_DBFS / 20) / float(np.abs(mono).max()))
    return (mono * gain).astype(np.float32)


def reference_paths(items: list[str]) -> dict[str, Path]:
    """`--reference` arguments → speaker name → audio path (each speaker once)."""
    given: dict[str, Path] = {}
    for text in items:
        speaker, path = parse_reference(text)
        if speaker in given:
            raise ReferenceClipError(f"--reference names speaker {speaker!r} twice")
        given[speaker] = path
    return given


def prepare_references(given: dict[str, Path], speakers: dict[str, int]) -> dict[str, np.ndarray]:
    """Every given clip read and levelled (speaker name → samples); refuses names the voice lacks."""
    unknown = sorted(set(given) - set(speakers))
    if unknown:
        raise ReferenceClipError(f"--reference names {', '.join(map(repr, unknown))}, which this voice does not have "
                             f"(its speakers: {', '.join(speakers)})")
    return {speaker: preview_clip(path) for speaker, path in given.items()}


def write_references(folder: Path, clips: dict[str, np.ndarray]) -> dict[str, ListedFile]:
    """Write each clip as `folder/reference/<speaker>.wav` (24 kHz mono 16-bit); their manifest entries."""
    entries = {}
    for speaker, audio in clips.items():
        relative = reference_file_name(speaker)
        path = folder / relative
        path.parent.mkdir(exist_ok=True)
        sf.write(str(path), audio, MODEL_RATE, subtype="PCM_16", format="WAV")
        entries[speaker] = ListedFile(relative, sha256_file(path), path.stat().st_size)
    return entries
