"""Real-time scheduling for the audio threads, where the OS allows it.

```
make_realtime(CALLBACK_PRIORITY)              # the calling thread (a driver's callback thread)
make_realtime(WORKER_PRIORITY, runner.thread_id)   # another thread, by its OS thread id
keep_collector_short()                        # before the streams start
make_sound_server_link_realtime()             # after they opened
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

PulseAudio (and PipeWire's pulse server) through the ALSA `pulse` plugin adds a third thread per
stream inside our process: libpulse's mainloop ("threaded-ml"), which carries the audio between the
plugin's buffer and the server. Left at normal priority below a real-time callback and worker, it
was starved on a loaded 2-core VM: the server's buffer for our stream (15 ms at 20 ms blocks) ran
dry without ALSA flagging anything, and the output fell 17-35 ms behind the input several times in
20 s. `make_sound_server_link_realtime` raises those threads to the callbacks' priority.

Priority cannot help a thread that waits for the GIL: Python's cyclic garbage collector holds it
for a whole pass, and a full pass over a process's long-lived objects took 8 ms with the engine
loaded, 62 ms in a test process and 112 ms with torch and Qt imported (measured on the 2-core VM)
-- longer than a 15 ms output buffer, so each was a driver underflow. `keep_collector_short`
collects once and freezes what is alive before the streams start: later passes only look at
objects made since (well under a millisecond).
"""
from __future__ import annotations

import gc
import os
from pathlib import Path

CALLBACK_PRIORITY = 10
WORKER_PRIORITY = 3
SOUND_SERVER_LINK_THREADS = ("threaded-ml",)   # libpulse's threaded mainloop, by its thread name


def make_realtime(priority: int, thread_id: int = 0) -> bool:
    """SCHED_FIFO at `priority` for thread `thread_id` (0: the calling thread); False where refused."""
    try:
        os.sched_setscheduler(thread_id, os.SCHED_FIFO, os.sched_param(priority))
        return True
    except (AttributeError, OSError):
        return False


def make_sound_server_link_realtime(priority: int = CALLBACK_PRIORITY) -> int:
    """Linux: SCHED_FIFO for this process's sound-server client threads (`SOUND_SERVER_LINK_THREADS`);
    returns how many were raised (0 where there are none or the OS refuses)."""
    tasks = Path("/proc/self/task")
    if not tasks.is_dir():
        return 0
    raised = 0
    for task in tasks.iterdir():
        try:
            name = (task / "comm").read_text().strip()
        except OSError:            # the thread ended meanwhile
            continue
        if name in SOUND_SERVER_LINK_THREADS and make_realtime(priority, int(task.name)):
            raised += 1
    return raised


def keep_collector_short() -> None:
    """Collect now, then move every live object to the collector's permanent generation (gc.freeze)
    so that no later pass scans them while audio runs (see the module docstring)."""
    gc.collect()
    gc.freeze()


__all__ = ["CALLBACK_PRIORITY", "SOUND_SERVER_LINK_THREADS", "WORKER_PRIORITY", "keep_collector_short",
           "make_realtime", "make_sound_server_link_realtime"]
