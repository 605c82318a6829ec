"""Fakes shared by the app tests (no tests here): a LiveSession, an engine adapter, voice packs.

The fake session follows the documented LiveSession contract (docs/architecture.md, "Live session
facade"): on_state from another thread, start/stop/update/stats/estimate_latency.
"""
from __future__ import annotations

import math
import os
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from app.engine_adapter import EngineAdapter  # noqa: E402
from app.settings_store import BUILTIN_VOICE  # noqa: E402
from app.values import DeviceInfo, VoiceInfo  # noqa: E402
from engine.audio.xruns import XrunCounts  # noqa: E402
from engine.latency import LatencyBreakdown, ms_to_samples  # noqa: E402
from engine.settings import Settings  # noqa: E402
from engine.voicepack import NetworkSpec, TensorSpec, VoiceManifest, load_manifest, sha256_file, write_manifest  # noqa: E402


RATE = 48000


def breakdown(input_ms: float, block_ms: float, lookahead_ms: float, crossfade_ms: float, resample_ms: float,
              output_ms: float) -> LatencyBreakdown:
    """A real engine.latency.LatencyBreakdown at 48 kHz from parts in ms."""
    return LatencyBreakdown(rate=RATE, input_buffer=ms_to_samples(input_ms, RATE), block=ms_to_samples(block_ms, RATE),
                            lookahead=ms_to_samples(lookahead_ms, RATE), crossfade=ms_to_samples(crossfade_ms, RATE),
                            resampling=ms_to_samples(resample_ms, RATE), output_buffer=ms_to_samples(output_ms, RATE))


@dataclass(frozen=True)
class FakeStats:
    state: str
    error: str | None
    latency: Any
    compute_p50_ms: float | None
    compute_p99_ms: float | None
    block_budget_ms: float | None
    underruns: int
    queue_depth: int
    provider: str
    provider_note: str
    input_level_db: float
    output_level_db: float
    blocks_processed: int
    recording_paths: tuple[str, ...] = ()
    sample_rate: int | None = None
    device_xruns: int = 0
    xruns: XrunCounts = XrunCounts()
    latency_steps: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    budget_auto: bool = False
    budget_note: str | None = None
    waiting_for: str | None = None
    reconnects: int = 0


@dataclass(frozen=True)
class FakeConfig:
    input_device: Any = None
    output_device: Any = None
    monitor_device: Any = None
    sample_rate: int | None = None
    input_channel: int = 0
    voice: str = BUILTIN_VOICE
    settings: Settings = field(default_factory=Settings)
    record_dir: str | None = None


class FakeSession:
    """Reports state from a worker thread, like the real one; stats change with time while running."""

    def __init__(self, fail_start: str | None = None, start_delay_s: float = 0.0) -> None:
        self.on_state = lambda state, message: None
        self.fail_start = fail_start
        self.start_delay_s = start_delay_s
        self.running = False
        self.started: list[Any] = []
        self.updates: list[dict[str, Any]] = []
        self.stops = 0
        self.state_threads: set[str] = set()
        self._t0 = 0.0
        self._config: Any = None
        self._lock = threading.Lock()

    def _report(self, state: str, message: str = "") -> None:
        self.state_threads.add(threading.current_thread().name)
        self.on_state(state, message)

    def estimate_latency(self, config: Any) -> LatencyBreakdown:
        s = config.settings
        return breakdown(10.0, s.block_ms, s.lookahead_ms, s.crossfade_ms, 2.0, 10.0)

    def start(self, config: Any) -> None:
        self._report("starting")
        time.sleep(self.start_delay_s)
        if self.fail_start:
            self._report("error", self.fail_start)
            raise RuntimeError(self.fail_start)
        with self._lock:
            self._config = config
            self.started.append(config)
            self._t0 = time.monotonic()
            self.running = True
        self._report("running")

    def stop(self) -> None:
        with self._lock:
            self.running = False
            self.stops += 1
        self._report("stopped")

    def update(self, **changes: Any) -> None:
        with self._lock:
            self.updates.append(changes)

    def stats(self) -> FakeStats:
        with self._lock:
            if not self.running:
                return FakeStats("stopped", None, None, None, None, None, 0, 0, "", "", -120.0, -120.0, 0)
            elapsed = time.monotonic() - self._t0
            s = self._config.settings
            budget = s.block_ms
            blocks = int(elapsed * 1000 / budget)
            wobble = math.sin(elapsed * 20)  # levels and timings that visibly move
            return FakeStats(
                state="running", error=None,
                latency=breakdown(12.0, budget, s.lookahead_ms, s.crossfade_ms, 2.0, 14.0),
                compute_p50_ms=0.3 * budget + 2 * wobble, compute_p99_ms=0.9 * budget, block_budget_ms=budget,
                underruns=blocks // 5, queue_depth=1, provider="CPU",
                provider_note="CUDA is not available: no NVIDIA GPU was found.",
                input_level_db=-30 + 10 * wobble, output_level_db=-24 + 8 * wobble, blocks_processed=blocks,
                sample_rate=RATE, device_xruns=1, xruns=XrunCounts(output_underflow=1, positions=(4800,)))


