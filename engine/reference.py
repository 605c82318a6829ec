"""A speaker's preview clip (`reference/<speaker>.wav` of a voice pack), read as hostile input.

The manifest gives the file's sha256 and size (`engine.voicepack.ListedFile`); the bytes are read
once, checked, and those same bytes are decoded: a WAV, 16-bit PCM or float, mono or stereo, any rate
the schema allows, at most `REFERENCE_MAX_SECONDS`, every sample finite. Any failure is one
`VoicePackError` sentence. The clip comes back as float32 mono at the rate the caller plays at.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from engine.voicepack import LIMITS, REFERENCE_MAX_SECONDS, VoicePackError, load_manifest, read_verified

REFERENCE_SUBTYPES = ("PCM_16", "FLOAT")


def decode_reference(data: bytes, name: str) -> tuple[np.ndarray, int]:
    """(float32 mono samples [N], sample rate) of a reference clip's verified bytes; `name` for messages."""
    try:
        info = sf.info(io.BytesIO(data))
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise VoicePackError(f"{name} is not readable audio ({str(exc)[:120]})") from exc
    low, high = LIMITS["sample_rate"]
    if info.format != "WAV" or info.subtype not in REFERENCE_SUBTYPES or info.channels not in (1, 2) \
            or not low <= info.samplerate <= high:
        raise VoicePackError(f"{name} must be a mono or stereo 16-bit or float WAV at {low}..{high} Hz "
                             f"(it is {info.format} {info.subtype}, {info.channels} channels, {info.samplerate} Hz)")
    if info.frames > REFERENCE_MAX_SECONDS * info.samplerate:
        raise VoicePackError(f"{name} lasts {info.frames / info.samplerate:.1f} s; a reference clip lasts at most "
                             f"{REFERENCE_MAX_SECONDS:g} s")
    audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    if not np.isfinite(audio).all():
        raise VoicePackError(f"{name} holds samples that are not finite numbers")
    return audio.mean(axis=1, dtype=np.float32), int(rate)


def load_reference(pack: str | os.PathLike, speaker: str, rate: int) -> np.ndarray | None:
    """The verified preview clip of `speaker` in the pack folder `pack` as float32 mono [N] at `rate` Hz,
    or None when the pack has none for that speaker."""
    manifest = load_manifest(pack, verify_hashes=False)   # the clip's own bytes are hashed below
    clip = manifest.references.get(speaker)
    if clip is None:
        return None
    audio, clip_rate = decode_reference(read_verified(Path(manifest.folder) / clip.file, clip.sha256, clip.size),
                                        clip.file)
    if clip_rate == rate:
        return audio
    return soxr.resample(audio, clip_rate, rate, quality="HQ").astype(np.float32, copy=False)
