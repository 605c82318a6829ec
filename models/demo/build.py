"""`python -m models.demo build WORK`: the demo voice pack from nothing, stage by stage, resumable.

    data -> ppg -> targets -> prepare -> vocoder -> teacher -> distill -> tune-vocoder -> export

Each stage is the project's own command (the ones a user would type, listed by `--dry-run`), run as
a child process with its output in WORK/build/<stage>.log. A stage that finishes leaves
WORK/build/<stage>.done (its wall and CPU seconds); a later `build` skips it. A stage that stops
(Ctrl-C, a crash, a closed laptop) is simply run again: every command resumes from its own
checkpoints. `--until STAGE` stops after that stage, `--only STAGE` runs one.

The plan (`PLAN`: data minutes, step counts, right contexts, the front ends) is written to
WORK/build/plan.json on the first run and must match afterwards, so a folder never mixes two plans.
The step counts are sized so that each stage fits in under two hours of a 2-core CPU (measured
figures in docs/demo-voice.md); on a GPU pass `--device cuda` and larger counts with `--set`.
The export stage (`python -m models.demo export`, models/demo/export.py) names the speakers, adds their
preview clips and the pack's SOURCES.md; `export WORK --dry-run` prints the exporter command it runs.
The voice it builds is a low-latency one: YIN F0, a mel-grid PPG with one frame of lookahead, a causal
decoder and vocoder (docs/demo-voice.md says why), trained without the non-commercial MBROLA voices.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from models.demo.targets import TARGET_VOICES

#: What `build` makes; `--set NAME=VALUE` changes one value for a new folder.
PLAN: dict[str, Any] = {
    "data_minutes": 60.0,          # labelled training speech for the PPG
    "ppg_steps": 3500,             # PPG optimiser steps (16 x 2 s crops each); held-out accuracy is flat from ~2400
    "ppg_right_context": 1,        # mel frames of lookahead of the content encoder
    "target_minutes": 10.0,        # speech per target voice
    # the harmonic-plus-noise vocoder: ≈ 0.6 s per step on one thread; after 2,000 steps copy-synthesis
    # F0 corr 0.92, DistillMOS 2.8, WER 0.15; "nsf-hifigan" (lr 2e-4) trained out its f0 here: after
    # 3,000 steps F0 corr 0.08, DistillMOS 1.24 (docs/demo-voice.md)
    "vocoder_steps": 2000,
    "vocoder_type": "hn",
    "vocoder_lr": 1e-3,
    "vocoder_tune_steps": 600,     # then on the student's own mels (`vocoder --mels-from`); probe: DistillMOS 1.57 -> 1.81
    # ... at a lower rate: continued from step 2,000 on the recorded mels, 3e-4 took the validation
    # mel L1 from 0.244 to 0.190 in 500 steps (1e-3 had it rise from 0.212 at 1,750)
    "vocoder_tune_lr": 3e-4,
    # The acoustic network is trained by one-step regression (`train.prior_steps` = all its steps:
    # L1 of D(sigma_max eps) on the mel, lr 1e-3 halved every `teacher_lr_half_life` steps, batch 16)
    # and shipped as the one-step student as it is (`distill --max-steps 0`). Measured on 2 CPU cores
    # (docs/demo-voice.md, sixth session): one-step mel L1 0.34 after 1,000-1,400 regression steps,
    # against 0.65 for an EDM teacher of 1,800 steps (0.61 for its distilled student); distilling from
    # the regressed network moved the student away from it (0.38 -> 0.49 in 300 steps), and EDM
    # training after it did not make its low-noise regime converge. The paper's recipe, for a GPU, is
    # `--set` distill_steps=N, teacher_prior_steps=0, teacher_lr=1e-4, teacher_batch_size=48 and
    # teacher_lr_half_life=100000 (those four `train.*` values are the student's too: one config).
    "teacher_steps": 2400,
    "teacher_prior_steps": 2400,
    "teacher_lr": 1e-3,
    "teacher_batch_size": 16,
    "teacher_lr_half_life": 800,
    "distill_steps": 0,
    "decoder_right_context": 0,    # mel frames of lookahead of the decoder (student)
    "vocoder_right_context": 0,
    "size": "demo",
    "f0": "yin",
    "threads": 2,                  # torch threads per stage (the stages run one at a time)
    "checkpoint_every": 100,       # steps between the vocoder/teacher/student checkpoints a stopped stage resumes from
}
#: PLAN names added after the first builds (their plan.json files lack them): the value those builds used
ADDED_TO_PLAN: dict[str, Any] = {"vocoder_type": "nsf-hifigan", "vocoder_lr": 2e-4, "vocoder_tune_steps": 0,
                                 "vocoder_tune_lr": 1e-3,
                                 "teacher_prior_steps": 0, "teacher_lr": 1e-4, "teacher_batch_size": 48,
                                 "teacher_lr_half_life": 100000}
STAGES = ("data", "ppg", "targets", "prepare", "vocoder", "teacher", "distill", "tune-vocoder", "export")


class BuildError(Exception):
    """A stage failed or the folder holds another plan; the message is one sentence."""


@dataclass(frozen=True)
class Stage:
    name: str
    argv: Callable[[Path, dict[str, Any], Path], list[str]]   # (work, plan, pack) -> command line


def _train(command: str, plan: dict[str, Any], steps: int, *extra: str) -> list[str]:
    return ["-m", "models.train", command, "WORK/train", "--max-steps", str(steps),
            "--threads", str(plan["threads"]), "-q", *extra]


def _newest(folder: Path) -> str:
    """The highest-step model_<step>.pt in `folder` (a placeholder before the stage has run)."""
    from models.train.checkpoint_io import newest_acoustic

    return str(newest_acoustic(folder) or folder / "model_<step>.pt")


STAGE_LIST = (
    Stage("data", lambda w, p, k: ["-m", "models.demo", "data", "WORK", "--minutes", str(p["data_minutes"]),
                                   "--no-mbrola"]),
    Stage("ppg", lambda w, p, k: ["-m", "models.demo", "ppg", "WORK", "--framing", "mel", "--right-context",
                                  str(p["ppg_right_context"]), "--no-mbrola", "--steps", str(p["ppg_steps"]),
                                  "--minutes", "100000", "--threads", str(p["threads"])]),
    Stage("targets", lambda w, p, k: ["-m", "models.demo", "targets", "WORK", "--minutes-per-voice",
                                      str(p["target_minutes"]), "--voices", *TARGET_VOICES]),
    Stage("prepare", lambda w, p, k: ["-m", "models.train", "prepare", "WORK/targets", "WORK/train",
                                      "--content", "WORK/ppg/ppg.pt", "--f0", p["f0"], "--size", p["size"],
                                      "--threads", str(p["threads"]), "-q",
                                      "--set", f"model.right_context={p['decoder_right_context']}",
                                      "--set", f"vocoder_model.right_context={p['vocoder_right_context']}",
                                      "--set", f"vocoder_model.type={p['vocoder_type']}",
                                      "--set", f"vocoder_train.lr={p['vocoder_lr']}",
                                      "--set", f"train.prior_steps={p['teacher_prior_steps']}",
                                      "--set", f"train.lr={p['teacher_lr']}",
                                      "--set", f"train.batch_size={p['teacher_batch_size']}",
                                      "--set", f"train.decay_step={p['teacher_lr_half_life']}",
                                      "--set", f"train.interval_force_save={p['checkpoint_every']}"]),
    Stage("vocoder", lambda w, p, k: _train("vocoder", p, p["vocoder_steps"])),
    Stage("teacher", lambda w, p, k: _train("teacher", p, p["teacher_steps"])),
    Stage("distill", lambda w, p, k: _train("distill", p, p["distill_steps"],
                                            "--teacher", _newest(w / "train" / "logs" / "teacher"))),
    # the same vocoder run continued on the student's one-step mels of the items
    Stage("tune-vocoder", lambda w, p, k: _train("vocoder", p, p["vocoder_steps"] + p["vocoder_tune_steps"],
                                                 "--mels-from", _newest(w / "train" / "logs" / "como"),
                                                 "--set", f"vocoder_train.lr={p['vocoder_tune_lr']}")),
    Stage("export", lambda w, p, k: ["-m", "models.demo", "export", "WORK", "--pack", str(k)]),
)
assert tuple(s.name for s in STAGE_LIST) == STAGES


def plan_with(changes: list[str]) -> dict[str, Any]:
    """PLAN with `NAME=VALUE` changes (values parsed as JSON numbers/strings; names must exist)."""
    plan = dict(PLAN)
    for item in changes:
        name, sep, value = item.partition("=")
        if not sep or name not in PLAN:
            raise BuildError(f"--set {item!r}: expected NAME=VALUE with NAME one of {', '.join(sorted(PLAN))}")
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        if type(parsed) is not type(PLAN[name]) and not (isinstance(PLAN[name], float) and isinstance(parsed, int)):
            raise BuildError(f"--set {name}: {value!r} is not a {type(PLAN[name]).__name__}")
        plan[name] = parsed
    if plan["distill_steps"] == 0 and plan["teacher_prior_steps"] < plan["teacher_steps"]:
        # the shipped student is the network as it is: steps of EDM training after the regression
        # would move its one-step output away from the mel (docs/demo-voice.md, sixth session)
        raise BuildError(f"teacher_prior_steps ({plan['teacher_prior_steps']}) is below teacher_steps "
                         f"({plan['teacher_steps']}) with distill_steps 0: set teacher_prior_steps to "
                         "teacher_steps too, or distill_steps above 0 (the paper's recipe)")
    return plan


def command_line(stage: Stage, work: Path, plan: dict[str, Any], pack: Path) -> list[str]:
    """The stage's full command, with WORK spelled out."""
    return [sys.executable, *(a.replace("WORK", str(work)) if a.startswith("WORK") else a
                              for a in stage.argv(work, plan, pack))]


