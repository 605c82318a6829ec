"""A voice's sources and licences in the app: the "About…" button shows the pack's verified SOURCES.md."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from PyQt6.QtWidgets import QPlainTextEdit  # noqa: E402

from tests.fixtures.references import add_notice  # noqa: E402
from tests.test_app_fakes import build_window, make_pack, settle, zip_folder  # noqa: E402

pytestmark = pytest.mark.gui
NOTICE = "# Sources\n\n| what | licence |\n|---|---|\n| Kokoro-82M | Apache-2.0 |\n\n![x](/dev/zero)\n"


def test_about_shows_the_notice_as_plain_text(qtbot, tmp_path: Path) -> None:
    window = build_window(qtbot, tmp_path)
    panel = window.voice_panel
    assert not panel.about_button.isEnabled()                      # the built-in voice has no notice
    plain = make_pack(tmp_path / "plain", name="Plain")
    window.voice_panel.choose_folder(str(plain))
    settle(qtbot, window.bridge)
    assert not panel.about_button.isEnabled()
    pack = make_pack(tmp_path / "demo", name="Demo")
    add_notice(pack, NOTICE.encode())
    panel.choose_folder(str(pack))
    settle(qtbot, window.bridge)
    assert panel.about_button.isEnabled() and panel.notice_dialog is None
    panel.about_button.click()                                     # read on the job thread, shown when it answers
    settle(qtbot, window.bridge)
    dialog = panel.notice_dialog
    assert dialog is not None and dialog.isVisible() and dialog.windowTitle() == "About Demo"
    assert dialog.findChild(QPlainTextEdit).toPlainText() == NOTICE  # markdown shown as text, no image loaded
    dialog.close()
    (pack / "SOURCES.md").write_bytes(NOTICE.replace("Apache", "apache").encode())   # tampered after the check
    panel.about_button.click()
    settle(qtbot, window.bridge)
    assert window.statusBar().currentMessage().startswith("Could not read the sources of Demo: SOURCES.md does not "
                                                          "match its size and sha256")
    assert not dialog.isVisible()


def test_a_zip_import_keeps_the_notice(qtbot, tmp_path: Path) -> None:
    window = build_window(qtbot, tmp_path)
    pack = make_pack(tmp_path / "demo", name="Demo")
    add_notice(pack, NOTICE.encode())
    window.voice_panel.import_zip(str(zip_folder(pack, tmp_path / "demo.zip")))
    settle(qtbot, window.bridge)
    [installed] = [p for p in (tmp_path / "voices").iterdir() if p.is_dir()]
    assert (installed / "SOURCES.md").read_text() == NOTICE and window.bridge.voice.has_notice
