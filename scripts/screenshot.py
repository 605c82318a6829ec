"""Render the main window, running, to a PNG for the docs.

    QT_QPA_PLATFORM=xcb DISPLAY=:99 .venv/bin/python scripts/screenshot.py docs/screenshot.png

The real engine runs (LiveSession, converter, worker, the built-in DSP voice on the CPU) with
`engine.audio.streams.SimulatedBackend` as the sound card, so the picture needs no sound hardware and
its latency and compute numbers are real measurements of this machine. Prints a JSON report of the
key widgets (visible, inside the window) for tests/test_app_screenshot.py.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from PyQt6.QtWidgets import QApplication, QWidget  # noqa: E402

from app.engine_adapter import EngineAdapter  # noqa: E402
from app.main_window import MainWindow, open_main_window  # noqa: E402
from app.values import DeviceRef  # noqa: E402

RATE = 48000
HOST = "Simulated"


def sung_note(seconds: float = 30.0) -> np.ndarray:
    """A sung-like A3 with vibrato and phrasing, so the meters move."""
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 220 * 2 ** (0.3 / 12 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    phrase = 0.6 + 0.4 * np.sin(2 * np.pi * 0.4 * t)
    return (0.15 * voice * phrase).astype(np.float32)


def simulated_engine() -> EngineAdapter:
    from engine.audio.streams import SimDevice, SimulatedBackend

    devices = [SimDevice("USB Microphone", 1, 0), SimDevice("Speakers", 0, 2), SimDevice("USB Headphones", 0, 2),
               SimDevice("CoMo Live Cable", 0, 2)]
    return EngineAdapter(backend=SimulatedBackend(signal=sung_note(), rate=RATE, devices=devices))


def key_widgets(window: MainWindow) -> dict[str, QWidget]:
    """The widgets a streamer must find at first sight."""
    return {
        "start": window.start_button,
        "microphone": window.audio_panel.input_combo,
        "output": window.audio_panel.output_combo,
        "monitor": window.audio_panel.monitor_combo,
        "voice": window.voice_panel.voice_combo,
        "pitch": window.voice_panel.pitch,
        "bypass": window.voice_panel.bypass,
        "block": window.timing_panel.block,
        "latency_estimate": window.timing_panel.estimate,
        "latency_total": window.readouts_panel.total_value,
        "input_meter": window.readouts_panel.input_meter,
        "output_meter": window.readouts_panel.output_meter,
        "compute": window.readouts_panel.compute_text,
        "dropouts": window.readouts_panel.underruns,
        "provider": window.readouts_panel.provider,
        "record": window.record_button,
    }


def report(window: MainWindow) -> dict[str, dict[str, object]]:
    inside = window.rect()
    result = {}
    for name, widget in key_widgets(window).items():
        top_left = widget.mapTo(window, widget.rect().topLeft())
        bottom_right = widget.mapTo(window, widget.rect().bottomRight())
        text = widget.text() if hasattr(widget, "text") else ""
        result[name] = {"visible": widget.isVisible(), "inside": inside.contains(top_left) and inside.contains(bottom_right),
                        "width": widget.width(), "height": widget.height(), "text": text}
    return result


def main(path: str) -> int:
    app = QApplication([sys.argv[0]])
    with tempfile.TemporaryDirectory() as folder:
        os.environ["COMO_LIVE_VOICES"] = str(Path(folder) / "voices")  # no user packs in the picture
        window = open_main_window(store=None, engine=simulated_engine())
        bridge = window.bridge
        deadline = time.monotonic() + 10.0  # devices and voices arrive from the job thread
        while not bridge.idle and time.monotonic() < deadline:
            app.processEvents()
            time.sleep(0.01)
        bridge.set_device("input", DeviceRef("USB Microphone", HOST))
        bridge.set_device("output", DeviceRef("CoMo Live Cable", HOST))
        bridge.set_device("monitor", DeviceRef("USB Headphones", HOST))
        bridge.set_settings(pitch=5, monitor_gain_db=-6)
        window.choose_record_dir(str(Path(folder) / "recordings"))
        window.show()
        bridge.start()
        deadline = time.monotonic() + 3.0  # let the meters, the compute stats and the latency settle
        while time.monotonic() < deadline:
            app.processEvents()
            time.sleep(0.01)
        app.processEvents()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        if bridge.state != "running" or not window.grab().save(path):
            print(json.dumps({"error": f"state {bridge.state}; could not save {path}: {window.banner.text()}"}))
            return 1
        print(json.dumps({"size": [window.width(), window.height()], "widgets": report(window)}))
        window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else str(REPO / "docs" / "screenshot.png")))
