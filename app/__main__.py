"""`python -m app` / `como-live`: open the CoMo Live window, or send a command to a running one.

    como-live                      open the window (settings from the user config folder)
    como-live --send bypass        toggle bypass in the running window (bind this to a desktop key)
    como-live --config-dir DIR     keep settings.json in DIR (portable installs, tests)
"""
from __future__ import annotations

import argparse
import sys

from app.hotkeys import COMMANDS, global_hotkey_support


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="como-live", description="CoMo Live real-time voice changer")
    parser.add_argument("--send", choices=sorted(COMMANDS), help="send a command to the running window and exit")
    parser.add_argument("--config-dir", help="folder for settings.json (default: the user config folder)")
    return parser.parse_args(argv)


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

    from PyQt6.QtWidgets import QApplication

    from app.hotkeys import CommandServer
    from app.main_window import open_main_window
    from app.settings_store import SettingsStore

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName("CoMo Live")
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