def check_plan(work: Path, plan: dict[str, Any]) -> None:
    """Write WORK/build/plan.json on the first run; afterwards it must equal `plan`. A name added to
    PLAN after the folder was started counts as the value that build ran with (`ADDED_TO_PLAN`)."""
    path = work / "build" / "plan.json"
    if path.exists():
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise BuildError(f"{path} is unreadable ({exc}); move it away to start a new build there") from None
        saved = {**ADDED_TO_PLAN, **saved}
        if saved != plan:
            changed = sorted(k for k in set(saved) | set(plan) if saved.get(k) != plan.get(k))
            raise BuildError(f"{work} was built with another plan ({', '.join(changed)} differ): "
                             "use another WORK folder, or the same settings")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plan, indent=1, sort_keys=True))


def select(until: str | None, only: str | None) -> list[Stage]:
    if only:
        return [s for s in STAGE_LIST if s.name == only]
    stop = STAGES.index(until) + 1 if until else len(STAGES)
    return list(STAGE_LIST[:stop])


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_stage(cmd: list[str], log: Path) -> int:
    """Run one stage's command with its output appended to `log`; -> its exit code."""
    with open(log, "a") as handle:
        handle.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n")
        handle.flush()
        return subprocess.call(cmd, stdout=handle, stderr=subprocess.STDOUT)


