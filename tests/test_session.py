"""LiveSession on the simulated sound card: states, latency, live updates, faults, recording."""
from __future__ import annotations

import threading

import dataclasses

import numpy as np
import pytest
import soundfile as sf

from engine.audio.streams import SimulatedBackend
from engine.converter import Converter, convert_whole
from engine.dsp_voice import DspCore
from engine.session import LiveSession, SessionConfig, SessionError, core_factory
from engine.settings import Settings

RATE = 48000
# No gate (test signals start from silence); a fixed one-block compute budget, so these tests'
# numbers do not depend on how busy the machine is (the adaptive budget has its own tests).
OPEN = Settings(gate_db=-120.0, compute_budget_ms=80.0)


def passthrough(settings: Settings) -> DspCore:
    return DspCore(passthrough=True)


def voiced(seconds: float, f0: float = 140.0) -> np.ndarray:
    """A buzzy vowel-like tone with syllable-rate loudness changes (something WORLD can analyse)."""
    t = np.arange(int(seconds * RATE)) / RATE
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))) / RATE
    x = sum(np.sin(k * phase) / k for k in range(1, 25))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 2.5 * t) ** 2
    return (0.15 * x * env).astype(np.float32)


class States:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []
        self.changed = threading.Event()

    def __call__(self, state: str, message: str) -> None:
        self.seen.append((state, message, threading.current_thread().name))
        self.changed.set()

    def names(self) -> list[str]:
        return [s for s, _, _ in self.seen]

    def wait_for(self, state: str, timeout: float = 10.0) -> str:
        return self.wait_for_nth(state, 1, timeout)

    def wait_for_nth(self, state: str, n: int, timeout: float = 10.0) -> str:
        """The message of the `n`-th `state` reported (waits for it)."""
        import time
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            messages = [m for s, m, _ in self.seen if s == state]
            if len(messages) >= n:
                return messages[n - 1]
            self.changed.wait(0.05)
            self.changed.clear()
        raise AssertionError(f"no {state!r} state number {n}; saw {self.names()}")


def observed(be: SimulatedBackend, **session_kwargs) -> tuple[LiveSession, States]:
    """A session on `be` whose reported states are recorded."""
    s = LiveSession(be, **session_kwargs)
    states = States()
    s.on_state = states
    return s, states


def lag_of(y: np.ndarray, x: np.ndarray, max_lag: int) -> int:
    """The delay of y against x by cross-correlation (FFT), searched in [0, max_lag]."""
    n = 1 << int(np.ceil(np.log2(len(x) + len(y))))
    c = np.fft.irfft(np.fft.rfft(y, n) * np.conj(np.fft.rfft(x, n)), n)
    return int(np.argmax(c[:max_lag + 1]))


def test_states_latency_and_passthrough_on_one_clock():
    x = voiced(3.0)
    be = SimulatedBackend(x, lockstep=True)
    s = LiveSession(be)
    states = States()
    s.on_state = states
    cfg = SessionConfig(input_device="Sim Cable", output_device="Sim Cable", voice=passthrough, settings=OPEN)
    estimate = s.estimate_latency(cfg)
    s.start(cfg)
    assert s.running and states.names() == ["starting", "running"]
    assert "48000 Hz" in states.seen[-1][1] and "latency about" in states.seen[-1][1]
    be.wait_clock(int(2.5 * RATE))
    st = s.stats()
    s.stop()
    assert states.names()[-1] == "stopped" and not s.running
    assert st.state == "running" and st.underruns == 0 and st.blocks_processed > 20
    assert st.provider == "CPU (built-in DSP voice)" and st.block_budget_ms == pytest.approx(80.0)
    assert st.compute_p50_ms is not None and st.compute_p99_ms >= st.compute_p50_ms
    # The simulated card adds 5 + 10 ms around what it records: measured = recorded lag + 15 ms.
    y = be.played["Sim Cable"][:len(x)]
    measured = lag_of(y, x, RATE) + round(0.015 * RATE)
    assert measured == pytest.approx(st.latency.total, abs=2)
    assert estimate.total == st.latency.total       # the sim reports what it advertised
    assert st.latency.block == 3840 and st.latency.compute_margin == 480 + 3840
    d = lag_of(y, x, RATE)
    n = int(2.4 * RATE) - d                          # what was played before the session stopped
    assert np.corrcoef(y[d:d + n], x[:n])[0, 1] > 0.999


