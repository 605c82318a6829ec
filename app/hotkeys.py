"""Keyboard control: in-window shortcuts, remote commands and (where allowed) global hotkeys.

Three layers, from always-available to platform-dependent:

1. In-window shortcuts (`SHORTCUTS`), installed by the main window as QActions (shown in the menu
   and in tooltips). They work while CoMo Live has focus.
2. Remote commands: a running CoMo Live listens on a per-user local socket; `como-live --send
   bypass` (or any of `COMMANDS`) acts on it. Bind that command to a key in your desktop's keyboard
   settings and it works everywhere, on every platform, with no privileges and no extra package.
3. True global hotkeys (`GLOBAL_SHORTCUTS`) only where the OS allows it to a normal process:
   Windows `RegisterHotKey`. On Linux/X11 grabbing keys for the whole desktop needs an X client
   library this app does not depend on, Wayland forbids it by design, and macOS requires the
   Accessibility permission; `global_hotkey_support()` returns the sentence that says so.
"""
from __future__ import annotations

import ctypes
import getpass
import os
import re
import sys
from collections.abc import Mapping

from PyQt6.QtCore import QAbstractNativeEventFilter, QByteArray, QObject, pyqtSignal
from PyQt6.QtNetwork import QLocalServer, QLocalSocket

#: command name -> what it does (menu text).
COMMANDS: dict[str, str] = {
    "toggle": "Start / stop",
    "bypass": "Bypass (hear your own voice)",
    "pitch_up": "Pitch +1 semitone",
    "pitch_down": "Pitch −1 semitone",
    "next_speaker": "Next speaker",
    "record": "Record on / off",
}

#: In-window shortcuts (Qt key sequence strings).
SHORTCUTS: dict[str, str] = {
    "toggle": "Ctrl+Space",
    "bypass": "Ctrl+B",
    "pitch_up": "Ctrl+Up",
    "pitch_down": "Ctrl+Down",
    "next_speaker": "Ctrl+N",
    "record": "Ctrl+R",
}

#: Global hotkeys where the platform allows them (Ctrl+Alt avoids clashing with games and Discord).
GLOBAL_SHORTCUTS: dict[str, str] = {name: "Ctrl+Alt+" + key.split("+", 1)[1] for name, key in SHORTCUTS.items()}

_SERVER_PREFIX = "como-live-control"


def global_hotkey_support(platform: str = sys.platform, env: Mapping[str, str] = os.environ) -> tuple[bool, str]:
    """(available, sentence for the UI). The sentence always mentions the remote-command fallback."""
    fallback = ("Bind 'como-live --send toggle' (or bypass, pitch_up, pitch_down, next_speaker, record) "
                "to a key in your desktop's keyboard settings instead.")
    if platform == "win32":
        return True, "Global hotkeys (work while another app has focus): Ctrl+Alt + the same key."
    if platform == "darwin":
        return False, ("Global hotkeys are not available on macOS: catching keys pressed in other apps needs "
                       "the Accessibility permission. " + fallback)
    if env.get("WAYLAND_DISPLAY") or env.get("XDG_SESSION_TYPE", "").lower() == "wayland":
        return False, ("Global hotkeys are not available on Wayland: it does not let apps read keys pressed "
                       "in other windows. " + fallback)
    return False, ("Global hotkeys are not available on Linux/X11 without an extra package (grabbing keys for "
                   "the whole desktop needs an X client library this app does not install). " + fallback)


