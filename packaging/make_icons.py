"""Render packaging/icons/como-live.svg into the icon files the app and the installers use.

    python packaging/make_icons.py     # needs PyQt6 (QtSvg) and Pillow; run after editing the SVG

Writes app/resources/como-live.png (window and Linux desktop icon), packaging/icons/como-live.ico
(Windows) and packaging/icons/como-live.icns (macOS). The outputs are committed, so a build does
not need Pillow.
"""
from __future__ import annotations

import io
import sys
from pathlib import Path

from PIL import Image
from PyQt6.QtCore import QBuffer, QIODevice
from PyQt6.QtGui import QGuiApplication, QImage, QPainter
from PyQt6.QtSvg import QSvgRenderer

HERE = Path(__file__).resolve().parent
SVG = HERE / "icons" / "como-live.svg"
PNG = HERE.parent / "app" / "resources" / "como-live.png"
ICO_SIZES = [(16, 16), (24, 24), (32, 32), (48, 48), (64, 64), (128, 128), (256, 256)]


def render(size: int) -> Image.Image:
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(0)
    painter = QPainter(image)
    QSvgRenderer(str(SVG)).render(painter)
    painter.end()
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    return Image.open(io.BytesIO(bytes(buffer.data())))


def main() -> int:
    _app = QGuiApplication(sys.argv[:1])  # QPainter on a QImage wants a GUI application
    large = render(1024)
    render(256).save(PNG)
    large.save(HERE / "icons" / "como-live.ico", sizes=ICO_SIZES)
    large.save(HERE / "icons" / "como-live.icns")
    print(f"wrote {PNG}, como-live.ico and como-live.icns in {HERE / 'icons'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