def test_dsp_voice_output_matches_the_offline_conversion():
    x = voiced(4.0)
    be = SimulatedBackend(x, lockstep=True)
    s = LiveSession(be)
    settings = OPEN.with_changes(pitch=4.0)
    s.start(SessionConfig(input_device="Sim Microphone", output_device="Sim Speakers", voice="builtin:dsp",
                          settings=settings))
    be.wait_clock(int(3.5 * RATE))
    st = s.stats()
    s.stop()
    assert st.underruns == 0
    offline = convert_whole(Converter(core_factory("builtin:dsp"), settings, RATE), x, block=3840)
    y = be.played["Sim Speakers"][:len(x)]
    d = lag_of(y, offline, RATE)
    n = int(3.0 * RATE) - d
    r = np.corrcoef(y[d + RATE // 2:d + n], offline[RATE // 2:n])[0, 1]
    assert r > 0.9, r


def test_live_safe_updates_apply_at_once_others_restart():
    be = SimulatedBackend(voiced(6.0), speed=2.0, lockstep=True)
    s = LiveSession(be)
    states = States()
    s.on_state = states
    s.start(SessionConfig(input_device="Sim Cable", output_device="Sim Cable", voice="builtin:dsp", settings=OPEN))
    conv = s._converter
    be.wait_clock(be.clock + RATE // 2)
    s.update(pitch=5.0, late_fill="dry", monitor_gain_db=-10.0)
    be.wait_clock(be.clock + RATE // 2)
    assert conv.core.total_pitch == pytest.approx(DspCore().total_pitch + 5.0)     # preset offset + user pitch
    assert s._runner.late_fill == "dry" and s._io.monitor_gain == pytest.approx(10 ** -0.5)
    assert states.names() == ["starting", "running"]           # no restart
    before = s.stats().latency.total
    s.update(block_ms=40.0)
    assert states.names()[-2:] == ["starting", "running"] and s.running
    after = s.stats().latency.total
    assert after == before - (3840 - 1920)                      # the block shrank (the budget is fixed)
    assert s._converter.settings.pitch == 5.0                   # earlier changes survive the restart
    s.stop()
    with pytest.raises(ValueError, match="pitch must be between"):
        s.update(pitch=99)


def test_unplugged_device_waits_then_resumes_with_the_same_latency():
    """The cable is unplugged: the session waits for it (no error), and when it is back audio
    resumes by itself, same settings, same fixed latency, every sample at that latency again."""
    x = voiced(8.0)
    be = SimulatedBackend(x, lockstep=True)
    s, states = observed(be, reconnect_s=0.1)
    cfg = SessionConfig(input_device="Sim Microphone", output_device="Sim Cable", voice=passthrough, settings=OPEN)
    s.start(cfg)
    be.wait_clock(RATE)
    before = s.stats()
    be.disconnect("Sim Cable")
    message = states.wait_for("waiting")
    assert "Sim Cable [Simulated] stopped unexpectedly" in message and "Waiting for Sim Cable [Simulated]" in message
    st = s.stats()
    assert st.state == "waiting" and st.waiting_for == "Sim Cable [Simulated]" and st.error is None
    assert not s.running and not be._streams
    assert states.seen[-1][2] == "como-session-watchdog"       # reported from the watchdog thread
    be.wait_clock(0)                                            # (the clock stands still with no stream)
    unplugged_at = be.clock
    be.reconnect("Sim Cable")
    message = states.wait_for_nth("running", 2)
    assert "Sim Cable [Simulated] is back" in message
    be.wait_clock(unplugged_at + 3 * RATE)
    after = s.stats()
    s.stop()
    assert states.names() == ["starting", "running", "waiting", "running", "stopped"]
    assert after.reconnects == 1 and after.waiting_for is None and after.underruns == 0
    # Every fixed part is the same; compute_margin holds the split streams' measured offset.
    assert dataclasses.replace(after.latency, compute_margin=0) == dataclasses.replace(before.latency, compute_margin=0)
    # What was played: the same delay before the unplug and after the resume, to the sample.
    y = be.played["Sim Cable"]
    lag = lag_of(y[:unplugged_at], x[:unplugged_at], RATE)
    a = unplugged_at + RATE                                     # well after the resume settled
    assert lag_of(y[a:a + 2 * RATE], x[a:a + 2 * RATE], RATE) == lag
    assert np.corrcoef(y[a + lag:a + lag + RATE], x[a:a + RATE])[0, 1] > 0.999


def test_stop_while_waiting_stops_and_a_vanished_device_refuses_to_start():
    be = SimulatedBackend(voiced(4.0), lockstep=True)
    s, states = observed(be, reconnect_s=0.1)
    cfg = SessionConfig(input_device="Sim Microphone", output_device="Sim Cable", voice=passthrough, settings=OPEN)
    s.start(cfg)
    be.wait_clock(RATE // 4)
    be.disconnect("Sim Cable")
    states.wait_for("waiting")
    s.stop()
    be.reconnect("Sim Cable")
    import time
    time.sleep(0.3)                                             # three reconnect periods: nothing may resume
    assert states.names() == ["starting", "running", "waiting", "stopped"] and not be._streams
    be.disconnect("Sim Cable")
    with pytest.raises(SessionError, match="No output device is called 'Sim Cable'"):
        s.start(cfg)                                            # still unplugged: a sentence, not a crash


def test_start_failure_reports_a_sentence():
    be = SimulatedBackend()
    s = LiveSession(be)
    states = States()
    s.on_state = states
    with pytest.raises(SessionError) as err:
        s.start(SessionConfig(output_device="Sim Headphones", sample_rate=44100, input_device="Sim Microphone",
                              voice="/nonexistent/voice/pack"))
    assert states.names() == ["starting", "error"] and states.seen[-1][1] == str(err.value)
    assert not be._streams


def test_an_open_that_fails_once_is_retried_and_one_that_keeps_failing_is_a_sentence():
    be = SimulatedBackend(voiced(2.0), lockstep=True)
    s, states = observed(be, open_retry_s=0.01)
    cfg = SessionConfig(input_device="Sim Cable", output_device="Sim Cable", voice=passthrough, settings=OPEN)
    be.fail_open, be.fail_opens = "Device unavailable [PaErrorCode -9985]", 2
    s.start(cfg)                                                # two refusals, the third open works
    be.wait_clock(RATE // 2)
    assert s.running and states.names() == ["starting", "running"] and be.fail_opens == 0
    s.stop()
    be.fail_opens = 3
    with pytest.raises(SessionError, match="in use by another program"):
        s.start(cfg)
    assert states.names()[-2:] == ["starting", "error"] and be.fail_opens == 0 and not be._streams


def test_voice_crash_is_reported():
    class Crashing(DspCore):
        calls = 0

        def process(self, x24):
            Crashing.calls += 1
            if Crashing.calls > 20:
                raise FloatingPointError("model exploded")
            return super().process(x24)

    be = SimulatedBackend(voiced(4.0), speed=2.0, lockstep=True)
    s = LiveSession(be)
    states = States()
    s.on_state = states
    s.start(SessionConfig(input_device="Sim Cable", output_device="Sim Cable",
                          voice=lambda st: Crashing(passthrough=True), settings=OPEN))
    message = states.wait_for("error")
    assert "The voice stopped working: FloatingPointError: model exploded" in message


def test_recording_and_non_finite_input(tmp_path):
    x = voiced(3.0)
    x[RATE:RATE + 500] = np.nan
    x[RATE + 1000] = np.inf
    be = SimulatedBackend(x, lockstep=True)
    s = LiveSession(be)
    s.start(SessionConfig(input_device="Sim Cable", output_device="Sim Cable", voice=passthrough, settings=OPEN,
                          record_dir=tmp_path))
    be.wait_clock(int(2.5 * RATE))
    st = s.stats()
    s.stop()
    assert len(st.recording_paths) == 2
    inp, _ = sf.read(st.recording_paths[0], dtype="float32")
    out, _ = sf.read(st.recording_paths[1], dtype="float32")
    assert len(inp) > 2 * RATE and len(out) > 2 * RATE
    assert np.isfinite(out).all() and np.isfinite(be.played["Sim Cable"]).all()
    assert np.isfinite(inp[:RATE]).all()


def test_cli_runs_prints_status_and_stops(capsys):
    from engine import live

    # lockstep: the simulated card never outruns the worker, so "underruns 0" is about the logic
    # (the fixed latency, the ring positions), not about how loaded the test machine is.
    be = SimulatedBackend(voiced(3.0), speed=2.0, lockstep=True)
    cfg = SessionConfig(input_device="Sim Cable", output_device="Sim Cable", voice="builtin:dsp", settings=OPEN)
    assert live.run(cfg, seconds=2.2, session=LiveSession(be)) == 0
    out = capsys.readouterr()
    lines = [line for line in out.out.splitlines() if line.startswith("latency")]
    assert len(lines) >= 2 and "underruns 0" in lines[-1] and "compute p50" in lines[-1]
    assert "[running]" in out.err and "[stopped]" in out.err
    # a session that cannot start: exit status 1 and the sentence on stderr
    bad = SessionConfig(input_device="nope", output_device="Sim Cable", voice=passthrough)
    assert live.run(bad, seconds=1.0, session=LiveSession(be)) == 1
    assert "No input device is called 'nope'" in capsys.readouterr().err
    assert live.main(["--block-ms", "5"]) == 2
    assert "block_ms must be between" in capsys.readouterr().err


def test_a_smaller_compute_budget_is_exactly_less_latency_and_still_plays():
    """The budget is the runner's margin for compute: a fast voice can run with 20 ms instead of a
    whole 80 ms block, and the delay drops by exactly the difference."""
    x = voiced(3.0)
    be = SimulatedBackend(x, lockstep=True)
    s = LiveSession(be)
    safe = SessionConfig(input_device="Sim Cable", output_device="Sim Cable", voice=passthrough, settings=OPEN)
    fast = dataclasses.replace(safe, settings=OPEN.with_changes(compute_budget_ms=20.0))
    assert s.estimate_latency(safe).total - s.estimate_latency(fast).total == int(0.060 * RATE)
    s.start(fast)
    be.wait_clock(int(2.5 * RATE))
    st = s.stats()
    s.stop()
    assert st.underruns == 0 and st.latency.compute_margin == 480 + 960
    y = be.played["Sim Cable"][:len(x)]
    assert lag_of(y, x, RATE) + round(0.015 * RATE) == pytest.approx(st.latency.total, abs=2)


def test_a_speaker_the_voice_lacks_is_refused_and_audio_goes_on():
    be = SimulatedBackend(voiced(4.0), speed=2.0, lockstep=True)
    s = LiveSession(be)
    s.start(SessionConfig(input_device="Sim Cable", output_device="Sim Cable", voice="builtin:dsp", settings=OPEN))
    with pytest.raises(ValueError, match="speaker 7 does not exist in this voice"):
        s.update(speaker=7)
    s.update(speaker=1)
    be.wait_clock(int(1.5 * RATE))
    st = s.stats()
    s.stop()
    assert st.state == "running" and st.error is None


def test_auto_budget_is_measured_reported_and_exact():
    """The default budget: measured at start (below one block for the cheap passthrough voice is
    not asserted: that is timing), reported as auto, and the output's delay is exactly the reported
    latency (after the last raise, if the machine was busy enough to make a block late)."""
    x = voiced(3.0)
    be = SimulatedBackend(x)
    s = LiveSession(be)
    auto = OPEN.with_changes(compute_budget_ms=0.0)
    cfg = SessionConfig(input_device="Sim Cable", output_device="Sim Cable", voice=passthrough, settings=auto)
    assert s.estimate_latency(cfg).compute_margin <= 480 + 2 * 3840
    s.start(cfg)
    be.wait_clock(int(2.8 * RATE))
    st = s.stats()
    s.stop()
    assert st.budget_auto and st.latency.compute_margin == 480 + s._runner.budget
    assert st.block_budget_ms == pytest.approx(1000 * s._runner.budget / RATE)
    assert (st.budget_note is None) == (s._runner.budget_raises == 0)
    y = be.played["Sim Cable"][:len(x)]
    tail = slice(int(1.8 * RATE), int(2.6 * RATE))            # after any raise (they happen early)
    ref = np.zeros_like(y)
    ref[tail] = x[tail]
    lag = lag_of(y, ref, RATE)
    assert lag + round(0.015 * RATE) == pytest.approx(st.latency.total, abs=2)


def test_streams_start_with_the_heap_frozen():
    """A collector pass over the whole heap holds the GIL for tens of ms (the callbacks then miss
    their deadline): the session collects and freezes what is alive before its streams start, and
    objects made by the start itself (the voice, the runner) are frozen with it."""
    import gc

    gc.unfreeze()
    be = SimulatedBackend(voiced(1.0), lockstep=True)
    s = LiveSession(be)
    marker = type("LoadedBeforeStart", (), {})()       # something alive before the session starts
    s.start(SessionConfig(input_device="Sim Cable", output_device="Sim Cable", voice=passthrough, settings=OPEN))
    try:
        assert gc.is_tracked(marker) and gc.get_freeze_count() > 1000
        # in no generation the collector scans any more
        assert all(obj is not marker for generation in (0, 1, 2) for obj in gc.get_objects(generation=generation))
    finally:
        s.stop()
