"""Live readouts: meters, the latency breakdown, compute vs. budget, dropouts, provider.

Everything here is fed by the bridge's signals (GUI thread). Before Start the latency table shows
the engine's estimate; while running it shows the measured breakdown (with the latencies the
devices report), labelled so the user always knows which one is on screen.
"""
from __future__ import annotations

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QGridLayout, QGroupBox, QLabel, QVBoxLayout, QWidget

from app.bridge import AudioBridge
from app.values import LATENCY_PARTS, LatencyView, Readouts
from app.widgets.budget_bar import BudgetBar, budget_colour
from app.widgets.level_meter import LevelMeter


def _bold(text: str = "") -> QLabel:
    label = QLabel(text)
    label.setStyleSheet("font-weight: bold;")
    return label


class ReadoutsPanel(QGroupBox):
    def __init__(self, bridge: AudioBridge, parent: QWidget | None = None) -> None:
        super().__init__("Live", parent)
        self.bridge = bridge
        self.input_meter = LevelMeter("Input (mic)")
        self.output_meter = LevelMeter("Output (converted)")

        self.latency_title = _bold("Delay (estimate)")
        self.latency_values: dict[str, QLabel] = {}
        grid = QGridLayout()
        grid.setHorizontalSpacing(16)
        grid.setVerticalSpacing(2)
        for row, (_field, label, tip) in enumerate(LATENCY_PARTS):
            name = QLabel(label)
            name.setToolTip(tip)
            value = QLabel("—")
            value.setAlignment(Qt.AlignmentFlag.AlignRight)
            value.setToolTip(tip)
            grid.addWidget(name, row, 0)
            grid.addWidget(value, row, 1)
            self.latency_values[label] = value
        self.total_label = _bold("Total, mic to ears")
        self.total_value = _bold("—")
        self.total_value.setObjectName("latencyTotal")
        self.total_value.setStyleSheet("font-weight: bold; font-size: 14pt;")
        self.total_value.setAlignment(Qt.AlignmentFlag.AlignRight)
        grid.addWidget(self.total_label, len(LATENCY_PARTS), 0)
        grid.addWidget(self.total_value, len(LATENCY_PARTS), 1)

        self.compute_bar = BudgetBar()
        self.compute_bar.setToolTip("Time to convert one block (bar: typical p50, white tick: worst 1 % p99) "
                                    "against the block length (red line). Past the line = crackles.")
        self.compute_text = QLabel("Compute per block: —")
        self.compute_text.setWordWrap(True)
        self.underruns = QLabel("Dropouts: 0")
        self.underruns.setToolTip("Late blocks: the output ran dry because converting a block took too long (a "
                                  "crackle or gap) — raise the block size or use a faster provider. Driver xruns: "
                                  "the sound card itself over/underflowed — raise its buffer or close other audio apps.")
        self.notes = QLabel()
        self.notes.setWordWrap(True)
        self.notes.setStyleSheet("color: #b9770e;")
        self.notes.hide()
        self.provider = _bold("Provider: —")
        self.provider_note = QLabel("")
        self.provider_note.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.addWidget(_bold("Input level (mic)"))
        layout.addWidget(self.input_meter)
        layout.addWidget(_bold("Output level (converted voice)"))
        layout.addWidget(self.output_meter)
        layout.addSpacing(8)
        layout.addWidget(self.latency_title)
        layout.addLayout(grid)
        layout.addSpacing(8)
        layout.addWidget(_bold("Compute per block vs. budget"))
        layout.addWidget(self.compute_bar)
        layout.addWidget(self.compute_text)
        layout.addWidget(self.underruns)
        layout.addWidget(self.notes)
        layout.addSpacing(8)
        layout.addWidget(self.provider)
        layout.addWidget(self.provider_note)
        layout.addStretch(1)

        bridge.latencyEstimated.connect(self._on_estimate)
        bridge.readoutsUpdated.connect(self.show_readouts)

    def _show_latency(self, view: LatencyView, title: str) -> None:
        self.latency_title.setText(title)
        for row in view.rows:
            self.latency_values[row.label].setText(f"{row.ms:.1f} ms")
        self.total_value.setText(f"{view.total_ms:.0f} ms")

    def _on_estimate(self, view: LatencyView | None, _error: str) -> None:
        if self.bridge.running:
            return  # the measured numbers are on screen; do not overwrite them with an estimate
        if view is None:
            self.latency_title.setText("Delay (unknown)")
            for value in self.latency_values.values():
                value.setText("—")
            self.total_value.setText("—")
            return
        self._show_latency(view, "Delay (estimate, before start)")

    def show_readouts(self, readouts: Readouts) -> None:
        self.input_meter.set_level(readouts.input_db)
        self.output_meter.set_level(readouts.output_db)
        if readouts.latency is not None:
            self._show_latency(readouts.latency, "Delay (measured, incl. device buffers)"
                               if readouts.latency.measured else "Delay (estimate)")
        p50, p99, budget = readouts.compute_p50_ms, readouts.compute_p99_ms, readouts.block_budget_ms
        self.compute_bar.set_values(p50, p99, budget)
        if p50 is None or p99 is None or not budget:
            self.compute_text.setText("Compute per block: —")
            self.compute_text.setStyleSheet("")
        else:
            colour = budget_colour(p99, budget)
            verdict = "OK" if p99 < 0.7 * budget else "near the limit" if p99 < budget else "TOO SLOW: dropouts"
            kind = " (auto)" if readouts.budget_auto else ""
            self.compute_text.setText(f"p50 {p50:.1f} ms · p99 {p99:.1f} ms of {budget:.1f} ms budget{kind} — {verdict}")
            self.compute_text.setStyleSheet(f"color: {colour.name()}; font-weight: bold;" if colour else "")
        self.underruns.setText(f"Dropouts: {readouts.underruns} late blocks · driver xruns {readouts.xruns_text}")
        bad = readouts.underruns or readouts.device_xruns
        self.underruns.setStyleSheet("color: #e74c3c; font-weight: bold;" if bad else "")
        notes = list(readouts.notes) + list(readouts.latency_steps[-1:])
        if readouts.budget_note:
            notes.append(readouts.budget_note)
        if readouts.waiting_for:
            notes.insert(0, f"Waiting for {readouts.waiting_for}: audio resumes by itself when it is back.")
        if readouts.reconnects:
            notes.append(f"Audio resumed {readouts.reconnects}× after a device came back.")
        self.notes.setText("\n".join(notes))
        self.notes.setVisible(bool(notes))
        if readouts.provider:
            self.provider.setText(f"Provider: {readouts.provider}")
            self.provider_note.setText(readouts.provider_note or "The fastest available provider is in use.")
