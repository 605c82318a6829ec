"""Hotkeys: the platform sentence, remote commands over the local socket, Win32 key parsing."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import subprocess  # noqa: E402
import sys  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from app.hotkeys import (COMMANDS, GLOBAL_SHORTCUTS, SHORTCUTS, CommandServer, global_hotkey_support,  # noqa: E402
                         parse_hotkey)
from tests.test_app_fakes import build_window  # noqa: E402

pytestmark = pytest.mark.gui
REPO = Path(__file__).resolve().parents[1]


def test_platform_sentences() -> None:
    ok, reason = global_hotkey_support("linux", {"DISPLAY": ":0"})
    assert not ok and "Linux/X11" in reason and "como-live --send toggle" in reason
    ok, reason = global_hotkey_support("linux", {"WAYLAND_DISPLAY": "wayland-0"})
    assert not ok and "Wayland" in reason
    ok, reason = global_hotkey_support("darwin", {})
    assert not ok and "Accessibility" in reason
    assert global_hotkey_support("win32", {})[0]
    assert set(SHORTCUTS) == set(COMMANDS) == set(GLOBAL_SHORTCUTS)


def test_parse_hotkey() -> None:
    assert parse_hotkey("Ctrl+Alt+B") == (0x4000 | 0x2 | 0x1, ord("B"))
    assert parse_hotkey("Ctrl+Alt+Space")[1] == 0x20
    for sequence in GLOBAL_SHORTCUTS.values():
        parse_hotkey(sequence)  # every default must be registrable
    with pytest.raises(ValueError, match="unsupported key"):
        parse_hotkey("Ctrl+F13")
    with pytest.raises(ValueError, match="modifier"):
        parse_hotkey("Hyper+B")


def send(name: str, command: str) -> subprocess.Popen:
    code = ("import sys; from PyQt6.QtCore import QCoreApplication; from app.hotkeys import send_command;"
            f"app = QCoreApplication([]); e = send_command({command!r}, {name!r}); print(e or 'ok'); sys.exit(bool(e))")
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})


def test_remote_command_reaches_window(qtbot, tmp_path: Path) -> None:
    window = build_window(qtbot, tmp_path)
    server = CommandServer(name=f"como-test-{uuid.uuid4().hex[:8]}", parent=window)
    assert server.listen() == (True, "")
    server.commandReceived.connect(window.run_command)
    with qtbot.waitSignal(server.commandReceived, timeout=10000) as blocker:
        client = send(server.name, "bypass")
    assert blocker.args == ["bypass"]
    qtbot.waitUntil(lambda: client.poll() is not None, timeout=10000)
    assert client.returncode == 0 and client.stdout.read().strip() == "ok"
    assert window.bridge.config.settings.bypass
    client = send(server.name, "pitch_up")
    qtbot.waitUntil(lambda: client.poll() is not None, timeout=10000)
    assert window.bridge.config.settings.pitch == 1.0
    server.close()


def test_send_without_running_app_fails_cleanly() -> None:
    user = f"nobody{uuid.uuid4().hex[:6]}"  # a socket name no running app uses
    result = subprocess.run([sys.executable, "-m", "app", "--send", "toggle"], cwd=REPO, capture_output=True,
                            text=True, timeout=60,
                            env={**os.environ, "QT_QPA_PLATFORM": "offscreen", "LOGNAME": user, "USER": user})
    assert result.returncode == 1 and "not running" in result.stderr
