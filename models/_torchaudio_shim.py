"""Import `torchfcpe` and `distillmos` on machines where `torchaudio` does not load.

`torchfcpe.mel_extractor` does `from torchaudio.transforms import Resample` at import time, and
`distillmos.sqa` does `import torchaudio` (used only by its file-list command line), but the
torchaudio binary wheel does not load with torch 2.13, so it is not installed. We always feed both
16 kHz audio, so no torchaudio resampler is ever built. While one of them is imported (and only if a
real `import torchaudio` fails) we register inert `torchaudio` / `torchaudio.transforms` modules whose
`Resample` raises a clear error if it is ever constructed; they are removed from `sys.modules` again
right after, so no other library sees a fake torchaudio.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import sys
import types
from types import ModuleType

_MARK = "__como_live_shim__"


class Resample:
    """Stand-in for `torchaudio.transforms.Resample`: refuses to be built."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError(
            "torchaudio is not available (its binary does not load with this torch), so torchfcpe "
            "cannot resample. Feed FCPE 16 kHz audio (models.pitch.FcpePitch does this)."
        )


def _real_torchaudio_loads() -> bool:
    before = set(sys.modules)
    try:
        import torchaudio  # noqa: F401
        return True
    except Exception:  # noqa: BLE001 - ImportError, OSError from a broken binary, ...
        for name in set(sys.modules) - before:  # drop half-imported submodules
            if name == "torchaudio" or name.startswith("torchaudio."):
                del sys.modules[name]
        return False


def _shim_modules() -> dict[str, ModuleType]:
    root = types.ModuleType("torchaudio")
    root.__spec__ = importlib.machinery.ModuleSpec("torchaudio", None)
    transforms = types.ModuleType("torchaudio.transforms")
    transforms.__spec__ = importlib.machinery.ModuleSpec("torchaudio.transforms", None)
    transforms.Resample = Resample
    root.transforms = transforms
    for m in (root, transforms):
        setattr(m, _MARK, True)
    return {"torchaudio": root, "torchaudio.transforms": transforms}


def import_behind_shim(name: str) -> ModuleType:
    """Return module `name`, importing it behind the shim when torchaudio is unavailable (an
    ImportError of the module itself, e.g. not installed, reaches the caller)."""
    if sys.modules.get(name) is not None:  # None there means "blocked": import_module raises for it
        return sys.modules[name]
    if _real_torchaudio_loads():
        return importlib.import_module(name)
    shim = _shim_modules()
    sys.modules.update(shim)
    try:
        return importlib.import_module(name)
    finally:
        for key, module in shim.items():
            if sys.modules.get(key) is module:
                del sys.modules[key]


def import_torchfcpe() -> ModuleType:
    """Return the `torchfcpe` module (see the module docstring)."""
    return import_behind_shim("torchfcpe")
