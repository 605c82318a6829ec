"""Formant / diphone engines with exact phone timings: flite (`-psdur`) and MBROLA (`espeak-ng --pho`).

Both run as Debian programs (`flite`, `espeak-ng`, `mbrola` + `mbrola-us1..3`, `mbrola-en1`) and
write 16 kHz audio. Their timings are the synthesiser's own, so the labels are exact.
"""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from models.demo.phones import flite_phone, sampa_phone

FLITE_VOICES = ("kal16", "awb", "rms", "slt")
MBROLA_VOICES = ("us1", "us2", "us3", "en1")
MBROLA_ROOT = Path("/usr/share/mbrola")


def _read(path: Path) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(path, dtype="float32")
    return (audio if audio.ndim == 1 else audio.mean(axis=1)), rate


def flite(text: str, voice: str, pitch_mean: float | None = None) -> tuple[np.ndarray, int, list[int], list[int]]:
    """-> audio, sample rate, phone classes, end samples. `pitch_mean` sets flite's mean F0 (Hz)."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "out.wav"
        cmd = ["flite", "-voice", voice, "-psdur", "-t", text, "-o", str(wav)]
        if pitch_mean is not None:
            cmd += ["--setf", f"int_f0_target_mean={pitch_mean:.0f}"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        audio, rate = _read(wav)
    phones, ends = [], []
    for item in out.split():
        symbol, end = item.rsplit(":", 1)
        phones.append(flite_phone(symbol))
        ends.append(min(int(round(float(end) * rate)), len(audio)))
    if ends[-1] < len(audio):  # flite's last pause ends a few samples before the file does
        phones.append(phones[-1])
        ends.append(len(audio))
    return audio, rate, phones, ends


def mbrola(text: str, voice: str, speed: float = 1.0, pitch_factor: float = 1.0) -> tuple[np.ndarray, int, list[int], list[int]]:
    """espeak-ng writes the .pho (phones, ms, pitch points); durations and pitch are scaled, mbrola renders."""
    pho = subprocess.run(["espeak-ng", "-v", f"mb-{voice}", "-q", "--pho", text],
                         capture_output=True, text=True, check=True).stdout
    lines, phones, durations_ms = [], [], []
    for line in pho.splitlines():
        parts = line.split()
        if not parts or parts[0].startswith(";"):
            continue
        dur = max(1, int(round(int(parts[1]) / speed)))
        pitch = [f"{v}" if i % 2 == 0 else f"{float(v) * pitch_factor:.0f}" for i, v in enumerate(parts[2:])]
        lines.append(" ".join([parts[0], str(dur), *pitch]))
        phones.append(sampa_phone(parts[0]))
        durations_ms.append(dur)
    with tempfile.TemporaryDirectory() as tmp:
        pho_path, wav = Path(tmp) / "in.pho", Path(tmp) / "out.wav"
        pho_path.write_text("\n".join(lines) + "\n")
        subprocess.run(["mbrola", "-e", str(MBROLA_ROOT / voice / voice), str(pho_path), str(wav)],
                       capture_output=True, check=True)
        audio, rate = _read(wav)
    ends = [int(e) for e in np.cumsum([d * rate // 1000 for d in durations_ms])]
    ends = [min(e, len(audio)) for e in ends]
    ends[-1] = len(audio)  # mbrola rounds each phone to whole samples; the remainder joins the last phone
    return audio, rate, phones, ends
