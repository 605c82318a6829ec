"""The main window: three columns (Audio | Voice + Timing | Live) and a big Start button.

Errors never open modal dialogs (a dialog stealing focus mid-stream is worse than the error): they
show in a red banner above the panels and in the status bar, and the window stays usable.
"""
from __future__ import annotations

from PyQt6.QtCore import Qt, QTimer
from PyQt6.QtGui import QAction, QCloseEvent, QKeySequence
from PyQt6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QMainWindow, QPushButton, QSizePolicy,
                             QVBoxLayout, QWidget)

from app.bridge import AudioBridge
from app.hotkeys import COMMANDS, SHORTCUTS, global_hotkey_support
from app.panels import AudioPanel, ReadoutsPanel, TimingPanel, VoicePanel
from app.settings_store import AppConfig, SettingsStore
from app.values import Readouts

SAVE_DELAY_MS = 500  # settle slider drags before writing settings.json
STATE_TEXT = {"stopped": "Stopped", "starting": "Starting…", "running": "LIVE", "stopping": "Stopping…",
              "error": "Error — fix it and press Start again", "waiting": "Waiting for the device…"}
BANNER_COLOURS = {"error": "#c0392b", "warning": "#b9770e"}
BANNER_STYLE = "background: %s; color: white; padding: 8px; border-radius: 4px;"
START_STYLE = ("QPushButton {font-size: 20pt; font-weight: bold; padding: 14px 40px; border-radius: 8px;"
               " color: white; background: %s;} QPushButton:disabled {background: #7f8c8d;}")


