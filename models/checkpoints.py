"""Loading checkpoints without executing code from them.

Every `.pt`/`.ckpt`/`.bin` is a pickle, and unpickling can call any importable function. We only ever
use `torch.load(weights_only=True)`, whose unpickler refuses every global it does not know. Real
checkpoints also pickle harmless *data* objects (an `argparse.Namespace` of training args, omegaconf
configs, Lightning callback state, numpy scalars, paths); those are

- allowed as the real class when the class cannot run code while being rebuilt (`argparse.Namespace`);
- otherwise mapped to inert placeholder classes that only *store* the arguments and state pickled for
  them. A placeholder is never called for behaviour, so even a malicious file that names, say,
  `omegaconf.os.system` only produces an inert record.

Anything else (`builtins.eval`, `os.system`, `subprocess.*`, `functools.partial`, any unknown class or
function) is refused with `UnsafeCheckpointError` *before* unpickling starts: the globals are read
statically from the pickle opcodes.

`to_plain(obj)` turns placeholders back into plain Python data (omegaconf containers -> dict/list,
numpy arrays/scalars -> numpy values, paths -> str) by decoding the stored data, never by calling the
original classes.
"""
from __future__ import annotations

import argparse
import os
import pickle
import zipfile
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch


class CheckpointError(ValueError):
    """The file is missing, truncated or not a checkpoint."""


class UnsafeCheckpointError(CheckpointError):
    """The file would need code execution to unpickle; nothing in it was run."""


# --------------------------------------------------------------------------------------------------
# Allow-list
# --------------------------------------------------------------------------------------------------

#: Classes rebuilt as themselves: `__new__` + `__dict__.update`, no code of their own runs.
REAL_GLOBALS: dict[str, type] = {"argparse.Namespace": argparse.Namespace}

#: Globals replaced by inert placeholders (exact names).
INERT_NAMES: frozenset[str] = frozenset({
    "collections.defaultdict",
    "typing.Any",
    # type tags: omegaconf metadata (`object_type=dict`) and defaultdict factories (`defaultdict(list)`)
    "builtins.dict", "builtins.list", "builtins.tuple", "builtins.int", "builtins.float",
    "builtins.str", "builtins.bool", "builtins.bytes", "builtins.frozenset", "builtins.object",
    "pathlib.Path", "pathlib.PosixPath", "pathlib.WindowsPath", "pathlib.PurePath",
    "pathlib.PurePosixPath", "pathlib.PureWindowsPath",
    # numpy scalar / array rebuild helpers (numpy 1.x `numpy.core`, numpy 2.x `numpy._core`)
    "numpy.ndarray", "numpy.dtype",
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
    "numpy.core.numeric._frombuffer", "numpy._core.numeric._frombuffer",
})

#: Globals replaced by inert placeholders (module prefixes of known data/config containers).
INERT_PREFIXES: tuple[str, ...] = (
    "omegaconf.",
    "fairseq.dataclass.",
    "fairseq.data.dictionary.",
    "pytorch_lightning.callbacks.",
    "pytorch_lightning.utilities.",
    "pytorch_lightning.trainer.states.",
    "lightning.pytorch.callbacks.",
    "lightning.pytorch.utilities.",
    "lightning.pytorch.trainer.states.",
    "lightning.fabric.utilities.",
    "lightning_fabric.utilities.",
    "enum.",
    "numpy.dtypes.",
)

#: Placeholders that must come back as a plain `dict`/`list`: the weights-only unpickler fills
#: containers (SETITEMS/APPENDS) only when their type is exactly dict/list.
_DICT_LIKE: frozenset[str] = frozenset({
    "builtins.dict", "collections.defaultdict",
    "pytorch_lightning.utilities.parsing.AttributeDict",
    "lightning.fabric.utilities.data.AttributeDict", "lightning_fabric.utilities.data.AttributeDict",
})
_LIST_LIKE: frozenset[str] = frozenset({"builtins.list"})


