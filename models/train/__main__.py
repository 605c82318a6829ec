"""`python -m models.train prepare|teacher|distill|vocoder|evaluate` (multi-GPU: `torchrun ... -m models.train`).

Exit codes: 0 ok, 2 bad input (one sentence on stderr), 130 interrupted (a checkpoint of the current
step is written first), 1 unexpected failure.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from models.cli import run_command
from models.pitch import EXTRACTORS
from models.train.errors import TrainError

STAGES = ("teacher", "distill", "vocoder")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m models.train", description=(
        "Train CoMoSVC: prepare data, the EDM teacher, the one-step consistency student (distill) and the "
        "vocoder (NSF-HiFiGAN, or harmonic-plus-noise with --set vocoder_model.type=hn); evaluate teacher vs "
        "student. Checkpoints are in the official layouts."))
    sub = p.add_subparsers(dest="command", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="config override, e.g. --set train.batch_size=16 (repeatable; YAML values)")
        q.add_argument("--threads", type=int, help="torch CPU threads per process")
        q.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
        q.add_argument("-v", "--verbose", action="store_true", help="full traceback on errors")

    q = sub.add_parser("prepare", help="DATA_DIR/<speaker>/*.wav|flac|ogg|mp3 -> features in WORK_DIR")
    q.add_argument("data_dir", type=Path)
    q.add_argument("work_dir", type=Path)
    q.add_argument("--content", help="content encoder: ContentVec (fairseq .pt / HF folder) or a PPG encoder .pt "
                                     "(required on the first run)")
    q.add_argument("--f0", choices=tuple(EXTRACTORS),
                   help="F0 extractor (default dio, official; yin: frame-local, no lookahead, for "
                        "low-latency voices)")
    q.add_argument("--size", choices=("tiny", "demo", "official"), default="official",
                   help="network size preset written to the new config (default official)")
    q.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    common(q)

    for name, text in (("teacher", "train the EDM teacher"), ("distill", "distil the one-step student"),
                       ("vocoder", "train or fine-tune the vocoder (vocoder_model.type: nsf-hifigan or hn)")):
        q = sub.add_parser(name, help=text)
        q.add_argument("work_dir", type=Path)
        if name == "distill":
            q.add_argument("--teacher", help="teacher checkpoint model_<step>.pt (config.yaml beside it)")
        if name == "vocoder":
            q.add_argument("--mels-from", help="learn from this acoustic model's one-step mels of the items "
                                               "(a teacher or student model_<step>.pt) instead of the recorded mels: "
                                               "fine-tunes a vocoder for that model's output")
        q.add_argument("--init-from", help="start from this checkpoint (teacher/distill: a base model whose "
                                           "speakers are kept and WORK_DIR's new ones added; vocoder: an "
                                           "M4Singer .ckpt, openvpi model or hn_vocoder_<step>.ckpt)")
        q.add_argument("--max-steps", type=int, help="stop at this total step count, with a checkpoint (0: the initial weights; "
                            "for distill, the teacher as the one-step student)")
        q.add_argument("--device", help="cpu, cuda (default: cuda when available)")
        common(q)

    q = sub.add_parser("evaluate", help="teacher (N steps) vs student (1 step) on the validation set")
    q.add_argument("work_dir", type=Path)
    q.add_argument("--ckpt", required=True, help="student checkpoint (logs/como/model_<step>.pt)")
    q.add_argument("--teacher", help="teacher checkpoint (default: the student's frozen teacher copy)")
    q.add_argument("--vocoder", help="vocoder checkpoint (default: config vocoder.ckpt, else the newest in "
                                     "logs/vocoder)")
    q.add_argument("--steps", type=int, default=50, help="teacher sampling steps (default 50)")
    q.add_argument("--out", type=Path, help="report folder (default WORK_DIR/eval)")
    q.add_argument("--device", help="cpu, cuda (default: cuda when available)")
    common(q)
    return p


def _check(args: argparse.Namespace) -> None:
    if getattr(args, "max_steps", None) is not None and args.max_steps < 0:
        raise TrainError(f"--max-steps must be >= 0, got {args.max_steps}")
    if args.threads is not None and args.threads < 1:
        raise TrainError(f"--threads must be >= 1, got {args.threads}")
    if getattr(args, "workers", 1) < 1:
        raise TrainError(f"--workers must be >= 1, got {args.workers}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _interrupt_on_signals() -> None:
    """Ctrl-C and SIGTERM (job schedulers, `kill`) both end training through KeyboardInterrupt, so the
    current step is checkpointed; also when the shell started us with SIGINT ignored (background jobs)."""
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def run(args: argparse.Namespace) -> None:
    import torch

    from models.train.config import CONFIG_NAME, load_config

    _check(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.command == "prepare":
        from models.train.prepare import prepare

        result = prepare(args.data_dir, args.work_dir, args.content, args.f0, args.size, args.workers, args.set,
                         args.quiet)
        print(f"prepared {result['items']} items ({result['train']} train, {result['val']} validation) of "
              f"{len(result['speakers'])} speaker(s) in {args.work_dir}", file=sys.stderr)
        if result["skipped"]:
            print(f"skipped {len(result['skipped'])} file(s) (also listed in {args.work_dir / 'skipped.txt'}):",
                  file=sys.stderr)
            for reason in result["skipped"]:
                print(f"  {reason}", file=sys.stderr)
        return
    cfg = load_config(args.work_dir / CONFIG_NAME, args.set)
    if args.command == "evaluate":
        from models.train.evaluate import evaluate

        report = evaluate(args.work_dir, cfg, args.ckpt, args.teacher, args.vocoder, args.steps, args.out,
                          args.device, args.quiet)
        print(f"report written to {report}", file=sys.stderr)
        return
    from models.train.checkpoint_io import RESUME_NAME
    from models.train.loop import init_dist, run as train

    _interrupt_on_signals()
    d = init_dist(args.device)
    if args.command == "teacher":
        from models.train.acoustic import TeacherStage

        stage = TeacherStage(args.work_dir, cfg, d, args.init_from)
    elif args.command == "distill":
        from models.train.acoustic import DistillStage

        stage = DistillStage(args.work_dir, cfg, d, args.teacher, args.init_from)
    else:
        from models.train.vocoder_stage import VocoderStage

        stage = VocoderStage(args.work_dir, cfg, d, args.init_from, args.mels_from)
    if args.init_from and d.main and ((stage.folder / RESUME_NAME).is_file() or stage.newest_weights() is not None):
        print(f"{stage.name}: --init-from {args.init_from} not used: {stage.folder} already holds this stage's "
              "checkpoints, which it continues", file=sys.stderr)
    step = train(stage, args.max_steps, args.quiet)
    if d.main:
        print(f"{stage.name}: stopped at step {step}; checkpoints in {stage.folder}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    return run_command(argv, build_parser(), _run_and_leave_the_group, (TrainError,), "interrupted")


def _run_and_leave_the_group(args: argparse.Namespace) -> None:
    try:
        run(args)
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