class MainWindow(QMainWindow):
    def __init__(self, bridge: AudioBridge, store: SettingsStore | None = None,
                 warnings: list[str] | None = None) -> None:
        super().__init__()
        self.bridge = bridge
        self.store = store
        self.setWindowTitle("CoMo Live — real-time voice changer")

        self.banner = QLabel()
        self.banner.setObjectName("errorBanner")
        self.banner.setWordWrap(True)
        self.banner.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.banner.hide()
        self.banner_close = QPushButton("Dismiss")
        self.banner_close.hide()
        self.banner_close.clicked.connect(self.clear_error)

        self.audio_panel = AudioPanel(bridge)
        self.voice_panel = VoicePanel(bridge)
        self.timing_panel = TimingPanel(bridge)
        self.readouts_panel = ReadoutsPanel(bridge)
        self.readouts_panel.setMinimumWidth(360)

        self.start_button = QPushButton("▶  Start")
        self.start_button.setObjectName("startButton")
        self.start_button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.record_button = QPushButton("●  Record")
        self.record_button.setCheckable(True)
        self.record_folder_button = QPushButton("Recordings folder…")
        self.state_label = QLabel(STATE_TEXT["stopped"])
        self.state_label.setObjectName("stateLabel")
        self.state_label.setStyleSheet("font-size: 14pt; font-weight: bold;")
        keys = " · ".join(f"{self._shortcut_text(name)} {text.split(' (')[0].lower()}"
                          for name, text in COMMANDS.items())
        self.hotkey_note = QLabel(f"Shortcuts: {keys}.\n{global_hotkey_support()[1]}")
        self.hotkey_note.setWordWrap(True)
        self.hotkey_note.setStyleSheet("color: #666; font-size: 9pt;")

        self._actions = self._build_actions()
        self._build_layout()
        self._build_menu()

        self._save_timer = QTimer(self)
        self._save_timer.setSingleShot(True)
        self._save_timer.setInterval(SAVE_DELAY_MS)
        self._save_timer.timeout.connect(self.save_settings)

        self.start_button.clicked.connect(bridge.toggle)
        self.record_button.toggled.connect(self._on_record_toggled)
        self.record_folder_button.clicked.connect(lambda: self.choose_record_dir())
        bridge.stateChanged.connect(self._on_state)
        bridge.message.connect(self.show_message)
        bridge.configChanged.connect(self._on_config)
        bridge.readoutsUpdated.connect(self._on_readouts)
        bridge.voiceLoading.connect(lambda _: self._sync_start_button())
        self._on_state("stopped", "")
        self._on_config(bridge.config)
        self._pending_warnings = list(warnings or [])

    # -- construction ---------------------------------------------------------------------------------
    def _build_actions(self) -> dict[str, QAction]:
        handlers = {
            "toggle": self.bridge.toggle,
            "bypass": self.bridge.toggle_bypass,
            "pitch_up": lambda: self.bridge.nudge_pitch(+1),
            "pitch_down": lambda: self.bridge.nudge_pitch(-1),
            "next_speaker": self.bridge.next_speaker,
            "record": lambda: self.record_button.toggle(),
        }
        actions = {}
        for name, text in COMMANDS.items():
            action = QAction(text, self)
            action.setShortcut(QKeySequence(SHORTCUTS[name]))
            action.setShortcutContext(Qt.ShortcutContext.ApplicationShortcut)
            action.triggered.connect(handlers[name])
            self.addAction(action)  # active even when the menu is closed
            actions[name] = action
        return actions

    def run_command(self, name: str) -> None:
        """Entry point for remote commands and global hotkeys (same as the menu items)."""
        self._actions[name].trigger()

    def _shortcut_text(self, name: str) -> str:
        return QKeySequence(SHORTCUTS[name]).toString(QKeySequence.SequenceFormat.NativeText)

    def _build_layout(self) -> None:
        self.start_button.setToolTip(f"Start or stop the voice changer ({self._shortcut_text('toggle')})")
        self.record_button.setToolTip(f"Record mic and converted voice to WAV ({self._shortcut_text('record')})")
        self.voice_panel.bypass.setToolTip(self.voice_panel.bypass.toolTip()
                                           + f" ({self._shortcut_text('bypass')})")
        self.voice_panel.pitch.setToolTip(self.voice_panel.pitch.toolTip() + f" ({self._shortcut_text('pitch_up')}"
                                          f" / {self._shortcut_text('pitch_down')})")
        self.voice_panel.speaker_combo.setToolTip(self.voice_panel.speaker_combo.toolTip()
                                                  + f" Next speaker: {self._shortcut_text('next_speaker')}.")
        columns = QHBoxLayout()
        for stretch, panels in ((5, (self.audio_panel,)), (5, (self.voice_panel, self.timing_panel)),
                                (4, (self.readouts_panel,))):
            column = QVBoxLayout()
            for panel in panels:
                column.addWidget(panel)
            column.addStretch(1)  # boxes keep their natural height; spare room goes below them
            columns.addLayout(column, stretch)

        banner = QHBoxLayout()
        banner.addWidget(self.banner, 1)
        banner.addWidget(self.banner_close)

        bottom = QHBoxLayout()
        bottom.addWidget(self.start_button, 3)
        bottom.addSpacing(12)
        bottom.addWidget(self.state_label, 2)
        bottom.addWidget(self.record_button)
        bottom.addWidget(self.record_folder_button)

        root = QVBoxLayout()
        root.addLayout(banner)
        root.addLayout(columns, 1)
        root.addLayout(bottom)
        root.addWidget(self.hotkey_note)
        central = QWidget()
        central.setLayout(root)
        self.setCentralWidget(central)
        self.resize(1360, 650)

    def _build_menu(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        for text, slot in (("Import voice pack (.zip)…", lambda: self.voice_panel.import_zip()),
                           ("Open voice pack folder…", lambda: self.voice_panel.choose_folder()),
                           ("Choose recordings folder…", lambda: self.choose_record_dir())):
            file_menu.addAction(text).triggered.connect(slot)
        file_menu.addSeparator()
        file_menu.addAction("Quit").triggered.connect(self.close)
        controls = self.menuBar().addMenu("&Controls")
        for action in self._actions.values():
            controls.addAction(action)
        controls.addSeparator()
        note = controls.addAction("Global hotkeys: see the note at the bottom of the window")
        note.setEnabled(False)

    # -- observers ------------------------------------------------------------------------------------
    def _on_state(self, state: str, message: str) -> None:
        running = state in ("starting", "running", "waiting")
        self.start_button.setText("■  Stop" if running else "▶  Start")
        self.start_button.setStyleSheet(START_STYLE % ("#c0392b" if running else "#27ae60"))
        self._sync_start_button(state)
        self.state_label.setText(STATE_TEXT.get(state, state))
        self.state_label.setStyleSheet("font-size: 14pt; font-weight: bold; color: %s;" % {
            "running": "#27ae60", "error": "#c0392b"}.get(state, "palette(text)"))
        if state == "running":
            self.clear_error()
            # Not the engine's start message: its latency figure is from before the first blocks;
            # the measured one is in the Live panel and next to the Stop button.
            self.statusBar().showMessage("Live: your converted voice is on the output.")
        elif state in ("starting", "waiting") and message:
            self.statusBar().showMessage(message)

    def _sync_start_button(self, state: str | None = None) -> None:
        """Start waits for a voice being checked (Stop never does); no press while stopping."""
        state = state or self.bridge.state
        running = state in ("starting", "running")
        self.start_button.setEnabled(state != "stopping" and (running or not self.bridge.voice_loading))

    def _on_readouts(self, readouts: Readouts) -> None:
        if self.bridge.state == "running" and readouts.latency is not None:
            self.state_label.setText(f"LIVE · {readouts.latency.total_ms:.0f} ms delay")

    def _on_config(self, config: AppConfig) -> None:
        self.record_button.setEnabled(bool(config.record_dir))
        self.record_folder_button.setToolTip(config.record_dir or "No folder chosen yet")
        if self.store is not None:
            self._save_timer.start()

    def _on_record_toggled(self, on: bool) -> None:
        self.bridge.set_recording(on)
        if self.bridge.recording != on:  # refused (no folder): un-press the button
            self.record_button.blockSignals(True)
            self.record_button.setChecked(self.bridge.recording)
            self.record_button.blockSignals(False)

    # -- actions --------------------------------------------------------------------------------------
    def choose_record_dir(self, path: str | None = None) -> None:
        if path is None:
            path = QFileDialog.getExistingDirectory(self, "Folder for recordings")
            if not path:
                return
        self.bridge.set_record_dir(path)
        self.statusBar().showMessage(f"Recordings go to {path}", 5000)

    def show_message(self, level: str, text: str) -> None:
        """Status bar for everything; errors and warnings also stay in the banner until dismissed."""
        self.statusBar().showMessage(text, 0 if level == "error" else 8000)
        colour = BANNER_COLOURS.get(level)
        if colour is None:
            return
        lines = self.banner.text().splitlines() if not self.banner.isHidden() else []
        if level == "error" or not lines:  # an error outranks the warnings shown so far
            self.banner.setStyleSheet(BANNER_STYLE % colour)
        self.banner.setText("\n".join((lines + [text])[-4:]))
        self.banner.show()
        self.banner_close.show()

    def clear_error(self) -> None:
        self.banner.hide()
        self.banner_close.hide()

    def show_pending_warnings(self) -> None:
        """Warnings from loading settings (shown once the window exists)."""
        for warning in self._pending_warnings:
            self.show_message("warning", warning)
        self._pending_warnings.clear()

    def save_settings(self) -> None:
        if self.store is None:
            return
        try:
            self.store.save(self.bridge.config)
        except OSError as exc:
            self.show_message("warning", f"Could not save settings: {exc}")

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt naming)
        self._save_timer.stop()
        self.save_settings()
        if self.bridge.running:
            # The one bounded wait (bridge.shutdown, at most 5 s) lets the devices close cleanly; say so first.
            self._on_state("stopping", "")
            self.statusBar().showMessage("Stopping audio…")
            self.repaint()
        self.bridge.shutdown()
        super().closeEvent(event)


def open_main_window(store: SettingsStore | None = None, session: object = None,
                     engine: object = None) -> MainWindow:
    """Load settings, build the bridge (with a real LiveSession unless one is given) and the window.

    The window is built before `bridge.initialize()` so it observes the first device list, the
    restored voice and any fallback warnings (all answered from the job thread after this returns).
    """
    config, warnings = store.load() if store is not None else (AppConfig(), [])
    first_run = store is not None and not store.path.exists()
    bridge = AudioBridge(config, session=session, engine=engine)
    window = MainWindow(bridge, store, warnings)

    def suggest_cable() -> None:
        cable = bridge.suggested_output()
        if cable is not None and bridge.config.output_device is None:
            bridge.set_device("output", cable.ref)
            window.show_message("info", f"Output set to the virtual cable “{cable.name}”: pick it as the "
                                        "microphone in Discord/OBS, and choose your headphones as Monitor.")

    bridge.initialize(then=suggest_cable if first_run else None)
    window.show_pending_warnings()
    return window
