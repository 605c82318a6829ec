"""The app's icon and, on Linux, its desktop entry (`como-live --install-desktop-entry`).

The entry goes where the freedesktop menus look for the current user: $XDG_DATA_HOME (default
~/.local/share)/applications/como-live.desktop, and the icon into the hicolor theme there.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ICON = Path(__file__).resolve().parent / "resources" / "como-live.png"
ENTRY_NAME = "como-live"


class DesktopEntryError(RuntimeError):
    """The entry cannot be installed here; the message says why."""


def desktop_entry_text(executable: Path, icon: str) -> str:
    """A freedesktop .desktop file that starts `executable`."""
    exec_path = str(executable).replace("\\", "\\\\").replace('"', '\\"')
    return "\n".join([
        "[Desktop Entry]",
        "Type=Application",
        "Name=CoMo Live",
        "GenericName=Real-time voice changer",
        "Comment=Convert your voice live into another voice",
        f'Exec="{exec_path}"',
        f"Icon={icon}",
        "Terminal=false",
        "Categories=AudioVideo;Audio;",
        "Keywords=voice;changer;microphone;streaming;",
        "StartupWMClass=como-live",
        "",
    ])


def _executable() -> Path:
    """The program the entry starts: the bundle's executable, or a pip-installed `como-live`."""
    if getattr(sys, "frozen", False):
        return Path(sys.executable).resolve()
    installed = shutil.which("como-live")
    if installed is None:
        raise DesktopEntryError("no installed como-live program found: run this from the unpacked bundle "
                                "(./como-live --install-desktop-entry) or after `pip install`.")
    return Path(installed).resolve()


def install_desktop_entry(data_home: Path | None = None) -> Path:
    """Write the entry and its icon for the current user; returns the entry's path."""
    if not sys.platform.startswith("linux"):
        raise DesktopEntryError("desktop entries are for Linux; on macOS drag CoMo Live.app into Applications, "
                                "on Windows pin como-live.exe to Start.")
    base = data_home or Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    icon_dir = base / "icons" / "hicolor" / "256x256" / "apps"
    entry = base / "applications" / f"{ENTRY_NAME}.desktop"
    executable = _executable()
    icon_dir.mkdir(parents=True, exist_ok=True)
    entry.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ICON, icon_dir / f"{ENTRY_NAME}.png")
    entry.write_text(desktop_entry_text(executable, ENTRY_NAME), encoding="utf-8")
    return entry
