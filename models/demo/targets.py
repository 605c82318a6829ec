"""The targets command: speech of the pack's target voices for the teacher, student and vocoder.

    python -m models.demo targets WORK [--minutes-per-voice 15] [--voices af_heart ...] [--seed 0]

Each target voice reads the corpus's training sentences (`build_corpus(seed).train`, never its test
sentences) in its own seeded order at a seeded speaking rate of 0.9–1.1; utterance i of a voice
depends only on the seed, the voice and i, so a larger `--minutes-per-voice` later continues the
same plan. Voices take turns, one utterance each, so a run stopped early leaves them balanced.

Output: WORK/targets/<voice>/<voice>-<i>.flac (24 kHz) + .json (text, rate, phone labels; written
last, so it marks the utterance finished) — one folder per speaker, as `python -m models.train
prepare WORK/targets ...` reads it. Text Kokoro cannot take (unmapped phones, too many tokens) is
recorded in a `.skip` file and passed over.
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from models.demo import tools
from models.demo.data import HELDOUT_VOICES, DataError, check_plan
from models.demo.kokoro import SAMPLE_RATE, Kokoro, text_to_tokens
from models.demo.phones import UnknownPhone
from models.demo.text import build_corpus
from models.demo.utterance import Utterance, merge_runs, read_meta, write_skip, write_utterance

TARGET_VOICES = ("af_heart", "af_sky", "am_eric", "bm_george")  # two female, two male (issue 12)
SPEED_RANGE = (0.9, 1.1)
#: Kokoro's English voice ids: accent letter, sex letter, '_', name (af_heart: American female "heart")
_ACCENTS = {"a": "American", "b": "British"}
_SEXES = {"f": "female", "m": "male"}


def display_name(voice: str) -> str:
    """The name the pack and the app show for an English Kokoro voice: 'af_heart' → 'Heart (American female)'."""
    accent, sex, sep, name = voice[:1], voice[1:2], voice[2:3], voice[3:]
    if accent not in _ACCENTS or sex not in _SEXES or sep != "_" or not name:
        raise DataError(f"{voice!r} is not an English Kokoro voice id (a|b, f|m, '_', name)")
    return f"{name.capitalize()} ({_ACCENTS[accent]} {_SEXES[sex]})"


def voice_plan(seed: int, voice: str, sentences: list[str]) -> Iterator[tuple[str, str, float]]:
    """(id, text, speed) of a voice's utterances in order; each sentence once."""
    rng = random.Random(f"targets:{seed}:{voice}")  # str seeds hash with SHA-512: the same in every process
    order = list(sentences)
    rng.shuffle(order)
    for i, text in enumerate(order):
        yield f"{voice}-{i:05d}", text, round(rng.uniform(*SPEED_RANGE), 3)


def _done_seconds(folder: Path, utt_id: str) -> float | None:
    """Seconds of a finished utterance (0 for a skipped one), or None when it still has to be made."""
    if (folder / f"{utt_id}.skip").exists():
        return 0.0
    meta = folder / f"{utt_id}.json"
    return read_meta(meta).seconds if meta.exists() else None


def synthesize_target(kokoro: Kokoro, voice: str, utt_id: str, text: str, speed: float) -> Utterance:
    """One target utterance with its phone labels. Raises UnknownPhone / ValueError for text Kokoro cannot take."""
    audio, phones, ends = kokoro.synthesize(text_to_tokens(text), kokoro.style_table(voice), speed)
    phones, ends = merge_runs(phones, ends)
    return Utterance(utt_id, "targets", "kokoro", f"kokoro:{voice}", text, SAMPLE_RATE, phones, ends,
                     {"speed": speed, "voices": [voice], "weights": [1.0]}, audio)


def make_targets(work: Path, minutes_per_voice: float = 15.0, voices: tuple[str, ...] = TARGET_VOICES,
                 seed: int = 0, threads: int = 1, log: Callable[[str], None] = print) -> dict[str, float]:
    """Synthesise until every voice has `minutes_per_voice` of audio in WORK/targets. -> seconds per voice."""
    if minutes_per_voice <= 0:
        raise DataError(f"--minutes-per-voice must be positive, got {minutes_per_voice}")
    if not voices or len(set(voices)) != len(voices):
        raise DataError(f"give each target voice once, got {list(voices)}")
    held_out = [v for v in voices if v in HELDOUT_VOICES]
    if held_out:
        raise DataError(f"{held_out} are held out of training (the test sources); choose other target voices")
    voices_dir = tools.ensure_kokoro(work / "downloads")
    missing = [v for v in voices if not (voices_dir / f"{v}.bin").exists()]
    if missing:
        raise DataError(f"Kokoro voices {missing} are not in {voices_dir}")
    out = work / "targets"
    out.mkdir(parents=True, exist_ok=True)
    check_plan(out, {"seed": seed, "speed": SPEED_RANGE})
    sentences = build_corpus(seed).train
    plans = {v: voice_plan(seed, v, sentences) for v in voices}
    totals = {v: 0.0 for v in voices}
    goal = minutes_per_voice * 60
    kokoro: Kokoro | None = None  # loaded on the first utterance that has to be made
    cpu0, made, last_log = time.process_time(), 0, time.monotonic()

    def report() -> None:
        log(", ".join(f"{v} {s / 60:.2f} min" for v, s in totals.items()) + f" (goal {minutes_per_voice:g} min each), "
            f"{made} made this run, CPU {(time.process_time() - cpu0) / 60:.1f} min")

    while active := [v for v in voices if totals[v] < goal and v in plans]:
        for voice in active:
            folder = out / voice
            for utt_id, text, speed in plans[voice]:
                done = _done_seconds(folder, utt_id)
                if done is not None:
                    totals[voice] += done
                    if totals[voice] >= goal:
                        break
                    continue
                kokoro = kokoro or Kokoro(voices_dir, threads=threads)
                try:
                    utt = synthesize_target(kokoro, voice, utt_id, text, speed)
                except (UnknownPhone, ValueError) as e:
                    write_skip(folder, utt_id, str(e))
                    log(f"skipped {utt_id}: {e}")
                    continue
                write_utterance(folder, utt)
                totals[voice] += utt.seconds
                made += 1
                break  # one new utterance per voice per turn
            else:
                log(f"{voice}: all {len(sentences)} training sentences used")
                del plans[voice]
        if time.monotonic() - last_log > 60:
            last_log = time.monotonic()
            report()
    report()
    return totals
