"""Build CoMo Live as a self-contained folder (PyInstaller one-folder) plus an archive of it.

    python build_installer.py                 # CPU build for this platform → dist/
    python build_installer.py --gpu           # bundles onnxruntime-gpu (the user installs CUDA/cuDNN)
    python build_installer.py --out DIR       # folder and archive go to DIR

The bundle is built in its own venv (build/installer-venv-cpu or -gpu, reused while the runtime
requirements in pyproject.toml do not change) that holds only the runtime dependencies and
PyInstaller, so nothing of the dev venv (torch, onnx, the training code) can slip in; the build
then checks the result for torch/models/exporters files and fails if it finds any. The voice packs
in voices/ (the shipped voices, e.g. the demo voice in voices/demo) are bundled: before the build
each must load with every file's sha256 verified (a broken one stops the build), and after it the
bundle's copies must load the same way.
Packaging files (spec, icons, runtime hook) live in packaging/.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parent
PACKAGING = REPO / "packaging"
SHIPPED_VOICES = REPO / "voices"   # bundled as `voices/`, where engine.voices.bundled_voices_dir() looks
sys.path.insert(0, str(PACKAGING))
import bundle_rules as rules  # noqa: E402  (packaging/ is not a package: the spec imports it the same way)

from engine.voicepack import VoicePackError, load_manifest  # noqa: E402  (plain Python: runs in any interpreter)

#: Where PyInstaller puts packages inside the output: the folder itself, its contents directory, a .app's.
LIBRARY_FOLDERS = (".", "_internal", "Contents/Frameworks", "Contents/Resources")
CPU_RUNTIME, GPU_RUNTIME = "onnxruntime", "onnxruntime-gpu"   # same import name: never both in one venv


class BuildError(RuntimeError):
    """The build cannot go on; the message says why."""


def _requirement_name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0).lower()


def build_requirements(gpu: bool) -> list[str]:
    """The runtime dependencies of pyproject.toml with the chosen ONNX Runtime, plus PyInstaller."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted, unwanted = (GPU_RUNTIME, CPU_RUNTIME) if gpu else (CPU_RUNTIME, GPU_RUNTIME)
    requirements = []
    for requirement in project["dependencies"]:
        name = _requirement_name(requirement)
        if name in (CPU_RUNTIME, GPU_RUNTIME):
            requirement = wanted + requirement[len(name):]
        requirements.append(requirement)
    if not any(_requirement_name(r) == wanted for r in requirements):
        raise BuildError(f"pyproject.toml lists no {unwanted} or {wanted} dependency to build with")
    pyinstaller = [r for r in project["optional-dependencies"]["dev"] if _requirement_name(r) == "pyinstaller"]
    if not pyinstaller:
        raise BuildError("pyproject.toml's dev extra lists no pyinstaller requirement")
    return requirements + pyinstaller


def _venv_python(folder: Path) -> Path:
    return folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_build_venv(folder: Path, requirements: list[str]) -> tuple[Path, float]:
    """A venv in `folder` with exactly `requirements`; reused when its stamp matches.
    Returns its python and the seconds spent (0 when reused)."""
    stamp_text = "\n".join([sys.version, *requirements])
    stamp = folder / ".como-build-requirements"
    python = _venv_python(folder)
    if python.exists() and stamp.exists() and stamp.read_text(encoding="utf-8") == stamp_text:
        print(f"build venv: reusing {folder}")
        return python, 0.0
    started = time.perf_counter()
    if folder.exists():
        if not stamp.exists():   # never delete a folder this script did not make
            raise BuildError(f"{folder} exists and is not a build venv made by build_installer.py; "
                             "pass another --venv or remove it")
        print(f"build venv: requirements changed, recreating {folder}")
        shutil.rmtree(folder)
    print(f"build venv: creating {folder} with {', '.join(requirements)}")
    venv.EnvBuilder(with_pip=True, clear=True).create(folder)
    result = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                             *requirements], stderr=subprocess.PIPE, text=True)
    # Some pip mirrors warn once per package about an unused local index; keep the real messages.
    sys.stderr.writelines(line for line in result.stderr.splitlines(keepends=True)
                          if not line.startswith("WARNING: Location '"))
    if result.returncode != 0:
        raise BuildError(f"pip could not install the build requirements into {folder} (see its output above)")
    stamp.write_text(stamp_text, encoding="utf-8")
    return python, time.perf_counter() - started


