"""Score a voice pack on the held-out test sets, through the streaming engine (issue 12, "Acceptance").

    python -m models.demo evaluate PACK WORK [--block-ms 20] [--max-utterances N] [--out REPORT_DIR]
                                   [--target-audio DIR] [--f0 fcpe|dio] [--rate 48000] [--threads 1]

Sources: the held-out sets of the data command (`WORK/data/kokoro-heldout`: Kokoro voices never
trained on; `WORK/data/flite`: an engine never trained on), at most `--max-utterances` of each. The
`kokoro-seen` set (training voices) is never used.

For every speaker of the pack and every source utterance, the utterance is converted by the same
`engine.converter.Converter` live audio goes through, fed in `--block-ms` blocks at `--rate`
(`convert_whole`, which trims the latency), with the input gate off. The key (Settings.pitch) moves
the source speaker's median F0 onto the target's (`voice_metrics.key_shift`), as a user would set it.

Target references: `--target-audio DIR/<speaker>/*.flac|*.wav` (the folder may also carry the Kokoro
voice's id the speaker is named after, as WORK/targets does: at most REFERENCE_CLIPS files), else the
pack's preview clip of the speaker.

Writes REPORT_DIR/report.json (every number) and report.md (the tables), default WORK/eval/<pack name>.
"""
from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from engine.converter import Converter, convert_whole
from engine.model_audio import MODEL_RATE
from engine.settings import Settings
from engine.voicepack import VoiceManifest, VoicePackError, load_manifest
from engine.voices import load_voice
from models.demo.corpus import split_files
from models.demo.targets import TARGET_VOICES, display_name
from models.demo.utterance import Utterance, read_audio, read_meta
from models.demo.voice_metrics import (MosScorer, SpeakerEmbedder, Transcriber, key_shift, median_f0, require,
                                       word_errors, words)
from models.pitch import PitchExtractor, f0_agreement, make_pitch_extractor, shift_f0

HELDOUT_SETS = ("kokoro-heldout", "flite")  # models/demo/data.py: voices / an engine never trained on
REFERENCE_CLIPS = 8       # target clips averaged for the reference embedding, median F0 and MOS
AUDIO_SUFFIXES = (".wav", ".flac")
#: issue 12's acceptance bounds: (metric in `summary`, bound, "min" = at least / "max" = at most)
ACCEPTANCE = {
    "target_wins": (0.90, "min"),
    "sim_target": (0.75, "min"),
    "f0_corr": (0.90, "min"),
    "mos_output": (3.5, "min"),
    "wer": (0.50, "max"),
}


class EvalError(RuntimeError):
    """The pack or the work folder cannot be evaluated (one sentence says why)."""


@dataclass
class Source:
    """One held-out utterance at the model rate, with what does not depend on the target."""

    id: str
    set: str
    speaker: str
    text: str
    audio: np.ndarray                   # float32 [N] at 24 kHz
    f0: np.ndarray                      # Hz [N // 128], 0 where unvoiced
    voiced: np.ndarray                  # bool [N // 128]
    embedding: np.ndarray               # resemblyzer unit vector [256]
    mos: float                          # DistillMOS
    transcript: str                     # pocketsphinx's words


@dataclass
class Target:
    name: str
    id: int
    reference: str                      # where its reference audio came from
    embedding: np.ndarray
    median_f0: float | None
    mos: float


@dataclass
class Row:
    """Scores of one (target, source utterance) conversion."""

    target: str
    source: str
    set: str
    source_speaker: str
    key: float
    sim_target: float
    sim_source: float
    f0_corr: float
    f0_rmse_cents: float
    mos_output: float
    words_in: int
    word_errors: int
    transcript_in: str
    transcript_out: str
    seconds: float
    convert_seconds: float


@dataclass
class Scorers:
    """The metric back ends, all built before any conversion (so a missing package stops the run at once)."""

    pitch: PitchExtractor
    speaker: SpeakerEmbedder
    mos: MosScorer
    words: Transcriber

    @classmethod
    def build(cls, f0_method: str) -> "Scorers":
        if f0_method == "fcpe":
            require("torchfcpe")
        return cls(make_pitch_extractor(f0_method), SpeakerEmbedder(), MosScorer(), Transcriber())


