"""`python -m app` / `como-live`: open the CoMo Live window, or send a command to a running one.

    como-live                      open the window (settings from the user config folder)
    como-live --send bypass        toggle bypass in the running window (bind this to a desktop key)
    como-live --config-dir DIR     keep settings.json in DIR (portable installs, tests)
    como-live --self-test          convert 2 s of generated audio with the default voice; exit 0 if it works
    como-live --version            print the version
    como-live --install-desktop-entry   add CoMo Live to the Linux desktop menu (current user)
"""
from __future__ import annotations

import argparse
import sys

from app.hotkeys import COMMANDS, global_hotkey_support
from app.version import __version__


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="como-live", description="CoMo Live real-time voice changer")
    parser.add_argument("--send", choices=sorted(COMMANDS), help="send a command to the running window and exit")
    parser.add_argument("--config-dir", help="folder for settings.json (default: the user config folder)")
    parser.add_argument("--self-test", action="store_true",
                        help="convert 2 s of generated audio with the default voice, print provider and latency")
    parser.add_argument("--voice", help="with --self-test: test this voice (builtin:dsp, builtin:demo or a pack folder)")
    parser.add_argument("--install-desktop-entry", action="store_true",
                        help="add CoMo Live to the desktop menu of the current user (Linux)")
    parser.add_argument("--version", action="version", version=f"como-live {__version__}")
    return parser.parse_args(argv)


def _install_desktop_entry() -> int:
    from app.desktop_entry import DesktopEntryError, install_desktop_entry

    try:
        entry = install_desktop_entry()
    except (DesktopEntryError, OSError) as exc:
        print(f"como-live: {exc}", file=sys.stderr)
        return 2
    print(f"como-live: installed {entry}; CoMo Live is now in the desktop menu")
    return 0


def _send(command: str) -> int:
    from PyQt6.QtCore import QCoreApplication

    from app.hotkeys import send_command

    _app = QCoreApplication([sys.argv[0]])  # QLocalSocket wants an application object
    error = send_command(command)
    if error:
        print(f"como-live: {error}", file=sys.stderr)
        return 1
    return 0


def _report_unexpected_errors(window: object) -> None:
    """PyQt aborts on an exception escaping a slot; show it instead and keep the app (and audio) up."""
    import traceback

    def hook(kind: type[BaseException], value: BaseException, tb: object) -> None:
        traceback.print_exception(kind, value, tb)
        try:
            window.show_message("error", f"Internal error ({kind.__name__}: {value}). Please report it.")
        except Exception:  # the window itself is broken: the traceback above is all we can do
            pass

    sys.excepthook = hook


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.send:
        return _send(args.send)
    if args.self_test:
        from app import self_test

        return self_test.main(__version__, args.voice)
    if args.install_desktop_entry:
        return _install_desktop_entry()

    from PyQt6.QtGui import QIcon
    from PyQt6.QtWidgets import QApplication

    from app.desktop_entry import ENTRY_NAME, ICON
    from app.hotkeys import CommandServer
    from app.main_window import open_main_window
    from app.settings_store import SettingsStore

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName("CoMo Live")
    app.setApplicationVersion(__version__)
    app.setDesktopFileName(ENTRY_NAME)   # Wayland matches the window to its .desktop entry (and icon)
    app.setWindowIcon(QIcon(str(ICON)))
    window = open_main_window(SettingsStore(args.config_dir))

    server = CommandServer(parent=window)
    listening, reason = server.listen()
    server.commandReceived.connect(window.run_command)
    if not listening:
        window.show_message("warning", reason)
    available, _sentence = global_hotkey_support()
    if available and sys.platform == "win32":
        from app.hotkeys import WindowsHotkeys

        hotkeys = WindowsHotkeys(parent=window)
        hotkeys.commandReceived.connect(window.run_command)
        app.installNativeEventFilter(hotkeys)
        app.aboutToQuit.connect(hotkeys.unregister)
        if hotkeys.failed:
            window.show_message("warning", "Global hotkeys taken by another app: " + ", ".join(hotkeys.failed))
    _report_unexpected_errors(window)
    window.show()
    code = app.exec()
    server.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
