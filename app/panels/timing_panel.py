"""Timing panel: block, lookahead, crossfade and what they cost, shown before you press Start.

Peers call these chunk/extra/buf and users misread them (peers.md §12 #2). Here every control says
what it does in plain words and the resulting end-to-end delay is computed by the engine
(`LiveSession.estimate_latency`) as soon as a value changes.
"""
from __future__ import annotations

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QFormLayout, QGroupBox, QLabel, QSpinBox, QWidget

from app.bridge import AudioBridge
from app.settings_store import AppConfig
from app.values import LatencyView, Readouts

TRADE_OFF = ("Smaller block = lower delay, but more GPU/CPU work per second and a higher risk of "
             "dropouts (crackles). Lookahead improves quality and adds exactly its length in delay. "
             "Crossfade smooths the joins between blocks.")


def _spin(minimum: int, maximum: int, step: int, tip: str) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(minimum, maximum)
    spin.setSingleStep(step)
    spin.setSuffix(" ms")
    spin.setToolTip(tip)
    spin.setKeyboardTracking(False)  # typing "120" must not try 1, 12, 120
    return spin


def summarize(view: LatencyView) -> str:
    """'block 80 + lookahead 40 + …' for the parts that are not zero."""
    parts = [f"{row.label.lower()} {row.ms:.0f}" for row in view.rows if row.ms >= 0.5]
    return " + ".join(parts) + f" = {view.total_ms:.0f} ms"


class TimingPanel(QGroupBox):
    def __init__(self, bridge: AudioBridge, parent: QWidget | None = None) -> None:
        super().__init__("3 · Timing (delay vs. quality)", parent)
        self.bridge = bridge
        self.block = _spin(10, 500, 10, "How much audio is converted at once. The main part of the delay.")
        self.lookahead = _spin(0, 200, 5, "Future audio the voice model may listen to. Better consonants, "
                                          "more delay.")
        self.crossfade = _spin(0, 100, 5, "Overlap used to join blocks without clicks. Part of the delay.")
        self.budget = _spin(0, 500, 1, "How long converting one block may take and still play on time. Part of "
                                       "the delay. Auto (the default) measures your voice on this machine, uses "
                                       "the smallest safe value and raises it (with a short fade, shown in the "
                                       "readouts) if blocks come late. A number fixes it.")
        self.budget.setSpecialValueText("Auto (measured)")
        self.estimate = QLabel("Estimated delay: —")
        self.estimate.setObjectName("latencyEstimate")
        self.estimate.setStyleSheet("font-size: 16pt; font-weight: bold;")
        self.estimate.setToolTip("Microphone to output, end to end, as the engine computes it for these settings.")
        self.detail = QLabel("")
        self.detail.setWordWrap(True)
        self.detail.setStyleSheet("color: #555;")
        self.explain = QLabel(TRADE_OFF)
        self.explain.setWordWrap(True)
        self.explain.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)

        form = QFormLayout(self)
        form.addRow("Block", self.block)
        form.addRow("Lookahead", self.lookahead)
        form.addRow("Crossfade", self.crossfade)
        form.addRow("Compute budget", self.budget)
        form.addRow(self.estimate)
        form.addRow(self.detail)
        form.addRow(self.explain)

        self.block.valueChanged.connect(lambda v: bridge.set_settings(block_ms=float(v)))
        self.lookahead.valueChanged.connect(lambda v: bridge.set_settings(lookahead_ms=float(v)))
        self.crossfade.valueChanged.connect(lambda v: bridge.set_settings(crossfade_ms=float(v)))
        self.budget.valueChanged.connect(lambda v: bridge.set_settings(compute_budget_ms=float(v)))
        bridge.configChanged.connect(self._on_config)
        bridge.latencyEstimated.connect(self._on_estimate)
        bridge.readoutsUpdated.connect(self._on_readouts)

    def _on_config(self, config: AppConfig) -> None:
        for spin, value in ((self.block, config.settings.block_ms), (self.lookahead, config.settings.lookahead_ms),
                            (self.crossfade, config.settings.crossfade_ms),
                            (self.budget, config.settings.compute_budget_ms)):
            spin.blockSignals(True)
            spin.setValue(round(value))
            spin.blockSignals(False)

    def _on_estimate(self, view: LatencyView | None, error: str) -> None:
        if view is None:
            self.estimate.setText("Estimated delay: unknown")
            self.detail.setText(error)
            return
        self.estimate.setText(f"Estimated delay ≈ {view.total_ms:.0f} ms")
        self.detail.setText(summarize(view) + self._unused_note(view))

    def _unused_note(self, view: LatencyView) -> str:
        """Say so when the voice ignores a setting (the built-in voice has its own fixed delay)."""
        settings = self.bridge.config.settings
        parts = {row.label: row.ms for row in view.rows}
        unused = [name.lower() for name, wanted in (("Lookahead", settings.lookahead_ms),
                                                    ("Crossfade", settings.crossfade_ms))
                  if wanted > 0 and parts.get(name, 0.0) == 0.0]
        if not unused:
            return ""
        return (f"\nThis voice does not use {' or '.join(unused)}; its own fixed delay is shown as "
                "voice pre-roll.")

    def _on_readouts(self, readouts: Readouts) -> None:
        """While running, the number here is the measured one (the estimate was for the start)."""
        if self.bridge.state == "running" and readouts.latency is not None:
            self.estimate.setText(f"Delay now ≈ {readouts.latency.total_ms:.0f} ms (measured)")
            self.detail.setText(summarize(readouts.latency) + self._unused_note(readouts.latency))