def _load_24k(path: Path) -> np.ndarray:
    """A reference clip, mono at 24 kHz."""
    try:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
    except sf.LibsndfileError as exc:
        raise EvalError(f"cannot read reference audio {path} ({exc})") from None
    mono = audio.mean(axis=1)
    return mono if rate == MODEL_RATE else soxr.resample(mono, rate, MODEL_RATE).astype(np.float32)


def pick_utterances(paths: list[Path], limit: int | None) -> list[tuple[Path, Utterance]]:
    """At most `limit` sidecars, taken from the speakers in turn (each in id order), so a small limit
    still hears every voice of a set (the data command writes a set voice by voice)."""
    by_speaker: dict[str, list[tuple[Path, Utterance]]] = {}
    for path in paths:
        meta = read_meta(path)
        by_speaker.setdefault(meta.speaker, []).append((path, meta))
    turns = itertools.zip_longest(*(by_speaker[s] for s in sorted(by_speaker)))
    return [item for turn in turns for item in turn if item is not None][:limit]


def load_sources(work: Path, max_utterances: int | None, scorers: Scorers) -> list[Source]:
    """The held-out utterances (at most `max_utterances` of each set, see `pick_utterances`), scored once."""
    data = work / "data"
    if not data.is_dir():
        raise EvalError(f"{work} has no data/ folder: run `python -m models.demo data {work}` first")
    sources = []
    for name in HELDOUT_SETS:
        for path, meta in pick_utterances(split_files(data, name), max_utterances):
            if meta.split != name:
                raise EvalError(f"{path} says it belongs to split {meta.split!r}, not {name!r}")
            audio = read_audio(path)
            if meta.sample_rate != MODEL_RATE:
                audio = soxr.resample(audio, meta.sample_rate, MODEL_RATE).astype(np.float32)
            f0, voiced = scorers.pitch.raw(audio)
            sources.append(Source(meta.id, name, meta.speaker, meta.text, audio, f0, voiced,
                                  scorers.speaker.embed(audio, MODEL_RATE), scorers.mos(audio, MODEL_RATE),
                                  scorers.words(audio, MODEL_RATE)))
    if not sources:
        raise EvalError(f"{data} holds no held-out utterances ({', '.join(HELDOUT_SETS)}): "
                        f"run `python -m models.demo data {work}` first")
    return sources


def reference_files(manifest: VoiceManifest, speaker: str, target_audio: Path | None) -> list[Path]:
    """The first REFERENCE_CLIPS audio files of `target_audio/<folder>/` (the folder named as the speaker or
    as the Kokoro voice it is named after, `targets.display_name`), else the pack's preview clip of it."""
    if target_audio is not None:
        names = [speaker, *(voice for voice in TARGET_VOICES if display_name(voice) == speaker)]
        for folder in (target_audio / name for name in names):
            files = sorted(p for p in folder.glob("*") if p.suffix.lower() in AUDIO_SUFFIXES) if folder.is_dir() else []
            if files:
                return files[:REFERENCE_CLIPS]
    clip = manifest.references.get(speaker)
    if clip is not None:
        return [Path(manifest.folder) / clip.file]
    where = f" and {target_audio / speaker} holds no .wav/.flac" if target_audio else ""
    raise EvalError(f"speaker {speaker!r} has no reference audio: the pack has no preview clip of it{where}; "
                    "pass --target-audio DIR with DIR/<speaker>/*.flac (e.g. WORK/targets)")


