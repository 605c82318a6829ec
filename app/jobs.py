"""One worker thread that runs blocking engine calls in order and answers on the GUI thread.

The GUI thread never waits on engine work (loading a voice pack, opening devices, pactl): it
submits a job and gets `on_done(result)` or `on_error(exc)` later, delivered through a queued Qt
signal to the thread this object lives in.
"""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from PyQt6.QtCore import QObject, pyqtSignal, pyqtSlot


class JobRunner(QObject):
    """Runs jobs one at a time on its own thread; callbacks run on the owner's (GUI) thread."""

    _finished = pyqtSignal(object, object)   # callback, its argument: queued to the owner's thread

    def __init__(self, thread_name: str = "como-session", parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)
        self._finished.connect(self._deliver)
        self._pending = 0   # submitted jobs whose callback has not run yet
        self.closed = False

    @property
    def idle(self) -> bool:
        """No job queued, running, or waiting for its callback on the owner's thread."""
        return self._pending == 0

    def submit(self, job: Callable[[], Any], on_done: Callable[[Any], None] | None,
               on_error: Callable[[Exception], None]) -> Future | None:
        """Queue `job`; after it ran, `on_done(result)` or `on_error(exc)` runs on the owner's thread.
        Returns None (and runs nothing) once `close` was called."""
        def run() -> None:
            try:
                result = job()
            except Exception as exc:  # reported on the owner's thread via the queued signal
                self._finished.emit(on_error, exc)
            else:
                self._finished.emit(on_done, result)

        if self.closed:
            return None
        self._pending += 1
        return self._executor.submit(run)

    def close(self, last: Callable[[], Any] | None = None, timeout_s: float = 5.0) -> None:
        """Refuse new jobs, drop queued ones; run `last` (e.g. stopping audio) and wait for it up to
        `timeout_s` — only ever called when the window is closing."""
        self.closed = True
        if last is not None:
            future = self._executor.submit(last)
            try:
                future.result(timeout=timeout_s)
            except Exception:
                pass  # closing anyway; the OS frees the devices with the process
        self._executor.shutdown(wait=False, cancel_futures=True)

    @pyqtSlot(object, object)
    def _deliver(self, callback: Any, result: Any) -> None:
        self._pending -= 1
        if callback is not None:
            callback(result)
