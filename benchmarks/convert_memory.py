"""Peak memory of `python -m engine.convert` against the file's length (streaming vs `--whole`).

    .venv/bin/python -m benchmarks.convert_memory [--voice builtin:dsp] [--minutes 1 10] [--whole]

Writes a 48 kHz tone of each length into a temporary folder, converts it with the real CLI in a
subprocess and prints the child's peak RSS (`resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`, one
fresh child per row, so each maximum is that run's own). Streaming should stay flat: a 10-minute
file within 50 MB of a 1-minute file.
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._table import print_table

ROOT = Path(__file__).resolve().parents[1]
_CHILD = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_rss_mb(argv: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of one run of `argv` (through a fresh intermediate process)."""
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _CHILD, *argv], cwd=ROOT, capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1]) / 1024, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--voice", default="builtin:dsp")
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--whole", action="store_true", help="also measure --whole")
    args = parser.parse_args()
    from tests.test_convert_safety import write_tone

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            source = write_tone(Path(tmp) / f"in-{minutes:g}.wav", 60 * minutes)
            for whole in ([False, True] if args.whole else [False]):
                argv = [sys.executable, "-m", "engine.convert", str(source), str(Path(tmp) / "out.wav"),
                        "--voice", args.voice, "--quiet", *(["--whole"] if whole else [])]
                rss, wall = peak_rss_mb(argv)
                rows.append({"minutes": minutes, "mode": "whole" if whole else "stream", "peak_rss_mb": round(rss, 1),
                             "wall_s": round(wall, 1)})
    print_table(f"engine.convert peak RSS ({args.voice}, 48 kHz mono input)", rows)


if __name__ == "__main__":
    main()
