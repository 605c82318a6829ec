"""What goes into the CoMo Live bundle and what must never: shared by build_installer.py and the spec.

The runtime (engine + app) runs ONNX files only, so a bundle that contains torch, the training
models or the exporters is a packaging mistake (it would add ~1 GB); the build fails on it.
"""
from __future__ import annotations

import os
import re
from typing import Iterable

APP_NAME = "CoMo Live"
EXECUTABLE = "como-live"                    # the one-folder's name and its executable's
BUNDLE_ID = "org.como-live.CoMoLive"        # macOS bundle identifier
MICROPHONE_USAGE = "CoMo Live converts your microphone's voice live into the voice you choose."

#: Top-level packages the bundle must not contain (checked on module names and on files).
FORBIDDEN_PACKAGES = ("torch", "torchaudio", "torchfcpe", "models", "exporters", "onnx", "onnxscript",
                      "librosa", "pytest", "tests", "benchmarks")

#: Qt modules the app does not use; PyInstaller's hooks would otherwise follow stray imports into them.
QT_EXCLUDES = tuple(f"PyQt6.{name}" for name in (
    "QtWebEngineCore", "QtWebEngineWidgets", "QtWebEngineQuick", "QtWebChannel", "QtWebSockets",
    "Qt3DCore", "Qt3DRender", "Qt3DInput", "Qt3DLogic", "Qt3DAnimation", "Qt3DExtras",
    "QtQuick", "QtQuick3D", "QtQuickWidgets", "QtQml", "QtCharts", "QtDataVisualization",
    "QtMultimedia", "QtMultimediaWidgets", "QtPdf", "QtPdfWidgets", "QtPositioning", "QtLocation",
    "QtSensors", "QtSerialPort", "QtBluetooth", "QtNfc", "QtRemoteObjects", "QtSql", "QtTest",
    "QtDesigner", "QtHelp", "QtOpenGL", "QtOpenGLWidgets", "QtSpatialAudio", "QtTextToSpeech",
    "QtSvgWidgets", "QtXml"))

#: Other modules the runtime never imports (standard-library GUI/test kits pulled in by hooks).
OTHER_EXCLUDES = ("tkinter", "unittest", "pydoc_data", "IPython", "matplotlib", "scipy", "pandas")

#: Shared libraries that must come from the user's system, not the build machine: ALSA must match
#: the system's ALSA plugins (the PulseAudio/PipeWire bridge) and JACK its running server.
SYSTEM_ONLY_LIBRARIES = ("libasound.so", "libjack.so")

#: What a `--gpu` bundle needs on the user's machine (onnxruntime-gpu does not ship NVIDIA's libraries).
GPU_REQUIREMENTS = (
    "an NVIDIA driver that supports CUDA 12 or 13",
    "the CUDA runtime libraries of the version onnxruntime-gpu was built for (CUDA 13 for 1.31+; "
    "cudart, cublas, cublasLt, cufft, curand)",
    "cuDNN 9 for that CUDA version",
    "optionally TensorRT 10 (libnvinfer) for the fastest provider; without it CUDA is used",
)

PORTAUDIO_SONAME = "libportaudio.so.2"


def system_portaudio() -> str | None:
    """Path (by soname) of the PortAudio library this Linux system's dynamic linker loads, or None.

    Loading it and reading /proc/self/maps gives exactly the file of this Python's architecture.
    """
    import ctypes

    try:
        ctypes.CDLL(PORTAUDIO_SONAME)
    except OSError:
        return None
    with open("/proc/self/maps", encoding="utf-8") as maps:
        loaded = next((line.split()[-1] for line in maps if "/libportaudio.so" in line), None)
    # Bundled under its soname, the name the dynamic linker and rth_portaudio.py look for.
    return os.path.join(os.path.dirname(loaded), PORTAUDIO_SONAME) if loaded else None


_LIBTORCH = re.compile(r"(^|/)lib(torch|c10|shm)[^/]*\.(so|dll|dylib)", re.IGNORECASE)


def forbidden_modules(names: Iterable[str]) -> list[str]:
    """Module names (`a.b.c`) that belong to a forbidden top-level package."""
    return sorted(n for n in names if n.split(".")[0] in FORBIDDEN_PACKAGES)


def forbidden_paths(paths: Iterable[str]) -> list[str]:
    """Paths relative to the bundle's library folder (`a/b.so`) of a forbidden package, its
    `.dist-info`, or a libtorch library anywhere."""
    bad = []
    for path in paths:
        path = path.replace("\\", "/")
        top = re.split(r"[-/]", path, maxsplit=1)[0].lower()
        if top in FORBIDDEN_PACKAGES or _LIBTORCH.search(path):
            bad.append(path)
    return sorted(bad)
