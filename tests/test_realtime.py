"""engine.audio.realtime: the sound server's client threads get the callbacks' priority."""
from __future__ import annotations

import os
import sys
import threading

import pytest

from engine.audio.realtime import CALLBACK_PRIORITY, SOUND_SERVER_LINK_THREADS, make_sound_server_link_realtime


@pytest.mark.skipif(sys.platform != "linux", reason="thread names and SCHED_FIFO through /proc: Linux only")
def test_sound_server_link_threads_are_raised_and_others_are_not():
    """A thread named like libpulse's mainloop (the name is set through /proc, as libpulse does
    with prctl) is made SCHED_FIFO at the callbacks' priority; a thread with another name is left."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except OSError:
        pytest.skip("this process may not use SCHED_FIFO (no CAP_SYS_NICE, RLIMIT_RTPRIO 0)")
    ready, done = threading.Barrier(3), threading.Event()
    ids: dict[str, int] = {}

    def named(name: str) -> None:
        ids[name] = threading.get_native_id()
        with open(f"/proc/self/task/{ids[name]}/comm", "w") as f:
            f.write(name)
        ready.wait()
        done.wait(10)

    threads = [threading.Thread(target=named, args=(n,)) for n in (SOUND_SERVER_LINK_THREADS[0], "other-thread")]
    for t in threads:
        t.start()
    ready.wait()
    try:
        assert make_sound_server_link_realtime() >= 1
        link, other = ids[SOUND_SERVER_LINK_THREADS[0]], ids["other-thread"]
        assert os.sched_getscheduler(link) == os.SCHED_FIFO
        assert os.sched_getparam(link).sched_priority == CALLBACK_PRIORITY
        assert os.sched_getscheduler(other) == os.SCHED_OTHER
    finally:
        done.set()
        for t in threads:
            t.join()