def make_device(index: int, name: str, hostapi: str = "ALSA", inputs: int = 0, outputs: int = 0,
                **flags: bool) -> DeviceInfo:
    return DeviceInfo(index, name, hostapi, inputs, outputs, 48000.0, **flags)


DEFAULT_DEVICES = [
    make_device(0, "Built-in Mic", inputs=2, is_default_input=True),
    make_device(1, "Speakers", outputs=2, is_default_output=True),
    make_device(2, "USB Headset", inputs=1, outputs=2),
    make_device(3, "CoMo Live Virtual Mic", "PulseAudio", outputs=2, is_virtual=True),
    make_device(4, "Studio Interface", "JACK", inputs=8, outputs=8),
]


class FakeEngine(EngineAdapter):
    """Devices and virtual mic faked; voice packs go through the real engine.voicepack validator."""

    def __init__(self, voices: Path, devices: list[DeviceInfo] | None = None, virtual_mic: bool = True) -> None:
        self.voices = voices
        self.device_list = list(DEFAULT_DEVICES if devices is None else devices)
        self.virtual_mic = virtual_mic
        self.mic_calls: list[str] = []
        self.plugged: list[DeviceInfo] = []   # like PortAudio: listed only after a rescan

    def list_devices(self) -> list[DeviceInfo]:
        return list(self.device_list)

    def rescan_devices(self) -> None:
        self.device_list += self.plugged
        self.plugged.clear()

    def make_session(self) -> FakeSession:
        return FakeSession()

    def make_session_config(self, **kwargs: Any) -> FakeConfig:
        return FakeConfig(**kwargs)

    def voice_info(self, spec: str, verify: bool = True) -> VoiceInfo:
        if spec == BUILTIN_VOICE:
            return VoiceInfo(spec, "Built-in voice (DSP)", (("default", 0),), builtin=True)
        manifest = load_manifest(spec, verify_hashes=verify)
        speakers = tuple(sorted(manifest.speakers.items(), key=lambda item: item[1]))
        return VoiceInfo(str(spec), manifest.name, speakers, previews=frozenset(manifest.references),
                         has_notice=manifest.notice is not None)

    def installed_voices(self) -> list[VoiceInfo]:
        found = [self.voice_info(BUILTIN_VOICE)]
        if self.voices.is_dir():
            for path in sorted(p for p in self.voices.iterdir() if p.is_dir() and not p.name.startswith(".")):
                found.append(self.voice_info(str(path), verify=False))
        return found

    def voices_dir(self) -> Path:
        return self.voices

    def virtual_mic_support(self) -> tuple[bool, str]:
        return (True, "") if self.virtual_mic else (False, "Only on Linux with PulseAudio.")

    def create_virtual_mic(self) -> str:
        self.mic_calls.append("create")
        self.device_list.append(make_device(9, "New Virtual Mic", "PulseAudio", outputs=2, is_virtual=True))
        return "Created the virtual mic."

    def remove_virtual_mic(self) -> str:
        self.mic_calls.append("remove")
        return "Removed the virtual mic."


# --- voice packs ---------------------------------------------------------------------------------------
def make_pack(folder: Path, name: str = "Test Voice", speakers: dict[str, int] | None = None) -> Path:
    """A voice pack that passes engine.voicepack validation (the ONNX files are dummy bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    networks = {}
    for net in ("content", "decoder", "vocoder"):
        path = folder / f"{net}.onnx"
        path.write_bytes(f"not really onnx: {net}".encode() * 10)
        networks[net] = NetworkSpec(
            file=path.name, sha256=sha256_file(path), size=path.stat().st_size,
            inputs=[TensorSpec("x", [1, "T"], "float32")], outputs=[TensorSpec("y", [1, "T"], "float32")],
            receptive_field=(4, 0), frame_unit="mel")
    manifest = VoiceManifest(
        name=name, speakers=speakers or {"alto": 0, "tenor": 1}, sample_rate=24000, hop_length=128,
        mel={"n_mels": 80, "spec_min": -12.0, "spec_max": 2.0},
        content={"kind": "contentvec", "width": 768, "sample_rate": 16000, "hop": 320, "window": 400},
        f0={"method": "dio"}, networks=networks)
    write_manifest(folder, manifest)
    return folder


def zip_folder(folder: Path, zip_path: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, prefix + path.relative_to(folder).as_posix())
    return zip_path


def build_window(qtbot: Any, tmp_path: Path, session: FakeSession | None = None,
                 engine: FakeEngine | None = None, store: Any = None) -> Any:
    """The real main window over a fake session and engine, once its startup jobs are answered;
    closed (and shut down) by qtbot."""
    from app.main_window import open_main_window

    session = session or FakeSession()
    engine = engine or FakeEngine(tmp_path / "voices")
    window = open_main_window(store=store, session=session, engine=engine)
    qtbot.addWidget(window)
    settle(qtbot, window.bridge)   # devices, voices and the restored voice arrive from the job thread
    return window


def settle(qtbot: Any, bridge: Any, timeout_ms: int = 10000) -> None:
    """Wait (processing Qt events) until the bridge's job thread has answered everything submitted."""
    qtbot.waitUntil(lambda: bridge.idle, timeout=timeout_ms)
