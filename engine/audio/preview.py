"""Playing a short clip once on an output device (a voice's preview), beside whatever else plays.

`PreviewPlayer.play(device, clip_at)` resolves the device the way a live session does
(`find_device`, `choose_rate`, the backend's pulse aiming), asks `clip_at(rate)` for the samples at
the rate the device runs, opens one output stream through the same backend and returns once it
plays; the stream closes itself shortly after the clip ends (a timer thread), and a new clip or
`stop()` cuts the one playing. Opening can take a moment (PulseAudio), so callers run `play` off the
GUI thread; the callback only copies samples. Every failure is a `DeviceError` sentence.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

import numpy as np

from engine.audio.devices import DeviceError, explain_error, find_device
from engine.audio.streams import AudioBackend, BackendStream, StreamRequest, choose_rate

CALLBACK_S = 0.02
CLOSE_MARGIN_S = 0.5    # past the clip's end: the device's buffers have played out


class _Clip:
    """The samples a stream's callback plays, then silence."""

    def __init__(self, samples: np.ndarray) -> None:
        self.samples = samples
        self.position = 0

    def callback(self, outdata: np.ndarray, frames: int, _time: Any, _status: Any) -> None:
        chunk = self.samples[self.position:self.position + frames]
        outdata[:len(chunk)] = chunk[:, None]
        outdata[len(chunk):] = 0.0
        self.position += frames


class PreviewPlayer:
    """One clip at a time on one output device; `backend` is the live session's kind of backend."""

    def __init__(self, backend: AudioBackend) -> None:
        self.backend = backend
        self._lock = threading.Lock()
        self._stream: BackendStream | None = None
        self._timer: threading.Timer | None = None

    def play(self, device: int | str | None, clip_at: Callable[[int], np.ndarray]) -> str:
        """Play `clip_at(rate)` (float32 mono [N]) once on the output `device` (None = the default);
        returns the device's label. Raises `DeviceError`; `clip_at`'s own errors pass through."""
        target = find_device(device, "output", self.backend.devices())
        channels = min(2, target.max_output_channels)
        rate = choose_rate(self.backend, None, [(target, "output", channels)], False, [])
        clip = _Clip(np.ascontiguousarray(clip_at(rate), dtype=np.float32))
        self.stop()
        request = StreamRequest("output", rate, max(1, int(rate * CALLBACK_S)), clip.callback, lambda: None,
                                output=target, output_channels=channels)
        stream: BackendStream | None = None
        try:
            stream = self.backend.open(request)
            stream.start()
        except Exception as exc:  # noqa: BLE001 - PortAudio raises its own types; the user gets a sentence
            if stream is not None:
                _close_quietly(stream)
            if isinstance(exc, DeviceError):
                raise
            raise DeviceError(explain_error(exc, target.label)) from exc
        timer = threading.Timer(len(clip.samples) / rate + CLOSE_MARGIN_S, self._close, args=(stream,))
        timer.daemon = True
        with self._lock:
            self._stream, self._timer = stream, timer
        timer.start()
        return target.label

    @property
    def playing(self) -> bool:
        with self._lock:
            return self._stream is not None

    def stop(self) -> None:
        """Cut the clip playing, if any (safe to call at any time)."""
        with self._lock:
            stream, timer = self._stream, self._timer
        if timer is not None:
            timer.cancel()
        if stream is not None:
            self._close(stream)

    def _close(self, stream: BackendStream) -> None:
        with self._lock:
            if self._stream is not stream:
                return
            self._stream = self._timer = None
        _close_quietly(stream)


def _close_quietly(stream: BackendStream) -> None:
    try:
        stream.stop()
        stream.close()
    except Exception:  # noqa: BLE001 - a device that vanished mid-preview has nothing left to close
        pass