def server_name() -> str:
    """Per-user socket name, so two users on one machine do not control each other's app."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in odd containers; one shared name is still correct there
        user = "user"
    return f"{_SERVER_PREFIX}-{re.sub(r'[^A-Za-z0-9_-]', '_', user)}"


class CommandServer(QObject):
    """Receives one command name per connection from `send_command` and emits `commandReceived`."""

    commandReceived = pyqtSignal(str)

    def __init__(self, name: str | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name or server_name()
        self._server = QLocalServer(self)
        self._server.newConnection.connect(self._on_connection)

    def listen(self) -> tuple[bool, str]:
        """Start listening; (ok, reason). A stale socket from a crashed run is cleaned up."""
        if self._server.listen(self.name):
            return True, ""
        if send_command("ping", self.name) is None:
            return False, "Another CoMo Live is already running; remote commands go to it."
        QLocalServer.removeServer(self.name)  # nobody answered: a crash left the socket file behind
        if self._server.listen(self.name):
            return True, ""
        return False, f"Remote commands are off: {self._server.errorString()}"

    def close(self) -> None:
        self._server.close()

    def _on_connection(self) -> None:
        while (socket := self._server.nextPendingConnection()) is not None:
            socket.readyRead.connect(lambda s=socket: self._read(s))
            socket.disconnected.connect(socket.deleteLater)

    def _read(self, socket: QLocalSocket) -> None:
        if not socket.canReadLine():
            return
        command = bytes(socket.readLine()).decode("utf-8", "replace").strip()
        if command == "ping":
            socket.write(b"pong\n")
        elif command in COMMANDS:
            socket.write(b"ok\n")
            self.commandReceived.emit(command)
        else:
            socket.write(b"unknown command\n")
        socket.flush()
        socket.disconnectFromServer()


def send_command(command: str, name: str | None = None, timeout_ms: int = 1000) -> str | None:
    """Send `command` to a running CoMo Live; None on success, else the reason it failed."""
    if command != "ping" and command not in COMMANDS:
        return f"unknown command {command!r}; use one of: {', '.join(COMMANDS)}"
    socket = QLocalSocket()
    socket.connectToServer(name or server_name())
    if not socket.waitForConnected(timeout_ms):
        return "CoMo Live is not running (or its remote control is off)"
    socket.write(command.encode() + b"\n")
    socket.flush()
    if not socket.waitForReadyRead(timeout_ms):
        return "CoMo Live did not answer"
    answer = bytes(socket.readAll()).decode("utf-8", "replace").strip()
    socket.disconnectFromServer()
    if answer in ("ok", "pong"):
        return None
    return answer or "CoMo Live did not answer"


# --- Windows global hotkeys (RegisterHotKey needs no privileges) --------------------------------------
_MODIFIERS = {"alt": 0x1, "ctrl": 0x2, "shift": 0x4, "meta": 0x8}
_MOD_NOREPEAT = 0x4000
_WM_HOTKEY = 0x0312
_VIRTUAL_KEYS = {"space": 0x20, "up": 0x26, "down": 0x28, "left": 0x25, "right": 0x27}


def parse_hotkey(sequence: str) -> tuple[int, int]:
    """'Ctrl+Alt+B' -> (Win32 modifier flags, virtual-key code). Raises ValueError for unknown keys."""
    *mods, key = [part.strip().lower() for part in sequence.split("+")]
    flags = _MOD_NOREPEAT
    for mod in mods:
        if mod not in _MODIFIERS:
            raise ValueError(f"unknown modifier {mod!r} in {sequence!r}")
        flags |= _MODIFIERS[mod]
    if key in _VIRTUAL_KEYS:
        return flags, _VIRTUAL_KEYS[key]
    if len(key) == 1 and key.isalnum():
        return flags, ord(key.upper())  # VK codes of A-Z and 0-9 are their ASCII codes
    raise ValueError(f"unsupported key {key!r} in {sequence!r}")


class _MSG(ctypes.Structure):
    _fields_ = [("hwnd", ctypes.c_void_p), ("message", ctypes.c_uint), ("wParam", ctypes.c_size_t),
                ("lParam", ctypes.c_ssize_t), ("time", ctypes.c_uint), ("pt_x", ctypes.c_long),
                ("pt_y", ctypes.c_long)]


class WindowsHotkeys(QObject, QAbstractNativeEventFilter):
    """Registers `GLOBAL_SHORTCUTS` with RegisterHotKey and emits `commandReceived` on WM_HOTKEY.

    Install with `QCoreApplication.instance().installNativeEventFilter(obj)`. Windows only.
    """

    commandReceived = pyqtSignal(str)

    def __init__(self, shortcuts: Mapping[str, str] = GLOBAL_SHORTCUTS, parent: QObject | None = None) -> None:
        QObject.__init__(self, parent)
        QAbstractNativeEventFilter.__init__(self)
        self._ids: dict[int, str] = {}
        self.failed: list[str] = []
        user32 = ctypes.windll.user32  # type: ignore[attr-defined]  # only constructed on win32
        for number, (command, sequence) in enumerate(shortcuts.items(), start=0xC0DE):
            flags, vk = parse_hotkey(sequence)
            if user32.RegisterHotKey(None, number, flags, vk):
                self._ids[number] = command
            else:  # another app owns this combination
                self.failed.append(sequence)

    def unregister(self) -> None:
        user32 = ctypes.windll.user32  # type: ignore[attr-defined]
        for number in self._ids:
            user32.UnregisterHotKey(None, number)
        self._ids.clear()

    def nativeEventFilter(self, event_type: QByteArray | bytes, message: object) -> tuple[bool, int]:
        if bytes(event_type) == b"windows_generic_MSG":
            msg = _MSG.from_address(int(message))  # message is a sip.voidptr to the Win32 MSG
            if msg.message == _WM_HOTKEY and msg.wParam in self._ids:
                self.commandReceived.emit(self._ids[msg.wParam])
                return True, 0
        return False, 0
