"""`python -m app` entry point: opens the window with the default voice, even with no sound devices."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from PyQt6.QtWidgets import QApplication  # noqa: E402

from app.__main__ import main  # noqa: E402
from app.engine_adapter import default_voice  # noqa: E402
from app.main_window import MainWindow  # noqa: E402

pytestmark = pytest.mark.gui


def test_main_opens_window_with_the_default_voice(qtbot, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("COMO_LIVE_VOICES", str(tmp_path / "voices"))
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # main() installs its own; restore it after
    seen: list[MainWindow] = []

    def fake_exec(app: QApplication) -> int:
        windows = [w for w in app.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        seen.extend(windows)
        for window in windows:
            qtbot.waitUntil(lambda: window.timing_panel.estimate.text() != "Estimated delay: —", timeout=20000)
            window.close()
        return 0

    monkeypatch.setattr(QApplication, "exec", fake_exec)
    assert main(["--config-dir", str(tmp_path / "cfg")]) == 0
    assert len(seen) == 1
    window = seen[0]
    assert window.bridge.config.voice == default_voice()
    assert window.voice_panel.voice_combo.currentData() == default_voice()
    assert (tmp_path / "cfg" / "settings.json").is_file()  # saved on close
