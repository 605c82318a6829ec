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

#: Other modules the runtime never imports: GUI/test kits some hooks pull in, and standard-library
#: modules whose native libraries (readline, Berkeley DB, OpenSSL's TLS) would only add size.
OTHER_EXCLUDES = ("tkinter", "unittest", "pydoc_data", "IPython", "matplotlib", "scipy", "pandas",
                  "readline", "curses", "dbm", "ssl")

#: Qt plugins a desktop voice changer never loads, as `folder/name` without "lib" and extension.
#: A plugin folder alone drops the whole folder. The gtk3 theme would mix the build machine's GTK
#: stack (cairo, pango, glib) with the user's GTK; Qt then uses its own Fusion look.
QT_PLUGIN_EXCLUDES = frozenset({
    "platformthemes/qgtk3", "imageformats/qpdf", "platforms/qeglfs", "platforms/qlinuxfb",
    "platforms/qvnc", "platforms/qvkkhrdisplay", "platforms/qminimalegl", "egldeviceintegrations",
    "generic", "tls", "networkinformation", "sqldrivers", "multimedia", "position", "qmltooling"})

#: Shared libraries that must come from the user's system, not the build machine: ALSA must match
#: the system's ALSA plugins (the PulseAudio/PipeWire bridge). Every desktop Linux has it.
SYSTEM_ONLY_LIBRARIES = ("libasound.so",)

#: Libraries PortAudio links that are bundled only as a fallback, in `FALLBACK_FOLDER` where the
#: loader does not look: rth_portaudio.py loads the user's copy when there is one (JACK's client
#: library must match the user's JACK or PipeWire server) and the bundled one otherwise.
FALLBACK_LIBRARIES = ("libjack.so",)
FALLBACK_FOLDER = "fallback-libs"

#: NVIDIA's libraries (CUDA, cuDNN, TensorRT, the driver): never bundled, even from a build machine
#: that has them; their licences and sizes (GBs) make them the user's install.
_NVIDIA_LIBRARY = re.compile(r"^(lib)?(cuda|nvcuda|cudart|cublas|cufft|curand|cusparse|cusolver|cudnn|nvinfer|"
                             r"nvonnxparser|nvrtc|nvjitlink|nvblas)", re.IGNORECASE)


def is_nvidia_library(name: str) -> bool:
    return bool(_NVIDIA_LIBRARY.match(name.replace("\\", "/").rsplit("/", 1)[-1]))


def nvidia_requirements() -> dict[str, list[str]]:
    """Per GPU provider of the installed onnxruntime-gpu, the NVIDIA libraries it links (run in the
    build venv): {"CUDA": ["libcublas.so.13", ...], "TensorRT": [...]}."""
    import glob

    import onnxruntime
    from PyInstaller.depend.bindepend import get_imports

    capi = os.path.join(os.path.dirname(onnxruntime.__file__), "capi")
    found = {}
    for label, pattern in (("CUDA", "*providers_cuda*"), ("TensorRT", "*providers_tensorrt*")):
        for library in glob.glob(os.path.join(capi, pattern)):
            names = {name.rsplit("/", 1)[-1] for name, _path in get_imports(library)}
            found[label] = sorted(n for n in names if is_nvidia_library(n))
    return found


_DRIVER = re.compile(r"^(libcuda\.so|nvcuda\.dll)", re.IGNORECASE)


def gpu_requirements(cuda_version: str, libraries: dict[str, list[str]]) -> list[str]:
    """What a `--gpu` bundle needs on the user's machine, as lines to print. The CUDA provider
    loads cuDNN 9 at run time (no link shows it), so it is named here."""
    lines = [f"an NVIDIA driver that supports CUDA {cuda_version} (libcuda / nvcuda)"]
    for label, names in libraries.items():
        names = [n for n in names if not _DRIVER.match(n)] + (["cuDNN 9 (loaded at run time)"] if label == "CUDA" else [])
        optional = " (optional: without it the CUDA provider runs)" if label == "TensorRT" else ""
        lines.append(f"for the {label} provider{optional}: {', '.join(names)}, where the system's loader finds "
                     "them (CUDA toolkit, cuDNN, TensorRT; on Windows in PATH)")
    return lines


PORTAUDIO_SONAME = "libportaudio.so.2"
_PLUGIN = re.compile(r"(?:^|/)plugins/([^/]+)/(?:lib)?([^/.]+)[^/]*$")


def unneeded_qt_plugin(destination: str) -> bool:
    """True for a bundle path inside a Qt plugin folder or plugin of `QT_PLUGIN_EXCLUDES`."""
    match = _PLUGIN.search(destination.replace("\\", "/"))
    return bool(match) and (match.group(1) in QT_PLUGIN_EXCLUDES
                            or f"{match.group(1)}/{match.group(2)}" in QT_PLUGIN_EXCLUDES)


#: Qt platform plugins each bundle must carry: the desktop's (the window cannot open without it) and
#: offscreen (tests, headless checks).
QT_PLATFORM_PLUGINS = {"linux": ("qxcb", "qwayland", "qoffscreen"), "win32": ("qwindows", "qoffscreen"),
                       "darwin": ("qcocoa", "qoffscreen")}


def missing_qt_platforms(destinations: Iterable[str], platform: str) -> list[str]:
    """The `QT_PLATFORM_PLUGINS` of `platform` (a sys.platform value) absent from the bundle paths."""
    found = {match.group(2) for d in destinations if (match := _PLUGIN.search(d.replace("\\", "/")))
             and match.group(1) == "platforms"}
    wanted = QT_PLATFORM_PLUGINS["linux" if platform.startswith("linux") else platform]
    return [name for name in wanted if name not in found]


def _dependency_only(destination: str) -> bool:
    """A shared library collected only because another one links it (Linux layout)."""
    name = destination.rsplit("/", 1)[-1]
    return (("/" not in destination or destination.startswith("PyQt6/Qt6/lib/"))
            and ".cpython-" not in name and not name.startswith("libpython"))


Entry = tuple[str, str, str]   # a PyInstaller TOC entry: (destination, source, typecode)


def prune_orphans(binaries: list[Entry], datas: list[Entry], keep: Iterable[str]) -> tuple[list[Entry], list[Entry]]:
    """Drop libraries no remaining binary links to (after plugins were removed), and the symlinks
    (kept among the datas) that point at them. `keep` are file names loaded with dlopen (e.g.
    PortAudio), which no link-time dependency shows. Returns the new (binaries, datas)."""
    from PyInstaller.depend.bindepend import get_imports

    keep = set(keep)
    # ldd lists the whole dependency closure, so one pass over what links what is enough.
    imports = {src: {name.rsplit("/", 1)[-1] for name, _path in get_imports(src)}
               for _dest, src, kind in binaries if kind in ("BINARY", "EXTENSION")}
    entries = list(binaries)
    while True:
        files = [e for e in entries if e[2] in ("BINARY", "EXTENSION")]
        linked = set().union(*(imports[src] for _dest, src, _kind in files)) | keep
        orphans = {dest for dest, _src, _kind in files
                   if _dependency_only(dest) and dest.rsplit("/", 1)[-1] not in linked}
        if not orphans:
            break
        entries = [e for e in entries if e[0] not in orphans]
    present = {e[0] for e in entries}
    gone = {e[0] for e in binaries} - present
    return entries, [e for e in datas if not (e[2] == "SYMLINK" and e[1] in gone)]


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


_LIBTORCH = re.compile(r"(^|/)(lib)?(torch[^/]*|c10[^/]*|shm)\.(so|dll|dylib)", re.IGNORECASE)


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
