"""Horizontal peak meter in dBFS with meter ballistics and a peak-hold tick.

Ballistics live here, not in the engine: the engine reports the block level; the meter rises at once
and falls at `FALL_DB_PER_S` like a hardware PPM, so short dips between polls do not flicker.
"""
from __future__ import annotations

import time

from PyQt6.QtCore import QRectF, QSize, Qt
from PyQt6.QtGui import QColor, QFont, QPainter, QPaintEvent
from PyQt6.QtWidgets import QSizePolicy, QWidget

FLOOR_DB = -60.0
FALL_DB_PER_S = 24.0
PEAK_HOLD_S = 1.5
# (upper bound dB, colour): green for singing level, yellow near the top, red = clipping soon.
ZONES = ((-18.0, QColor("#2ecc71")), (-6.0, QColor("#f1c40f")), (0.0, QColor("#e74c3c")))
TRACK = QColor("#2b2f36")


class LevelMeter(QWidget):
    """`set_level(db)` from the GUI thread (the bridge's readout signal); draws -60…0 dBFS."""

    def __init__(self, name: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self._shown = FLOOR_DB
        self._peak = FLOOR_DB
        self._peak_time = 0.0
        self._last = time.monotonic()
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumHeight(24)
        self.setToolTip(f"{name} level in dBFS: green is a good singing level, red means about to clip.")

    def sizeHint(self) -> QSize:
        return QSize(260, 24)

    @property
    def level_db(self) -> float:
        return self._shown

    @property
    def peak_db(self) -> float:
        return self._peak

    def set_level(self, db: float, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        db = max(FLOOR_DB, min(0.0, float(db)))
        fallen = self._shown - FALL_DB_PER_S * max(0.0, now - self._last)
        self._shown = max(db, fallen, FLOOR_DB)
        self._last = now
        if db >= self._peak or now - self._peak_time > PEAK_HOLD_S:
            self._peak, self._peak_time = db, now
        self.update()

    def reset(self) -> None:
        self._shown = self._peak = FLOOR_DB
        self.update()

    @staticmethod
    def _x(db: float, width: float) -> float:
        return (db - FLOOR_DB) / -FLOOR_DB * width

    def paintEvent(self, _event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(TRACK)
        painter.drawRoundedRect(rect, 4, 4)
        lit = self._x(self._shown, rect.width())
        start = FLOOR_DB
        for upper, colour in ZONES:  # draw each zone only up to the current level
            x0, x1 = self._x(start, rect.width()), min(self._x(upper, rect.width()), lit)
            if x1 > x0:
                painter.setBrush(colour)
                painter.drawRect(QRectF(rect.left() + x0, rect.top() + 3, x1 - x0, rect.height() - 6))
            start = upper
        if self._peak > FLOOR_DB:
            painter.setBrush(QColor("white"))
            x = rect.left() + self._x(self._peak, rect.width())
            painter.drawRect(QRectF(x - 1.5, rect.top() + 2, 3, rect.height() - 4))
        painter.setPen(QColor("white"))
        font = QFont(self.font())
        font.setBold(True)
        painter.setFont(font)
        text = "silent" if self._shown <= FLOOR_DB else f"{self._shown:.0f} dB"
        painter.drawText(rect.adjusted(8, 0, -8, 0), Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight, text)
        painter.end()