def load_targets(pack: Path, manifest: VoiceManifest, target_audio: Path | None, scorers: Scorers) -> list[Target]:
    targets = []
    for name, sid in sorted(manifest.speakers.items(), key=lambda kv: kv[1]):
        files = reference_files(manifest, name, target_audio)
        clips = [_load_24k(p) for p in files]
        voiced_f0 = [scorers.pitch.raw(c) for c in clips]
        f0 = np.concatenate([f for f, _ in voiced_f0])
        voiced = np.concatenate([v for _, v in voiced_f0])
        targets.append(Target(name, sid, str(files[0] if len(files) == 1 else files[0].parent),
                              scorers.speaker.centroid(clips, MODEL_RATE), median_f0(f0, voiced),
                              float(np.mean([scorers.mos(c, MODEL_RATE) for c in clips]))))
    return targets


def speaker_medians(sources: list[Source]) -> dict[str, float | None]:
    """Median F0 of each source speaker over all its evaluated utterances."""
    out: dict[str, float | None] = {}
    for speaker in sorted({s.speaker for s in sources}):
        mine = [s for s in sources if s.speaker == speaker]
        out[speaker] = median_f0(np.concatenate([s.f0 for s in mine]), np.concatenate([s.voiced for s in mine]))
    return out


def _open_manifest(pack: Path) -> VoiceManifest:
    if not (pack / "voice.json").is_file():
        raise EvalError(f"{pack} is not a voice pack folder (no voice.json)")
    return load_manifest(pack, verify_hashes=False)  # load_voice hashes the networks it opens


