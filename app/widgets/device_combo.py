"""A device picker grouped by host API (bold, unselectable headers), virtual cables marked.

Mixing host APIs (e.g. MME input with WASAPI output) is a classic source of freezes and rate
errors; grouping makes the host API visible at the moment of choosing.
"""
from __future__ import annotations

from collections.abc import Sequence

from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtGui import QFont, QStandardItem, QStandardItemModel
from PyQt6.QtWidgets import QComboBox, QWidget

from app.values import DeviceInfo, DeviceRef, group_by_hostapi

ROLE_REF = Qt.ItemDataRole.UserRole + 1
VIRTUAL_MARK = "★"


class DeviceCombo(QComboBox):
    """`wants_input` picks devices with input channels, else output. Emits `refChosen(DeviceRef|None)`."""

    refChosen = pyqtSignal(object)

    def __init__(self, wants_input: bool, none_label: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.wants_input = wants_input
        self.none_label = none_label
        self._model = QStandardItemModel(self)
        self.setModel(self._model)
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(24)
        self.activated.connect(self._on_activated)  # user choice only, not programmatic changes

    def set_devices(self, devices: Sequence[DeviceInfo], selected: DeviceRef | None) -> None:
        self._model.clear()
        self._add(self.none_label, None)
        usable = [d for d in devices if (d.max_input_channels if self.wants_input else d.max_output_channels) > 0]
        for hostapi, group in group_by_hostapi(usable).items():
            header = QStandardItem(hostapi)
            header.setFlags(Qt.ItemFlag.NoItemFlags)  # a label, not a choice
            font = QFont(self.font())
            font.setBold(True)
            header.setFont(font)
            self._model.appendRow(header)
            for device in group:
                text = f"    {device.name}"
                if device.is_virtual:
                    text += f"   {VIRTUAL_MARK} virtual cable"
                item = self._add(text, device.ref)
                tip = f"{device.name} — {hostapi}, {int(device.default_samplerate)} Hz"
                if device.is_virtual:
                    tip += ". Virtual cable: apps like Discord or OBS can use its other end as a microphone."
                item.setToolTip(tip)
        self.select(selected)

    def _add(self, text: str, ref: DeviceRef | None) -> QStandardItem:
        item = QStandardItem(text)
        item.setData(ref, ROLE_REF)
        self._model.appendRow(item)
        return item

    def select(self, ref: DeviceRef | None) -> bool:
        """Show `ref` as selected (no signal). False (and the default shown) when it is not listed."""
        for row in range(self._model.rowCount()):
            item = self._model.item(row)
            if item.isSelectable() and item.data(ROLE_REF) == ref:
                self.setCurrentIndex(row)
                return True
        self.setCurrentIndex(0)
        return False

    def current_ref(self) -> DeviceRef | None:
        return self.currentData(ROLE_REF)

    def labels(self) -> list[str]:
        return [self._model.item(row).text() for row in range(self._model.rowCount())]

    def _on_activated(self, _row: int) -> None:
        self.refChosen.emit(self.current_ref())
