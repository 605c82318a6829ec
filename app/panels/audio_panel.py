"""Audio panel: where the voice comes from and where it goes (mic, virtual cable, headphones)."""
from __future__ import annotations

from PyQt6.QtWidgets import (QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QPushButton,
                             QSpinBox, QWidget)

from app.bridge import AudioBridge
from app.settings_store import AppConfig
from app.values import DeviceInfo
from app.widgets.device_combo import DeviceCombo
from app.widgets.value_slider import ValueSlider

SAMPLE_RATES = (44100, 48000, 88200, 96000)


class AudioPanel(QGroupBox):
    """Devices, rate, channel and the three gains. Observes the bridge; never touches audio."""

    def __init__(self, bridge: AudioBridge, parent: QWidget | None = None) -> None:
        super().__init__("1 · Audio devices", parent)
        self.bridge = bridge
        self.input_combo = DeviceCombo(True, "System default microphone")
        self.input_combo.setToolTip("Your microphone (the singer's voice goes in here).")
        self.output_combo = DeviceCombo(False, "System default output")
        self.output_combo.setToolTip(
            "Where the converted voice goes. Pick a virtual cable (★) so Discord/OBS can use it as a mic.")
        self.monitor_combo = DeviceCombo(False, "Off (no monitor)")
        self.monitor_combo.setToolTip(
            "Your headphones, to hear the converted voice yourself. Use headphones, not speakers, "
            "or the mic picks the monitor up again.")
        self.cable_hint = QLabel()
        self.cable_hint.setWordWrap(True)
        self.cable_hint.setStyleSheet("color: #8e44ad;")

        self.channel_spin = QSpinBox()
        self.channel_spin.setRange(1, 64)
        self.channel_spin.setToolTip("Which input channel carries your mic (audio interfaces have several).")
        self.rate_combo = QComboBox()
        self.rate_combo.addItem("Device default", None)
        for rate in SAMPLE_RATES:
            self.rate_combo.addItem(f"{rate} Hz", rate)
        self.rate_combo.setToolTip("Sample rate of the devices. Input and output must support it; "
                                   "'Device default' avoids most 'Invalid sample rate' errors.")

        self.input_gain = ValueSlider(-40, 40, 0.5)
        self.input_gain.setToolTip("Gain before conversion. Aim for green on the IN meter while singing.")
        self.output_gain = ValueSlider(-40, 40, 0.5)
        self.output_gain.setToolTip("Gain of the converted voice sent to the output / virtual cable.")
        self.monitor_gain = ValueSlider(-60, 20, 0.5)
        self.monitor_gain.setToolTip("How loud you hear yourself in the monitor; does not change what "
                                     "Discord/OBS receive.")

        self.refresh_button = QPushButton("Refresh devices")
        self.refresh_button.setToolTip("List devices again (after plugging in a headset or installing a cable).")
        self.create_mic_button = QPushButton("Create virtual mic")
        self.remove_mic_button = QPushButton("Remove")
        self._on_virtual_mic_support(False, "Checking whether a virtual mic can be created here…")

        rate_row = QHBoxLayout()
        rate_row.addWidget(QLabel("Channel"))
        rate_row.addWidget(self.channel_spin)
        rate_row.addSpacing(12)
        rate_row.addWidget(QLabel("Rate"))
        rate_row.addWidget(self.rate_combo, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.refresh_button)
        buttons.addStretch(1)
        buttons.addWidget(self.create_mic_button)
        buttons.addWidget(self.remove_mic_button)

        form = QFormLayout(self)
        form.addRow("Microphone", self.input_combo)
        form.addRow("", rate_row)
        form.addRow("Output (to Discord/OBS)", self.output_combo)
        form.addRow("", self.cable_hint)
        form.addRow("Monitor (headphones)", self.monitor_combo)
        form.addRow("Input gain", self.input_gain)
        form.addRow("Output gain", self.output_gain)
        form.addRow("Monitor gain", self.monitor_gain)
        form.addRow(buttons)

        self.input_combo.refChosen.connect(lambda ref: bridge.set_device("input", ref))
        self.output_combo.refChosen.connect(lambda ref: bridge.set_device("output", ref))
        self.monitor_combo.refChosen.connect(lambda ref: bridge.set_device("monitor", ref))
        self.channel_spin.valueChanged.connect(lambda value: bridge.set_input_channel(value - 1))
        self.rate_combo.activated.connect(lambda _: bridge.set_sample_rate(self.rate_combo.currentData()))
        self.input_gain.valueChanged.connect(lambda v: bridge.set_settings(input_gain_db=v))
        self.output_gain.valueChanged.connect(lambda v: bridge.set_settings(output_gain_db=v))
        self.monitor_gain.valueChanged.connect(lambda v: bridge.set_settings(monitor_gain_db=v))
        self.refresh_button.clicked.connect(lambda: bridge.refresh_devices(rescan=True))  # not `clicked`'s bool
        self.create_mic_button.clicked.connect(bridge.create_virtual_mic)
        self.remove_mic_button.clicked.connect(bridge.remove_virtual_mic)
        bridge.devicesChanged.connect(self._on_devices)
        bridge.virtualMicSupport.connect(self._on_virtual_mic_support)
        bridge.configChanged.connect(self._on_config)
        bridge.stateChanged.connect(self._on_state)

    def _on_virtual_mic_support(self, supported: bool, reason: str) -> None:
        for button in (self.create_mic_button, self.remove_mic_button):
            button.setEnabled(supported)
        self.create_mic_button.setToolTip(
            "Creates a virtual microphone (PulseAudio/PipeWire null sink) that Discord/OBS can select."
            if supported else reason)
        self.remove_mic_button.setToolTip("Removes the virtual mic created here." if supported else reason)

    def _on_devices(self, devices: list[DeviceInfo]) -> None:
        config = self.bridge.config
        self.input_combo.set_devices(devices, config.input_device)
        self.output_combo.set_devices(devices, config.output_device)
        self.monitor_combo.set_devices(devices, config.monitor_device)
        self._update_hint(config)

    def _update_hint(self, config: AppConfig) -> None:
        cable = self.bridge.suggested_output()
        if cable is None:
            self.cable_hint.setText("No virtual cable found. To feed Discord/OBS, install one (VB-Cable on "
                                    "Windows, BlackHole on macOS) or use “Create virtual mic” on Linux.")
        elif config.output_device == cable.ref:
            self.cable_hint.setText(f"★ Good: in Discord/OBS choose “{cable.name}” (its monitor/other end) "
                                    "as the microphone.")
        else:
            self.cable_hint.setText(f"★ Suggested output: “{cable.name}” (virtual cable for Discord/OBS).")

    def _on_config(self, config: AppConfig) -> None:
        self.input_combo.select(config.input_device)
        self.output_combo.select(config.output_device)
        self.monitor_combo.select(config.monitor_device)
        self.channel_spin.blockSignals(True)
        self.channel_spin.setValue(config.input_channel + 1)
        self.channel_spin.blockSignals(False)
        if config.sample_rate is not None and self.rate_combo.findData(config.sample_rate) < 0:
            self.rate_combo.addItem(f"{config.sample_rate} Hz", config.sample_rate)  # an unusual saved rate
        row = 0 if config.sample_rate is None else self.rate_combo.findData(config.sample_rate)
        self.rate_combo.setCurrentIndex(row)
        self.input_gain.set_value(config.settings.input_gain_db)
        self.output_gain.set_value(config.settings.output_gain_db)
        self.monitor_gain.set_value(config.settings.monitor_gain_db)
        self._update_hint(config)

    def _on_state(self, state: str, _message: str) -> None:
        # Changing devices while running restarts the session; allowed, but not mid-start.
        busy = state in ("starting", "stopping")
        for widget in (self.input_combo, self.output_combo, self.monitor_combo, self.rate_combo,
                       self.channel_spin, self.refresh_button):
            widget.setEnabled(not busy)