def build(work: Path, pack: Path, plan: dict[str, Any], until: str | None = None, only: str | None = None,
          dry_run: bool = False, runner: Callable[[list[str], Path], int] = run_stage,
          log: Callable[[str], None] = print) -> list[str]:
    """Run the stages not yet done, in order; -> the names of the stages run (or listed, when dry)."""
    folder = work / "build"
    if not dry_run:
        check_plan(work, plan)
    ran = []
    for stage in select(until, only):
        done = folder / f"{stage.name}.done"
        cmd = command_line(stage, work, plan, pack)
        if done.exists() and not only:
            log(f"{stage.name}: done ({done.read_text().strip()})")
            continue
        if dry_run:
            log(f"{stage.name}: {' '.join(cmd)}")
            ran.append(stage.name)
            continue
        log(f"{stage.name}: running, log in {folder / (stage.name + '.log')}")
        wall, cpu = time.monotonic(), _children_cpu()
        code = runner(cmd, folder / f"{stage.name}.log")
        if code != 0:
            raise BuildError(f"stage {stage.name} stopped (exit code {code}); see {folder / (stage.name + '.log')}, "
                             "then run build again to resume it")
        done.write_text(f"wall {time.monotonic() - wall:.0f} s, CPU {_children_cpu() - cpu:.0f} s\n")
        log(f"{stage.name}: done ({done.read_text().strip()})")
        ran.append(stage.name)
    return ran