class Inert:
    """Placeholder for a pickled data object. Stores what the pickle gave it; does nothing else.

    Attributes: `global_name` (class attribute, e.g. "omegaconf.dictconfig.DictConfig"), `args`
    (constructor / reduce arguments), `kwargs`, `state` (the BUILD state, or None).
    """

    global_name: str = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> "Inert":
        obj = object.__new__(cls)
        object.__setattr__(obj, "args", args)
        object.__setattr__(obj, "kwargs", kwargs)
        object.__setattr__(obj, "state", None)
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # arguments already stored by __new__
        pass

    def __setstate__(self, state: Any) -> None:
        object.__setattr__(self, "state", state)

    def __repr__(self) -> str:
        return f"<inert {self.global_name} args={self.args!r} state={type(self.state).__name__}>"


class _InertDict:
    """Dict-like placeholder: constructing it yields a plain (empty) dict the unpickler then fills."""

    global_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> dict:  # type: ignore[misc]
        return {}


class _InertList:
    """List-like placeholder: constructing it yields a plain (empty) list."""

    global_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> list:  # type: ignore[misc]
        return []


_placeholders: dict[str, type] = {}


def _placeholder(name: str) -> type:
    """One placeholder class per global name (so `type(obj).global_name` says what it stood for)."""
    if name not in _placeholders:
        base = _InertDict if name in _DICT_LIKE else _InertList if name in _LIST_LIKE else Inert
        cls_name = "Inert_" + name.replace(".", "_")
        _placeholders[name] = type(cls_name, (base,), {"global_name": name, "__module__": __name__})
    return _placeholders[name]


def is_inert_global(name: str) -> bool:
    """True if `name` ("module.Qualname") is mapped to a placeholder."""
    return name in INERT_NAMES or name.startswith(INERT_PREFIXES)


def _classify(names: list[str]) -> tuple[list[tuple[Callable, str]], list[str]]:
    """Split globals into (allow-list entries for torch, refused names)."""
    allowed: list[tuple[Callable, str]] = []
    refused: list[str] = []
    for name in sorted(names):
        if name in REAL_GLOBALS:
            allowed.append((REAL_GLOBALS[name], name))
        elif is_inert_global(name):
            allowed.append((_placeholder(name), name))
        else:
            refused.append(name)
    return allowed, refused


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------

def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint path is not a file: {path}")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"checkpoint file is empty: {path}")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path} is not a PyTorch zip checkpoint: it is truncated, corrupt, or in the legacy "
            "(torch < 1.6) format, which is not supported (re-save it with a newer torch)"
        )
    try:
        with zipfile.ZipFile(path) as zf:
            if not any(n.endswith("data.pkl") for n in zf.namelist()):
                raise CheckpointError(f"{path} is a zip file but not a torch.save checkpoint (no data.pkl)")
            damaged = zf.testzip()  # torch.load does not check CRCs: a flipped bit would load silently
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        raise CheckpointError(f"{path} is a corrupt zip file ({exc})") from exc
    if damaged is not None:
        raise CheckpointError(f"{path} is corrupt: its member {damaged} fails its CRC check (the file was "
                              "damaged in storage or transfer; copy it again)")


def safe_load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """Load a `torch.save` checkpoint without executing any code from it.

    Returns the unpickled object; tensors are real tensors on `map_location`, harmless data objects
    are real `argparse.Namespace` instances or inert placeholders (see module docstring).
    Raises `UnsafeCheckpointError` (names the offending globals; nothing was executed) or
    `CheckpointError` (missing, empty, truncated, corrupt, not a checkpoint).
    """
    path = os.fspath(path)
    _check_file(path)
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except pickle.UnpicklingError as exc:  # opcodes the weights-only unpickler would refuse too
        raise UnsafeCheckpointError(
            f"refused to load {path}: its pickle uses opcodes the safe loader does not support ({exc}). "
            "Nothing from the file was executed."
        ) from exc
    except Exception as exc:  # noqa: BLE001 - a pickle we cannot even scan is corrupt
        raise CheckpointError(f"{path}: cannot read the checkpoint's pickle ({type(exc).__name__}: {exc})") from exc
    allowed, refused = _classify(names)
    if refused:
        raise UnsafeCheckpointError(
            f"refused to load {path}: it references {', '.join(refused)}, which could execute code "
            "while unpickling. Nothing from the file was executed. If this is a trusted checkpoint that "
            "pickles whole objects, re-save its state_dict (tensors and plain data) instead."
        )
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(
            f"refused to load {path}: the weights-only unpickler rejected it ({exc}). "
            "Nothing from the file was executed."
        ) from exc
    except Exception as exc:  # noqa: BLE001 - truncated tensors, bad zip members, ... -> one clear error
        raise CheckpointError(f"{path}: corrupt or unreadable checkpoint ({type(exc).__name__}: {exc})") from exc


