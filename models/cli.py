"""What every `python -m models.…` command does with its outcome: exit codes and one-line errors.

0 ok; 2 a usage or input error (the user can fix it: one sentence); 130 interrupted; 1 anything
unexpected (one line naming the exception; the traceback with `--verbose`).
"""
from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable


def run_command(argv: list[str] | None, parser: argparse.ArgumentParser,
                run: Callable[[argparse.Namespace], None], user_errors: tuple[type[Exception], ...],
                interrupted: str) -> int:
    """Parse `argv`, call `run(args)` and turn its outcome into an exit code (`args.verbose` is read)."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2), message already printed
        return int(exc.code) if isinstance(exc.code, int) else 2
    try:
        run(args)
        return 0
    except user_errors as exc:
        if args.verbose:
            traceback.print_exc(file=sys.stderr)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line for the user, the traceback on request
        if args.verbose:
            traceback.print_exc(file=sys.stderr)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"error: unexpected failure: {type(exc).__name__}: {first} (run with --verbose for the traceback)",
              file=sys.stderr)
        return 1
