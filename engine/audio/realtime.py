"""Real-time scheduling for the audio threads, where the OS allows it.

```
make_realtime(CALLBACK_PRIORITY)              # the calling thread (a driver's callback thread)
make_realtime(WORKER_PRIORITY, runner.thread_id)   # another thread, by its OS thread id
```
Live audio has two deadlines: the driver's callback (copy a buffer, every few ms) and the worker's
conversion of a block (within the compute budget). At normal priority both were starved on a
loaded machine (2-core VM, load 10-13): output underflows every few seconds, compute p99 past the
budget, hundreds of late blocks a minute. Desktop audio threads run SCHED_FIFO (JACK, PulseAudio
through rtkit); PortAudio's callback thread does not unless asked, and sounddevice never asks.
The callbacks get the higher priority (they must never wait for compute); the worker sits below
them. Linux throttles real-time threads to 95% of the CPU, so a runaway worker cannot lock the
machine. Where the process may not (no CAP_SYS_NICE and RLIMIT_RTPRIO 0, macOS, Windows),
nothing changes and `make_realtime` returns False.
"""
from __future__ import annotations

import os

CALLBACK_PRIORITY = 10
WORKER_PRIORITY = 3


def make_realtime(priority: int, thread_id: int = 0) -> bool:
    """SCHED_FIFO at `priority` for thread `thread_id` (0: the calling thread); False where refused."""
    try:
        os.sched_setscheduler(thread_id, os.SCHED_FIFO, os.sched_param(priority))
        return True
    except (AttributeError, OSError):
        return False


__all__ = ["CALLBACK_PRIORITY", "WORKER_PRIORITY", "make_realtime"]