# --------------------------------------------------------------------------------------------------
# Placeholders -> plain data
# --------------------------------------------------------------------------------------------------

def _numpy_dtype(obj: Any) -> np.dtype | None:
    """A dtype placeholder (`numpy.dtype('f8', False, True)` + state) -> np.dtype, by its type string."""
    if isinstance(obj, Inert) and obj.global_name == "numpy.dtype" and obj.args and isinstance(obj.args[0], str):
        dt = np.dtype(obj.args[0])  # parses a type code string; no object code involved
        state = obj.state
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">") and dt.itemsize > 1:
            dt = dt.newbyteorder(state[1])
        return dt
    return None


def to_plain(obj: Any) -> Any:
    """Recursively replace placeholders by plain data: omegaconf containers -> dict/list/values,
    numpy arrays/scalars -> numpy, paths -> str, enums -> their value, other placeholders -> a dict
    `{"__inert__": name, "args": ..., "state": ...}`. Real containers are rebuilt recursively."""
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(to_plain(v) for v in obj)
    if isinstance(obj, argparse.Namespace):
        return argparse.Namespace(**{k: to_plain(v) for k, v in vars(obj).items()})
    if isinstance(obj, type) and issubclass(obj, (Inert, _InertDict, _InertList)):
        return obj.global_name  # a type tag such as `builtins.list`
    if not isinstance(obj, Inert):
        return obj
    name = obj.global_name
    state = obj.state
    if name.startswith("omegaconf.") and isinstance(state, dict):
        if "_content" in state:  # DictConfig / ListConfig
            return to_plain(state["_content"])
        if "_val" in state:  # value nodes (AnyNode, StringNode, ...)
            return to_plain(state["_val"])
    if name.endswith("multiarray._reconstruct") and isinstance(state, tuple) and len(state) == 5:
        _, shape, dtype, fortran, raw = state
        dt = _numpy_dtype(dtype)
        if dt is not None and dt != np.dtype(object) and isinstance(raw, (bytes, bytearray)):
            arr = np.frombuffer(bytes(raw), dtype=dt).reshape(shape, order="F" if fortran else "C")
            return arr.copy()
    if name.endswith("multiarray.scalar") and len(obj.args) == 2 and isinstance(obj.args[1], bytes):
        dt = _numpy_dtype(obj.args[0])
        if dt is not None and dt != np.dtype(object):
            return np.frombuffer(obj.args[1], dtype=dt)[0]
    if name == "numpy.dtype":
        return _numpy_dtype(obj)
    if name.startswith("pathlib.") and all(isinstance(a, str) for a in obj.args):
        return os.path.join(*obj.args) if obj.args else ""
    if len(obj.args) == 1 and state is None and not obj.kwargs:  # enum members: Cls(value)
        return to_plain(obj.args[0])
    return {"__inert__": name, "args": to_plain(obj.args), "state": to_plain(state)}


# --------------------------------------------------------------------------------------------------
# YAML
# --------------------------------------------------------------------------------------------------

def load_yaml(path: str | os.PathLike) -> dict:
    """Read a YAML config (e.g. a checkpoint's `config.yaml`) with `yaml.safe_load`.

    Raises `CheckpointError` if the file is missing, not valid YAML, or not a mapping at top level.
    """
    import yaml

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"config not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        raise CheckpointError(f"{path}: invalid YAML ({exc})") from exc
    except RecursionError:
        raise CheckpointError(f"{path}: the YAML is nested too deeply to be a config") from None
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path}: not a UTF-8 text file ({exc})") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a YAML mapping at top level, got {type(data).__name__}")
    return data
