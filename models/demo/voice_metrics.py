"""The scores `python -m models.demo evaluate` gives a converted utterance (issue 12, "Acceptance").

- speaker similarity: resemblyzer (train extra) embeddings, cosine of unit vectors;
- quality: DistillMOS (`distillmos`, a no-reference MOS estimate in 1..5, 16 kHz);
- words kept: pocketsphinx's bundled US-English model transcribes input and output, and the word
  error rate of the output is scored against the input's transcript (word-level edit distance);
- pitch: median F0 of voiced frames and the key that moves one median onto another.

Each scorer imports its package when built and raises `MissingPackage` (one sentence: which package,
what it is for, the command that installs it) when it is not there: nothing is skipped silently.
"""
from __future__ import annotations

import contextlib
import io
import math
import re
import warnings
from collections.abc import Sequence
from types import ModuleType

import numpy as np
import soxr

SCORER_RATE = 16000  # resemblyzer, DistillMOS and pocketsphinx all work on 16 kHz audio
KEY_RANGE = (-24.0, 24.0)  # engine.settings' pitch range (semitones)

#: package -> (what it scores, how to install it). distillmos and xls-r-sqa go in with --no-deps:
#: their metadata asks for torchaudio (whose wheel does not load with this torch and would replace
#: it) and transformers, which the DistillMOS model never uses (see models/_torchaudio_shim.py).
INSTALL = {
    "resemblyzer": ("speaker similarity", "python -m pip install 'resemblyzer>=0.1.4' 'setuptools<81'"),
    "distillmos": ("the DistillMOS quality score",
                   "python -m pip install --no-deps distillmos==0.9.1 xls-r-sqa==0.1.0"),
    "pocketsphinx": ("the word error rate", "python -m pip install pocketsphinx==5.1.1"),
    "torchfcpe": ("FCPE pitch tracking", "python -m pip install --no-deps torchfcpe==0.0.4"),
}


class MissingPackage(RuntimeError):
    """A package a metric needs is not installed (the message says which and how to install it)."""

    def __init__(self, package: str, cause: BaseException | None = None) -> None:
        purpose, command = INSTALL[package]
        detail = f" ({cause})" if cause and str(cause) and package not in str(cause) else ""
        super().__init__(f"{purpose} needs the Python package {package}, which is not installed{detail}: "
                         f"install it with `{command}`")
        self.package = package


def require(package: str) -> ModuleType:
    """Import `package` (behind the torchaudio shim) or raise `MissingPackage`."""
    from models._torchaudio_shim import import_behind_shim

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # webrtcvad's pkg_resources deprecation notice
            return import_behind_shim(package)
    except ImportError as exc:
        raise MissingPackage(package, exc) from None


def to_scorer_rate(wav: np.ndarray, rate: int) -> np.ndarray:
    """float32 mono [N] at `rate` -> float32 [M] at 16 kHz."""
    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    return wav if rate == SCORER_RATE else soxr.resample(wav, rate, SCORER_RATE).astype(np.float32)


# ------------------------------------------------------------------------------------------ speaker
class SpeakerEmbedder:
    """resemblyzer d-vectors: `embed(wav [N], rate) -> unit vector [256]`."""

    def __init__(self) -> None:
        resemblyzer = require("resemblyzer")
        self._encoder = resemblyzer.VoiceEncoder("cpu", verbose=False)
        self._preprocess = resemblyzer.preprocess_wav

    def embed(self, wav: np.ndarray, rate: int) -> np.ndarray:
        prepared = self._preprocess(to_scorer_rate(wav, rate), source_sr=SCORER_RATE)
        if len(prepared) < SCORER_RATE // 10:  # resemblyzer's VAD kept (almost) nothing: score the raw audio
            prepared = to_scorer_rate(wav, rate)
        e = self._encoder.embed_utterance(prepared)
        return e / (np.linalg.norm(e) + 1e-9)

    def centroid(self, wavs: Sequence[np.ndarray], rate: int) -> np.ndarray:
        """Unit mean of the clips' embeddings (a speaker's reference)."""
        c = np.mean([self.embed(w, rate) for w in wavs], axis=0)
        return c / (np.linalg.norm(c) + 1e-9)


# ------------------------------------------------------------------------------------------ quality
class MosScorer:
    """DistillMOS: `__call__(wav [N], rate) -> MOS estimate in 1..5` (CPU, one thread's worth)."""

    def __init__(self) -> None:
        import torch

        distillmos = require("distillmos")
        with contextlib.redirect_stdout(io.StringIO()):  # it prints where its weights came from
            self._model = distillmos.ConvTransformerSQAModel().eval()
        self._torch = torch

    def __call__(self, wav: np.ndarray, rate: int) -> float:
        x = self._torch.from_numpy(to_scorer_rate(wav, rate).copy())[None]
        with self._torch.no_grad():
            return float(self._model(x).reshape(-1)[0])


# ------------------------------------------------------------------------------------------ words
class Transcriber:
    """pocketsphinx with its bundled US-English acoustic model, language model and dictionary:
    `__call__(wav [N], rate) -> lower-case words` (empty string when it hears none)."""

    def __init__(self) -> None:
        pocketsphinx = require("pocketsphinx")
        self._decoder = pocketsphinx.Decoder(samprate=SCORER_RATE, loglevel="FATAL")

    def __call__(self, wav: np.ndarray, rate: int) -> str:
        pcm = (np.clip(to_scorer_rate(wav, rate), -1, 1) * 32767).astype(np.int16)
        self._decoder.start_utt()
        self._decoder.process_raw(pcm.tobytes(), full_utt=True)
        self._decoder.end_utt()
        hyp = self._decoder.hyp()
        return " ".join(words(hyp.hypstr)) if hyp is not None else ""


_WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> list[str]:
    """Lower-case words, punctuation dropped (apostrophes kept: "don't" is one word)."""
    return _WORD.findall(text.lower())


def word_errors(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Word-level edit distance: the fewest substitutions + deletions + insertions."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i]
        for j, hyp in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp)))
        previous = current
    return previous[-1]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Edit distance / reference words; NaN when the reference has no words (the rate is undefined)."""
    ref = words(reference)
    return word_errors(ref, words(hypothesis)) / len(ref) if ref else math.nan


# ------------------------------------------------------------------------------------------ pitch
def median_f0(f0: np.ndarray, voiced: np.ndarray) -> float | None:
    """Median Hz over voiced frames; None when no frame is voiced."""
    values = np.asarray(f0)[np.asarray(voiced, dtype=bool) & (np.asarray(f0) > 0)]
    return float(np.median(values)) if len(values) else None


def key_shift(source_median_hz: float | None, target_median_hz: float | None) -> float:
    """Semitones that move the source's median F0 onto the target's, within the engine's key range;
    0 when either median is unknown. Rounded to 0.01 semitone."""
    if not source_median_hz or not target_median_hz:
        return 0.0
    shift = 12.0 * math.log2(target_median_hz / source_median_hz)
    return round(min(max(shift, KEY_RANGE[0]), KEY_RANGE[1]), 2)

