"""A voice pack's notice (`SOURCES.md`: what the voice was trained from, and the licences), read as hostile input.

The manifest gives the file's sha256 and size (`engine.voicepack.ListedFile`, at most
`LIMITS["notice_bytes"]`); the bytes are read once, checked, and those same bytes are decoded as
UTF-8. Any failure is one `VoicePackError` sentence. The text is meant to be shown as plain text
(the app never renders it as rich text, which could make Qt load files the notice names).
"""
from __future__ import annotations

import os
from pathlib import Path

from engine.voicepack import VoicePackError, load_manifest, read_verified


def decode_notice(data: bytes, name: str) -> str:
    """The text of a notice's bytes; `name` for messages. The exporter checks a notice with this too."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise VoicePackError(f"{name} is not UTF-8 text (byte {exc.start} cannot be decoded)") from None


def read_notice(pack: str | os.PathLike) -> str | None:
    """The verified notice text of the pack folder `pack`, or None when the pack has none."""
    manifest = load_manifest(pack, verify_hashes=False)   # the notice's own bytes are hashed below
    notice = manifest.notice
    if notice is None:
        return None
    return decode_notice(read_verified(Path(manifest.folder) / notice.file, notice.sha256, notice.size), notice.file)