def evaluate_pack(pack: Path, work: Path, block_ms: float = 20.0, max_utterances: int | None = None,
                  out: Path | None = None, target_audio: Path | None = None, f0_method: str = "fcpe",
                  rate: int = 48000, threads: int = 1, log: Callable[[str], None] = print) -> dict:
    """Run the evaluation; -> the report (also written to `out`/report.json and report.md).

    The torch scorers run on one thread: with two, resemblyzer's LSTM interleaved with DistillMOS took
    12 s per embedding instead of 0.1 s on the 2-core VM (oneDNN / OpenMP thrashing)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _evaluate(pack, work, block_ms, max_utterances, out, target_audio, f0_method, rate, threads, log)
    finally:
        torch.set_num_threads(before)


def _evaluate(pack: Path, work: Path, block_ms: float, max_utterances: int | None, out: Path | None,
              target_audio: Path | None, f0_method: str, rate: int, threads: int, log: Callable[[str], None]) -> dict:
    if max_utterances is not None and max_utterances < 1:
        raise EvalError(f"--max-utterances must be at least 1, got {max_utterances}")
    if rate < 8000 or threads < 1:
        raise EvalError(f"--rate must be at least 8000 Hz and --threads at least 1, got {rate} and {threads}")
    pack, work = Path(pack), Path(work)
    manifest = _open_manifest(pack)
    if not work.is_dir():
        raise EvalError(f"work folder {work} does not exist")
    try:
        settings = Settings(block_ms=block_ms, speaker=min(manifest.speakers.values()), gate_db=-120.0)
    except ValueError as exc:
        raise EvalError(str(exc)) from None
    scorers = Scorers.build(f0_method)
    sources = load_sources(work, max_utterances, scorers)
    targets = load_targets(pack, manifest, target_audio, scorers)
    medians = speaker_medians(sources)
    keys = {(t.name, spk): key_shift(m, t.median_f0) for t in targets for spk, m in medians.items()}
    converter = Converter(lambda s: load_voice(str(pack), s, ("cpu",), threads), settings, rate)
    block = max(1, int(round(block_ms * rate / 1000)))
    log(f"{manifest.name}: {len(targets)} speakers x {len(sources)} held-out utterances at {block_ms:g} ms blocks")
    rows = []
    for target in targets:
        for src in sources:
            key = keys[(target.name, src.speaker)]
            converter.update(speaker=target.id, pitch=key)
            converter.reset()
            x = soxr.resample(src.audio, MODEL_RATE, rate).astype(np.float32) if rate != MODEL_RATE else src.audio
            t0 = time.perf_counter()
            y = convert_whole(converter, x, block=block)
            elapsed = time.perf_counter() - t0
            y24 = soxr.resample(y, rate, MODEL_RATE).astype(np.float32) if rate != MODEL_RATE else y
            rows.append(score(target, src, key, y24, elapsed, scorers))
        log(f"  {target.name}: done")
    report = summarise(manifest, pack, rows, targets, sources, keys, medians, converter, block, rate, f0_method)
    out = Path(out) if out else work / "eval" / manifest.name
    write_report(out, report)
    log(f"report: {out / 'report.md'}")
    return report


def score(target: Target, src: Source, key: float, y24: np.ndarray, elapsed: float, scorers: Scorers) -> Row:
    """All scores of one conversion `y24` (float32 [N] at 24 kHz, aligned with the source)."""
    f0_out, _ = scorers.pitch.raw(y24)
    rmse, corr = f0_agreement(f0_out, shift_f0(src.f0, key), src.voiced)
    embedding = scorers.speaker.embed(y24, MODEL_RATE)
    transcript = scorers.words(y24, MODEL_RATE)
    ref = words(src.transcript)
    return Row(target.name, src.id, src.set, src.speaker, key, float(embedding @ target.embedding),
               float(embedding @ src.embedding), corr, rmse, scorers.mos(y24, MODEL_RATE), len(ref),
               word_errors(ref, words(transcript)), src.transcript, transcript, len(src.audio) / MODEL_RATE, elapsed)


def _finite_mean(values: list[float]) -> float:
    v = [x for x in values if math.isfinite(x)]
    return float(np.mean(v)) if v else math.nan


def aggregate(rows: list[Row]) -> dict:
    """Per-group numbers: means, the fraction of utterances closer to the target than to the source,
    and the corpus word error rate (all word errors / all input words)."""
    n_words = sum(r.words_in for r in rows)
    return {
        "utterances": len(rows),
        "sim_target": _finite_mean([r.sim_target for r in rows]),
        "sim_source": _finite_mean([r.sim_source for r in rows]),
        "target_wins": float(np.mean([r.sim_target > r.sim_source for r in rows])),
        "f0_corr": _finite_mean([r.f0_corr for r in rows]),
        "f0_rmse_cents": _finite_mean([r.f0_rmse_cents for r in rows]),
        "f0_scored": sum(math.isfinite(r.f0_corr) for r in rows),
        "mos_output": _finite_mean([r.mos_output for r in rows]),
        "wer": sum(r.word_errors for r in rows) / n_words if n_words else math.nan,
        "words_in": n_words,
        "rtf": sum(r.convert_seconds for r in rows) / sum(r.seconds for r in rows),
    }


def summarise(manifest: VoiceManifest, pack: Path, rows: list[Row], targets: list[Target], sources: list[Source],
              keys: dict[tuple[str, str], float], medians: dict[str, float | None], converter: Converter,
              block: int, rate: int, f0_method: str) -> dict:
    overall = aggregate(rows)
    overall["mos_input"] = _finite_mean([s.mos for s in sources])
    overall["mos_target"] = _finite_mean([t.mos for t in targets])
    latency = converter.latency() + block
    overall["latency_ms"] = 1000.0 * latency / rate
    acceptance = {}
    for metric, (bound, kind) in ACCEPTANCE.items():
        value = overall[metric]
        ok = math.isfinite(value) and (value >= bound if kind == "min" else value <= bound)
        acceptance[metric] = {"value": value, "bound": bound, "kind": kind, "pass": bool(ok)}
    return {
        "pack": {"name": manifest.name, "folder": str(pack), "speakers": manifest.speakers},
        "setup": {"block_ms": 1000.0 * block / rate, "device_rate": rate, "lookahead_ms": converter.settings.lookahead_ms,
                  "crossfade_ms": converter.settings.crossfade_ms, "core": type(converter.core).__name__,
                  "latency_ms": {"converter": 1000.0 * converter.latency() / rate, "block": 1000.0 * block / rate,
                                 "algorithmic": overall["latency_ms"]},
                  "f0_extractor": f0_method, "sets": list(HELDOUT_SETS),
                  "sources": sorted({s.speaker for s in sources})},
        "targets": {t.name: {"id": t.id, "reference": t.reference, "median_f0": t.median_f0, "mos_target": t.mos,
                             "keys": {spk: keys[(t.name, spk)] for spk in medians},
                             **aggregate([r for r in rows if r.target == t.name])} for t in targets},
        "source_median_f0": medians,
        "overall": overall,
        "acceptance": acceptance,
        "rows": [asdict(r) for r in rows],
        "inputs": [{"id": s.id, "set": s.set, "speaker": s.speaker, "mos": s.mos, "transcript": s.transcript,
                    "text": s.text} for s in sources],
    }


def _json_safe(value):
    """NaN -> None (JSON has no NaN); numpy scalars -> Python numbers."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_report(out: Path, report: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(_json_safe(report), indent=1))
    (out / "report.md").write_text(markdown(report))


