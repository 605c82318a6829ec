"""Compute time per block against the block budget: the one number that predicts crackles.

If converting a block takes longer than the block lasts, audio runs out (peers' #1 complaint). The
bar shows p50 (solid) and p99 (tick) as a share of the budget: green < 70 %, orange < 100 %, red
beyond (dropouts).
"""
from __future__ import annotations

from PyQt6.QtCore import QRectF, QSize, Qt
from PyQt6.QtGui import QColor, QPainter, QPaintEvent
from PyQt6.QtWidgets import QSizePolicy, QWidget

NEAR = 0.7  # p99 above 70 % of the budget leaves little room for a hiccup (another app, GC, a spike)
OK, WARN, OVER, TRACK = QColor("#2ecc71"), QColor("#f39c12"), QColor("#e74c3c"), QColor("#2b2f36")


def budget_colour(p99_ms: float | None, budget_ms: float | None) -> QColor | None:
    """Colour for a p99 against the budget; None when unknown."""
    if p99_ms is None or not budget_ms:
        return None
    share = p99_ms / budget_ms
    return OK if share < NEAR else WARN if share < 1.0 else OVER


class BudgetBar(QWidget):
    """`set_values(p50, p99, budget)`; None values draw an empty track."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.p50: float | None = None
        self.p99: float | None = None
        self.budget: float | None = None
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumHeight(18)

    def sizeHint(self) -> QSize:
        return QSize(260, 18)

    def set_values(self, p50: float | None, p99: float | None, budget: float | None) -> None:
        self.p50, self.p99, self.budget = p50, p99, budget
        self.update()

    def paintEvent(self, _event: QPaintEvent) -> None:
        painter = QPainter(self)
        rect = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(TRACK)
        painter.drawRoundedRect(rect, 4, 4)
        colour = budget_colour(self.p99, self.budget)
        if colour is not None and self.p50 is not None and self.budget:
            # The full width is 1.25 x budget, so "over budget" stays visible instead of clipping.
            scale = rect.width() / (1.25 * self.budget)
            painter.setBrush(colour)
            painter.drawRect(QRectF(rect.left(), rect.top() + 3, min(self.p50 * scale, rect.width()), rect.height() - 6))
            painter.setBrush(QColor("white"))
            x = rect.left() + min(self.p99 * scale, rect.width() - 2)
            painter.drawRect(QRectF(x - 1, rect.top() + 1, 2, rect.height() - 2))
            limit = rect.left() + self.budget * scale  # the budget line
            painter.setBrush(OVER)
            painter.drawRect(QRectF(limit - 1, rect.top(), 2, rect.height()))
        painter.end()