def gpu_runtime_needs(python: Path) -> list[str]:
    """What the user of a GPU bundle must install: asked of the build venv's onnxruntime-gpu."""
    probe = ("import json, sys; sys.path.insert(0, sys.argv[1]); import bundle_rules as rules; "
             "import onnxruntime.capi.build_and_package_info as info; "
             "print(json.dumps([info.cuda_version, rules.nvidia_requirements()]))")
    result = subprocess.run([str(python), "-c", probe, str(PACKAGING)], capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(f"cannot tell which NVIDIA libraries the bundled onnxruntime-gpu needs: "
                         f"{result.stderr.strip()[-300:]}")
    cuda_version, libraries = json.loads(result.stdout.strip().splitlines()[-1])
    return rules.gpu_requirements(cuda_version, libraries)


def app_version() -> str:
    text = (REPO / "app" / "version.py").read_text(encoding="utf-8")
    return re.search(r'__version__\s*=\s*"([^"]+)"', text).group(1)


def platform_tag() -> str:
    system = {"win32": "windows", "darwin": "macos"}.get(sys.platform, sys.platform)
    return f"{system}-{platform.machine().lower()}"


def run_pyinstaller(python: Path, folder_name: str, out: Path, work: Path) -> None:
    command = [str(python), "-m", "PyInstaller", str(PACKAGING / "como-live.spec"), "--noconfirm",
               "--log-level", "WARN", "--distpath", str(out), "--workpath", str(work),
               "--", "--folder", folder_name]
    # A clean environment: no PYTHONPATH or user site may point PyInstaller at the dev packages.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    if subprocess.run(command, cwd=REPO, env=env).returncode != 0:
        raise BuildError("PyInstaller failed (see its output above)")


def bundle_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() or p.is_symlink()]


def verify_bundle(folder: Path) -> None:
    """Fail when torch, the training models, the exporters or other dev-only files got in."""
    files = bundle_files(folder)
    bad = []
    for library in LIBRARY_FOLDERS:
        root = folder / library
        if root.is_dir():
            bad += rules.forbidden_paths(p.relative_to(root).as_posix() for p in files if p.is_relative_to(root))
    if bad:
        raise BuildError(f"the bundle contains dev-only files it must not ship ({len(bad)}), e.g. "
                         + ", ".join(sorted(set(bad))[:5]))


def check_voice_packs(voices: Path) -> list[str]:
    """Every folder in `voices` is a voice pack whose files match their sha256 (else `BuildError` naming it);
    returns their names (none when `voices` does not exist)."""
    if not voices.is_dir():
        return []
    names = []
    for pack in sorted(p for p in voices.iterdir() if p.is_dir()):
        try:
            load_manifest(pack, verify_hashes=True)
        except VoicePackError as exc:
            raise BuildError(f"the shipped voice pack {pack} is broken ({exc}); rebuild it (the demo voice: "
                             "python -m models.demo build WORK) or move it out of voices/") from exc
        names.append(pack.name)
    return names


def verify_bundled_voices(folder: Path, shipped: list[str]) -> None:
    """The bundle's voices folder (each copy: a .app links one into another) holds exactly the packs
    `shipped`, each loading with its hashes verified."""
    roots = {(folder / library / "voices").resolve() for library in LIBRARY_FOLDERS
             if (folder / library / "voices").is_dir()}
    for bundled in [check_voice_packs(root) for root in sorted(roots)] or [[]]:
        if bundled != shipped:
            raise BuildError(f"the bundle's voice packs ({', '.join(bundled) or 'none'}) are not those in voices/ "
                             f"({', '.join(shipped) or 'none'})")


