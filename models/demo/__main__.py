"""`python -m models.demo {data,ppg,ppg-eval,targets,export,build} WORK [...]`, `evaluate PACK WORK [...]`: the demo voice's stages (see __init__)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _frames(text: str) -> int:
    """argparse type: a non-negative number of frames."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    from models.content.ppg import FRAMINGS

    parser = argparse.ArgumentParser(prog="python -m models.demo", description=__doc__)
    sub = parser.add_subparsers(dest="stage", required=True)
    data = sub.add_parser("data", help="synthesise the labelled corpus into WORK/data (resumable)")
    data.add_argument("work", type=Path)
    data.add_argument("--minutes", type=float, default=40.0, help="train audio to reach (default 40)")
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--workers", type=int, default=2)
    data.add_argument("--no-mbrola", action="store_true", help="leave the non-commercial MBROLA voices out")
    ppg = sub.add_parser("ppg", help="train the PPG content encoder into WORK/ppg (resumable)")
    ppg.add_argument("work", type=Path)
    ppg.add_argument("--minutes", type=float, default=60.0, help="wall-clock minutes to train in this run")
    ppg.add_argument("--steps", type=int, default=0, help="stop at this total step count (0: no limit)")
    ppg.add_argument("--seed", type=int, default=0)
    ppg.add_argument("--threads", type=int, default=2)
    ppg.add_argument("--framing", choices=tuple(FRAMINGS), default=None,
                     help="a new encoder's frames: contentvec (16 kHz, 20 ms hop; the default) or mel (24 kHz, "
                          "one frame per mel frame, no resampler: the low-latency voices); a resumed run keeps its own")
    ppg.add_argument("--right-context", type=_frames, default=None,
                     help="a new encoder's lookahead in content frames (default 2); a resumed run keeps its own")
    ppg.add_argument("--no-mbrola", action="store_true",
                     help="train without the non-commercial MBROLA voices (an encoder that ships)")
    ev = sub.add_parser("ppg-eval", help="score WORK/ppg/ppg.pt on the held-out test sets")
    ev.add_argument("work", type=Path)
    ev.add_argument("--checkpoint", type=Path, default=None, help="default WORK/ppg/ppg.pt")
    tg = sub.add_parser("targets", help="synthesise the target voices' speech into WORK/targets (resumable)")
    tg.add_argument("work", type=Path)
    tg.add_argument("--minutes-per-voice", type=float, default=15.0, help="audio per voice to reach (default 15)")
    tg.add_argument("--voices", nargs="+", default=None, help="Kokoro voices (default: the four targets)")
    tg.add_argument("--seed", type=int, default=0)
    tg.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default 1)")
    ex = sub.add_parser("export", help="the demo voice pack from WORK's newest student, vocoder and PPG, with "
                                       "speaker names, preview clips and its SOURCES.md")
    ex.add_argument("work", type=Path)
    ex.add_argument("--pack", type=Path, default=Path("voices/demo"), help="where the pack goes (default voices/demo)")
    ex.add_argument("--dry-run", action="store_true", help="print the exporter command, write nothing")
    from models.demo.build import PLAN, STAGES
    bd = sub.add_parser("build", help="the demo voice pack from nothing: every stage in order, resumable")
    bd.add_argument("work", type=Path)
    bd.add_argument("--pack", type=Path, default=Path("voices/demo"), help="where the pack goes (default voices/demo)")
    bd.add_argument("--until", choices=STAGES, help="stop after this stage")
    bd.add_argument("--only", choices=STAGES, help="run this stage alone (again, even if done)")
    bd.add_argument("--dry-run", action="store_true", help="print the commands of the stages still to run")
    bd.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help=f"change the plan of a new build ({', '.join(sorted(PLAN))})")
    pe = sub.add_parser("evaluate", help="score a voice pack on the held-out sets through the streaming engine")
    pe.add_argument("pack", type=Path, help="voice pack folder")
    pe.add_argument("work", type=Path, help="the demo WORK folder (its data/ has the held-out sets)")
    pe.add_argument("--block-ms", type=float, default=20.0, help="streaming block (default 20)")
    pe.add_argument("--max-utterances", type=int, default=None, help="per held-out set (default: all)")
    pe.add_argument("--out", type=Path, default=None, help="report folder (default WORK/eval/<pack name>)")
    pe.add_argument("--target-audio", type=Path, default=None,
                    help="DIR/<speaker>/*.flac: reference audio for speakers the pack has no reference/<speaker>.wav for")
    pe.add_argument("--f0", choices=("fcpe", "dio"), default="fcpe", help="pitch extractor for the scores (default fcpe)")
    pe.add_argument("--rate", type=int, default=48000, help="device sample rate the converter runs at (default 48000)")
    pe.add_argument("--threads", type=int, default=1, help="onnxruntime threads per session (default 1)")
    args = parser.parse_args(argv)

    from models.checkpoints import CheckpointError
    from models.demo.data import DataError
    from models.demo.tools import ToolError
    from models.demo.pack_eval import EvalError
    from models.demo.voice_metrics import MissingPackage
    from engine.voicepack import VoicePackError

    try:
        if args.stage == "data":
            from models.demo.data import make_data
            totals = make_data(args.work, args.minutes, args.seed, args.workers, mbrola=not args.no_mbrola)
            print("done: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in sorted(totals.items())))
        elif args.stage == "ppg":
            from models.demo.ppg_train import train
            train(args.work, minutes=args.minutes, max_steps=args.steps, seed=args.seed, threads=args.threads,
                  framing=args.framing, right_context=args.right_context, mbrola=not args.no_mbrola)
        elif args.stage == "build":
            from models.demo.build import BuildError, build, plan_with
            try:
                build(args.work, args.pack, plan_with(args.set), args.until, args.only, args.dry_run)
            except BuildError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
        elif args.stage == "export":
            from models.demo.export import export_demo
            return export_demo(args.work, args.pack, args.dry_run)
        elif args.stage == "targets":
            from models.demo.targets import TARGET_VOICES, make_targets
            totals = make_targets(args.work, args.minutes_per_voice, tuple(args.voices or TARGET_VOICES), args.seed,
                                  args.threads)
            print("done: " + ", ".join(f"{v} {s / 60:.1f} min" for v, s in totals.items()))
        elif args.stage == "evaluate":
            from models.demo.pack_eval import evaluate_pack
            evaluate_pack(args.pack, args.work, args.block_ms, args.max_utterances, args.out, args.target_audio,
                          args.f0, args.rate, args.threads)
        else:
            from models.demo.ppg_eval import evaluate
            evaluate(args.work, args.checkpoint)
    except (DataError, ToolError, CheckpointError, FileNotFoundError, EvalError, MissingPackage, VoicePackError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
