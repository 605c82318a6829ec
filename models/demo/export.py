"""The export command: the demo voice pack from a built WORK folder (the last stage of `build`).

    python -m models.demo export WORK [--pack voices/demo] [--dry-run]

Writes WORK/build/SOURCES.md (`sources.pack_notice`: what the voice was trained from, without the
MBROLA voices the build leaves out, the Kokoro voices the targets imitate, the weights' licence) and
runs the exporter (`python -m exporters.onnx_export`) on the newest student (WORK/train/logs/como),
the newest vocoder (WORK/train/logs/vocoder) and the PPG (WORK/ppg/ppg.pt), with
- each target speaker named for people (`targets.display_name`: af_heart → "Heart (American female)"),
- its preview clip: the first 5 s of its first target utterance (WORK/targets/<voice>/),
- the notice shipped as the pack's SOURCES.md.
`--dry-run` prints the exporter's command line instead and writes nothing.
"""
from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from engine.voicepack import NOTICE_NAME
from models.demo.data import DataError
from models.demo.sources import pack_notice
from models.demo.targets import TARGET_VOICES, display_name

PACK_NAME = "CoMo demo voices"


def export_argv(work: Path, pack: Path, notice: Path) -> list[str]:
    """The exporter's arguments for the pack of `work`; a `DataError` names what the folder still lacks."""
    from models.train.checkpoint_io import newest_acoustic, newest_vocoder

    student = newest_acoustic(work / "train" / "logs" / "como")
    vocoder = newest_vocoder(work / "train" / "logs" / "vocoder")
    content = work / "ppg" / "ppg.pt"
    firsts = {voice: min((work / "targets" / voice).glob("*.flac"), default=None) for voice in TARGET_VOICES}
    missing = ([] if student else ["a student checkpoint (train/logs/como/model_<step>.pt)"]) \
        + ([] if vocoder else ["a vocoder checkpoint (train/logs/vocoder)"]) \
        + ([] if content.is_file() else ["the PPG encoder (ppg/ppg.pt)"]) \
        + [f"speech of {voice} (targets/{voice}/*.flac)" for voice, first in firsts.items() if first is None]
    if missing:
        raise DataError(f"{work} has no {', no '.join(missing)}: run the earlier stages first "
                        f"(python -m models.demo build {work})")
    argv = [str(student), "--vocoder", str(vocoder), "--content", str(content), "--name", PACK_NAME,
            "--out", str(pack), "--notice", str(notice)]
    for voice, first in firsts.items():
        argv += ["--speaker-name", f"{voice}={display_name(voice)}", "--reference", f"{voice}={first}"]
    return argv


def export_demo(work: Path, pack: Path, dry_run: bool = False, log: Callable[[str], None] = print) -> int:
    """Write the notice and export the pack (or, `dry_run`, print the exporter command); -> the exit code."""
    notice = work / "build" / NOTICE_NAME
    argv = export_argv(work, pack, notice)
    if dry_run:
        log(shlex.join([sys.executable, "-m", "exporters.onnx_export", *argv]))
        return 0
    from exporters.onnx_export import main as export_main

    notice.parent.mkdir(parents=True, exist_ok=True)
    notice.write_text(pack_notice([(display_name(voice), voice) for voice in TARGET_VOICES]), encoding="utf-8")
    return export_main(argv)
