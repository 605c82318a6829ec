"""Voice panel: which voice, which speaker, pitch, noise gate, bypass."""
from __future__ import annotations

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout,
                             QGroupBox, QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget)

from app.bridge import AudioBridge
from app.settings_store import AppConfig
from app.values import VoiceInfo
from app.widgets.value_slider import ValueSlider

GATE_OFF_DB = -120.0
LOADING_TEXT = "Loading voices…"
CHECKING_TEXT = "Checking the voice pack…"


def _gate_text(db: float) -> str:
    return "off" if db <= GATE_OFF_DB else f"{db:.0f} dB"


class VoicePanel(QGroupBox):
    """Voice pack picker (installed, a folder, or an imported .zip) and the voice controls."""

    def __init__(self, bridge: AudioBridge, parent: QWidget | None = None) -> None:
        super().__init__("2 · Voice", parent)
        self.bridge = bridge
        self.voice_combo = QComboBox()
        self.voice_combo.setToolTip("The voice you sound like. The built-in voice needs no download.")
        self.voice_combo.addItem(LOADING_TEXT)   # until the first list arrives from the job thread
        self.voice_combo.setEnabled(False)
        self._listed = False
        self.voice_status = QLabel(CHECKING_TEXT)
        self.voice_status.setStyleSheet("color: #666;")
        self.voice_status.hide()
        self.folder_button = QPushButton("Open folder…")
        self.folder_button.setToolTip("Use a voice pack folder (with voice.json) from anywhere on disk.")
        self.import_button = QPushButton("Import .zip…")
        self.import_button.setToolTip("Install a voice pack .zip into your voices folder (checked, never executed).")
        self.about_button = QPushButton("About…")
        self.about_button.setToolTip("What this voice was trained from, and the licences of its sources and weights.")
        self.about_button.setEnabled(False)
        self.notice_dialog: QDialog | None = None
        self.speaker_combo = QComboBox()
        self.speaker_combo.setToolTip("Voice packs can hold several singers (speakers).")
        self.preview_button = QPushButton("▶ preview")
        self.preview_button.setToolTip("Hear a few seconds of this speaker's voice (on the monitor, else the "
                                       "output; while live, on the monitor only).")
        self.preview_button.setEnabled(False)
        self.preview_on_choice = QCheckBox("Preview voices when chosen")
        self.preview_on_choice.setToolTip("Play a speaker's preview clip when you pick the speaker, if the voice "
                                          "pack has one.")
        self.pitch = ValueSlider(-24, 24, 1, fmt=lambda v: f"{v:+.0f} st")
        self.pitch.setToolTip("Pitch shift in semitones (12 = one octave). Male→female is often +12.")
        self.gate = ValueSlider(GATE_OFF_DB, 0, 1, fmt=_gate_text)
        self.gate.setToolTip("Noise gate: input quieter than this is muted, so room noise and breaths are "
                             "not converted into artefacts. Far left = off.")
        self.bypass = QCheckBox("Bypass (send my real voice)")
        self.bypass.setToolTip("Passes your unconverted voice through, with the same delay, for talking.")

        picker = QHBoxLayout()
        picker.addWidget(self.voice_combo, 1)
        picker.addWidget(self.folder_button)
        picker.addWidget(self.import_button)
        picker.addWidget(self.about_button)
        form = QFormLayout(self)
        form.addRow("Voice", picker)
        form.addRow(self.voice_status)   # spans the row; takes no room while hidden
        speaker = QHBoxLayout()
        speaker.addWidget(self.speaker_combo, 1)
        speaker.addWidget(self.preview_button)
        form.addRow("Speaker", speaker)
        form.addRow("", self.preview_on_choice)
        form.addRow("Pitch", self.pitch)
        form.addRow("Noise gate", self.gate)
        form.addRow("", self.bypass)

        self.voice_combo.activated.connect(self._on_voice_chosen)
        self.folder_button.clicked.connect(lambda: self.choose_folder())
        self.import_button.clicked.connect(lambda: self.import_zip())
        self.about_button.clicked.connect(lambda: bridge.show_notice())
        self.speaker_combo.activated.connect(lambda _: bridge.choose_speaker(int(self.speaker_combo.currentData())))
        self.preview_button.clicked.connect(lambda: bridge.preview())
        self.preview_on_choice.toggled.connect(bridge.set_preview_voices)
        self.pitch.valueChanged.connect(lambda v: bridge.set_settings(pitch=v))
        self.gate.valueChanged.connect(lambda v: bridge.set_settings(gate_db=v))
        self.bypass.toggled.connect(lambda on: bridge.set_settings(bypass=on))
        bridge.voicesListed.connect(self._on_voices)
        bridge.voiceLoading.connect(self._on_loading)
        bridge.voiceChanged.connect(self._on_voice)
        bridge.configChanged.connect(self._on_config)
        bridge.noticeRead.connect(self._show_notice)

    # -- user actions (path=None opens a dialog; tests pass a path) --------------------------------------
    def choose_folder(self, path: str | None = None) -> None:
        """Check and select a pack folder (the answer comes back through the bridge's signals)."""
        if path is None:
            path = QFileDialog.getExistingDirectory(self, "Choose a voice pack folder (with voice.json)")
            if not path:
                return
        self.bridge.set_voice(path)

    def import_zip(self, path: str | None = None) -> None:
        """Install and select a .zip (the answer comes back through the bridge's signals)."""
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Import a voice pack", "", "Voice pack (*.zip)")
            if not path:
                return
        self.bridge.import_voice(path)

    # -- observers ---------------------------------------------------------------------------------------
    def _on_voice_chosen(self, _row: int) -> None:
        spec = self.voice_combo.currentData()
        if spec and spec != self.bridge.voice.spec:
            self.bridge.set_voice(spec)

    def _on_loading(self, loading: bool) -> None:
        """No second pick while a pack is checked; the bridge's voice is still the one in use."""
        self.voice_status.setVisible(loading)
        self._sync_enabled()

    def _sync_enabled(self) -> None:
        loading = self.bridge.voice_loading
        self.voice_combo.setEnabled(self._listed and not loading)
        self.folder_button.setEnabled(not loading)
        self.import_button.setEnabled(not loading)

    def _on_voices(self, voices: list[VoiceInfo]) -> None:
        self._listed = True
        self._sync_enabled()
        self.voice_combo.clear()
        for voice in voices:
            self.voice_combo.addItem(voice.label, voice.spec)
            self.voice_combo.setItemData(self.voice_combo.count() - 1, voice.spec, Qt.ItemDataRole.ToolTipRole)
        self._select_voice(self.bridge.voice)

    def _select_voice(self, voice: VoiceInfo) -> None:
        row = self.voice_combo.findData(voice.spec)
        if row < 0:
            self.voice_combo.addItem(voice.label, voice.spec)
            row = self.voice_combo.count() - 1
        self.voice_combo.setCurrentIndex(row)

    def _show_notice(self, voice_name: str, text: str) -> None:
        """The notice in a non-modal window, as plain text: a pack's markdown is never rendered (rich text
        could make Qt load files it names)."""
        if self.notice_dialog is None:
            self.notice_dialog = QDialog(self)
            view = QPlainTextEdit()
            view.setReadOnly(True)
            buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
            buttons.rejected.connect(self.notice_dialog.close)
            layout = QVBoxLayout(self.notice_dialog)
            layout.addWidget(view)
            layout.addWidget(buttons)
            self.notice_dialog.resize(720, 480)
        self.notice_dialog.setWindowTitle(f"About {voice_name}")
        self.notice_dialog.findChild(QPlainTextEdit).setPlainText(text)
        self.notice_dialog.show()
        self.notice_dialog.raise_()

    def _on_voice(self, voice: VoiceInfo) -> None:
        self._select_voice(voice)
        self.about_button.setEnabled(voice.has_notice)
        self.speaker_combo.clear()
        for name, sid in voice.speakers:
            self.speaker_combo.addItem(name, sid)
        self.speaker_combo.setEnabled(len(voice.speakers) > 1)
        self._on_config(self.bridge.config)

    def _on_config(self, config: AppConfig) -> None:
        settings = config.settings
        row = self.speaker_combo.findData(settings.speaker)
        if row >= 0:
            self.speaker_combo.setCurrentIndex(row)
        voice = self.bridge.voice
        self.preview_button.setEnabled(voice.speaker_name(settings.speaker) in voice.previews)
        self.preview_on_choice.blockSignals(True)
        self.preview_on_choice.setChecked(config.preview_voices)
        self.preview_on_choice.blockSignals(False)
        self.pitch.set_value(settings.pitch)
        self.gate.set_value(settings.gate_db)
        self.bypass.blockSignals(True)
        self.bypass.setChecked(settings.bypass)
        self.bypass.blockSignals(False)
