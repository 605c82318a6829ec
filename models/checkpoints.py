"""Loading checkpoints without executing code from them.

Every `.pt`/`.ckpt`/`.bin` is a pickle. `torch.load(weights_only=True)` refuses any global it does not
know; real checkpoints also pickle harmless objects (an `argparse.Namespace` of training args,
omegaconf configs, optimizer state), so those are allow-listed or mapped to inert placeholders.
Nothing found in a file is ever called.
"""
from __future__ import annotations

import argparse
import os
from typing import Any

import torch


class CheckpointError(ValueError):
    """The file is missing, truncated or not a checkpoint."""


class UnsafeCheckpointError(CheckpointError):
    """The file would need code execution to unpickle; nothing in it was run."""


def safe_load(path: str | os.PathLike) -> Any:
    """Load a torch pickle on the CPU without executing code. (Basic version; hardened in models issue.)"""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - turned into one clear error
        raise UnsafeCheckpointError(f"{path}: refused to unpickle ({exc})") from exc
