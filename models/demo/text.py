"""Sentences to synthesise: freely licensed English text found on this machine, split train / test.

Sources: Python's bundled help topics (`pydoc_data.topics`) and the docstrings of the standard
library's modules (both under the PSF licence), plus sentences from a small template grammar for
everyday words the technical text lacks. The list is deterministic for one Python version and seed;
`test` sentences never appear in training utterances.
"""
from __future__ import annotations

import ast
import random
import re
import sysconfig
from dataclasses import dataclass
from pathlib import Path

SENTENCE = re.compile(r"[A-Z][A-Za-z ,;'\-]+[.?!]")
MIN_WORDS, MAX_WORDS = 5, 22
TEST_FRACTION = 0.1


@dataclass(frozen=True)
class Corpus:
    train: list[str]
    test: list[str]


def _sentences(text: str) -> list[str]:
    flat = re.sub(r"\s+", " ", text)
    return [s for s in re.split(r"(?<=[.?!])\s+", flat)
            if SENTENCE.fullmatch(s) and MIN_WORDS <= len(s.split()) <= MAX_WORDS]


def _stdlib_docstrings() -> list[str]:
    """Module, class and function docstrings of the standard library's .py files (sorted walk)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for path in sorted(root.rglob("*.py")):
        parts = set(path.relative_to(root).parts)
        if parts & {"test", "tests", "idle_test", "site-packages", "lib2to3"}:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue  # a few stdlib files are deliberately broken (bad encodings, test fixtures)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    texts.append(doc)
    return texts


_NAMES = ["Anna", "Peter", "Maria", "James", "Olivia", "George", "Sofia", "Daniel", "Emma", "Lucas", "Grace", "Victor"]
_PLACES = ["the garden", "the station", "the kitchen", "the old bridge", "the market", "the library", "the beach",
           "the village", "the mountains", "the harbour", "the school", "the hospital"]
_THINGS = ["a yellow umbrella", "three oranges", "the heavy box", "a warm jacket", "the blue bicycle",
           "some fresh bread", "a paper boat", "the silver key", "a cup of tea", "the morning news",
           "a pair of shoes", "the quiet music"]
_VERBS = ["found", "carried", "wanted", "bought", "lost", "painted", "brought", "noticed", "shared", "kept"]
_TIMES = ["yesterday", "this morning", "on Thursday", "after lunch", "every evening", "last winter",
          "in June", "before the storm", "at midnight", "during the holidays"]
_ASKS = ["Why did {n} leave {p} so early?", "Have you ever seen {t} near {p}?",
         "Would {n} really enjoy {t}?", "How long does it take to reach {p}?"]
_SAYS = ["{n} {v} {t} at {p} {w}.", "{w}, {n} {v} {t} and walked to {p}.",
         "I think {n} {v} {t} {w}.", "We never expected that {n} {v} {t}."]


def _template_sentences(rng: random.Random, count: int) -> list[str]:
    out = []
    for i in range(count):
        pattern = rng.choice(_ASKS if i % 4 == 0 else _SAYS)
        s = pattern.format(n=rng.choice(_NAMES), p=rng.choice(_PLACES), t=rng.choice(_THINGS),
                           v=rng.choice(_VERBS), w=rng.choice(_TIMES))
        out.append(s[0].upper() + s[1:])
    return out


def build_corpus(seed: int) -> Corpus:
    """All sentences, deduplicated and shuffled with `seed`; the first TEST_FRACTION are the test set."""
    import pydoc_data.topics

    texts = list(pydoc_data.topics.topics.values()) + _stdlib_docstrings()
    found = sorted({s for t in texts for s in _sentences(t)})
    rng = random.Random(seed)
    templates = sorted(set(_template_sentences(rng, len(found) // 4)))
    sentences = sorted(set(found) | set(templates))
    rng.shuffle(sentences)
    n_test = max(1, int(len(sentences) * TEST_FRACTION))
    return Corpus(train=sentences[n_test:], test=sentences[:n_test])