def unpacked_size(folder: Path) -> int:
    return sum(p.lstat().st_size for p in bundle_files(folder))


def bundled_voices_size(folder: Path) -> int:
    """Bytes of the voice packs in the bundle (reported apart: a demo pack is data, not program)."""
    return sum(unpacked_size(folder / library / "voices") for library in LIBRARY_FOLDERS
               if (folder / library / "voices").is_dir())


def make_archive(folder: Path, name: str) -> Path:
    """`name`.zip on Windows, `name`.tar.gz elsewhere (keeps symlinks and the executable bit), beside
    `folder`, holding `folder`."""
    if sys.platform == "win32":
        return Path(shutil.make_archive(str(folder.parent / name), "zip", root_dir=folder.parent, base_dir=folder.name))
    archive = folder.parent / f"{name}.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=6) as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="build_installer.py", description=__doc__.split("\n")[0])
    parser.add_argument("--gpu", action="store_true", help="bundle onnxruntime-gpu instead of the CPU onnxruntime")
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="where the folder and archive go (default: dist/)")
    parser.add_argument("--venv", type=Path, help="build venv (default: build/installer-venv-cpu or -gpu)")
    parser.add_argument("--work", type=Path, help="PyInstaller work folder (default: build/pyinstaller-cpu or -gpu)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    flavour = "gpu" if args.gpu else "cpu"
    venv_dir = (args.venv or REPO / "build" / f"installer-venv-{flavour}").resolve()
    work = (args.work or REPO / "build" / f"pyinstaller-{flavour}").resolve()
    out = args.out.resolve()
    folder_name = f"{rules.EXECUTABLE}-{app_version()}-{platform_tag()}" + ("-gpu" if args.gpu else "")
    started = time.perf_counter()
    try:
        shipped = check_voice_packs(SHIPPED_VOICES)
        print(f"shipped voices: {', '.join(shipped) or 'none'} (checked)")
        python, venv_seconds = ensure_build_venv(venv_dir, build_requirements(args.gpu))
        pyinstaller_started = time.perf_counter()
        run_pyinstaller(python, folder_name, out, work)
        pyinstaller_seconds = time.perf_counter() - pyinstaller_started
        macos = sys.platform == "darwin"
        folder = out / (f"{rules.APP_NAME}.app" if macos else folder_name)
        if not folder.is_dir():
            raise BuildError(f"PyInstaller finished but {folder} does not exist")
        verify_bundle(folder)
        verify_bundled_voices(folder, shipped)
        if not macos:   # a file added inside a .app would break its code signature
            shutil.copyfile(PACKAGING / "README-bundle.txt", folder / "README.txt")
        archive_started = time.perf_counter()
        archive = make_archive(folder, folder_name)
        archive_seconds = time.perf_counter() - archive_started
        gpu_needs = gpu_runtime_needs(python) if args.gpu else []
    except BuildError as exc:
        print(f"build_installer: {exc}", file=sys.stderr)
        return 1
    total = time.perf_counter() - started
    size, voices = unpacked_size(folder), bundled_voices_size(folder)
    print(f"\nbuilt {folder}\n  unpacked {size / 1e6:.0f} MB (voice packs {voices / 1e6:.0f} MB of it); "
          f"archive {archive} ({archive.stat().st_size / 1e6:.0f} MB)"
          f"\n  time {total:.0f} s (build venv {venv_seconds:.0f} s, PyInstaller {pyinstaller_seconds:.0f} s, "
          f"archive {archive_seconds:.0f} s)")
    program = {"win32": f"{rules.EXECUTABLE}-console.exe", "darwin": f"Contents/MacOS/{rules.EXECUTABLE}"}.get(
        sys.platform, rules.EXECUTABLE)
    print(f"  check it: {folder / program} --self-test")
    if gpu_needs:
        print("  GPU bundle: the user's machine must have\n    - " + "\n    - ".join(gpu_needs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