def _f(value: float | None, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if value is not None and math.isfinite(value) else "n/a"


def markdown(report: dict) -> str:
    setup, overall = report["setup"], report["overall"]
    lines = [f"# Evaluation of voice pack {report['pack']['name']!r}", "",
             f"Held-out sources ({', '.join(setup['sets'])}): {overall['utterances'] // len(report['targets'])} "
             f"utterances of {len(setup['sources'])} speakers, converted through the streaming engine "
             f"({setup['core']}) at {setup['block_ms']:g} ms blocks, {setup['device_rate']} Hz, lookahead "
             f"{setup['lookahead_ms']:g} ms, to each of {len(report['targets'])} speakers. F0 by {setup['f0_extractor']}.",
             "", f"Algorithmic latency {_f(setup['latency_ms']['algorithmic'], 1)} ms (converter "
             f"{_f(setup['latency_ms']['converter'], 1)} + block {_f(setup['latency_ms']['block'], 1)}); streaming "
             f"real-time factor {_f(overall['rtf'], 3)} (conversion time / audio time, this machine).", "",
             "| target | key (st) per source | sim target | sim source | target wins | F0 corr | F0 RMSE (cents) "
             "| MOS out | MOS target | WER |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, t in report["targets"].items():
        keys = ", ".join(f"{k:+.1f}" for k in t["keys"].values())
        lines.append(f"| {name} | {keys} | {_f(t['sim_target'])} | {_f(t['sim_source'])} | {_f(t['target_wins'], 2)} | "
                     f"{_f(t['f0_corr'])} | {_f(t['f0_rmse_cents'], 0)} | {_f(t['mos_output'], 2)} | "
                     f"{_f(t['mos_target'], 2)} | {_f(t['wer'], 2)} |")
    lines.append(f"| **all** | | {_f(overall['sim_target'])} | {_f(overall['sim_source'])} | "
                 f"{_f(overall['target_wins'], 2)} | {_f(overall['f0_corr'])} | {_f(overall['f0_rmse_cents'], 0)} | "
                 f"{_f(overall['mos_output'], 2)} | {_f(overall['mos_target'], 2)} | {_f(overall['wer'], 2)} |")
    lines += ["", f"DistillMOS of the inputs: {_f(overall['mos_input'], 2)}.", "", "Acceptance (issue 12):", "",
              "| metric | value | bound | pass |", "|---|---|---|---|"]
    for metric, a in report["acceptance"].items():
        lines.append(f"| {metric} | {_f(a['value'])} | {'≥' if a['kind'] == 'min' else '≤'} {a['bound']} | "
                     f"{'yes' if a['pass'] else 'NO'} |")
    lines += ["", "sim target / sim source: resemblyzer cosine of the output to the target's reference and to the "
              "source utterance; target wins: fraction of utterances with sim target > sim source. F0 corr / RMSE: "
              "output F0 against the key-shifted input F0 on frames voiced in both. MOS: DistillMOS (1..5). WER: "
              "pocketsphinx's transcript of the output scored against its transcript of the input "
              "(all word errors / all input words)."]
    return "\n".join(lines) + "\n"
