"""A slider with a live value label, for dB gains, pitch and the noise gate.

QSlider is integer-only; values are stored as multiples of `step` so 0.5 dB steps work.
"""
from __future__ import annotations

from collections.abc import Callable

from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtWidgets import QHBoxLayout, QLabel, QSlider, QWidget


class ValueSlider(QWidget):
    """Emits `valueChanged(float)` when the user moves it (not when `set_value` is called)."""

    valueChanged = pyqtSignal(float)

    def __init__(self, minimum: float, maximum: float, step: float = 1.0,
                 fmt: Callable[[float], str] = lambda v: f"{v:+.1f} dB",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._step = step
        self._fmt = fmt
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(round(minimum / step), round(maximum / step))
        self.slider.setPageStep(max(1, round(6 / step)) if step < 6 else 1)
        self.label = QLabel()
        self.label.setMinimumWidth(70)
        self.label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.label)
        self.slider.valueChanged.connect(self._moved)
        self._show(self.value())

    def value(self) -> float:
        return self.slider.value() * self._step

    def set_value(self, value: float) -> None:
        """Programmatic update (from the bridge's config); does not emit `valueChanged`."""
        self.slider.blockSignals(True)
        self.slider.setValue(round(value / self._step))
        self.slider.blockSignals(False)
        self._show(self.value())

    def setToolTip(self, text: str) -> None:  # noqa: N802 (Qt naming)
        super().setToolTip(text)
        self.slider.setToolTip(text)

    def _moved(self, _raw: int) -> None:
        self._show(self.value())
        self.valueChanged.emit(self.value())

    def _show(self, value: float) -> None:
        self.label.setText(self._fmt(value))
