"""Devices, stream planning and AudioIO on the simulated sound card (no hardware, no PortAudio)."""
from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from engine.audio import devices
from engine.audio.streams import AudioIO, SimDevice, SimFlags, SimulatedBackend, StreamPlan, plan_streams
from engine.audio.devices import DeviceError, DeviceInfo, explain_error, find_device
from engine.audio.pulse import aimed_at
from engine.audio.recorder import Recorder
from engine.runner import RealtimeRunner

RATE = 48000


class Delay:
    """Identity converter with a fixed delay."""

    def __init__(self, delay: int = 100) -> None:
        self.buf = np.zeros(delay, np.float32)

    def latency(self) -> int:
        return len(self.buf)

    def process(self, x):
        both = np.concatenate([self.buf, x])
        self.buf = both[len(x):]
        return both[:len(x)]

    def reset(self):
        self.buf[:] = 0

    def update(self, **kw):
        pass


def dev(index, name, api="ALSA", ins=2, outs=2, rate=44100.0, **kw) -> DeviceInfo:
    return DeviceInfo(index=index, name=name, hostapi=api, max_input_channels=ins, max_output_channels=outs,
                      default_samplerate=rate, **kw)


# --- devices ---------------------------------------------------------------------------------------

def test_find_device_by_default_index_name_and_substring():
    found = [dev(0, "Mic", outs=0, is_default_input=True), dev(1, "Speakers", ins=0, is_default_output=True),
             dev(2, "CABLE Input (VB-Audio Virtual Cable)", ins=0), dev(3, "pulse"),
             dev(4, "Speakers", api="WASAPI", ins=0)]
    assert find_device(None, "input", found).name == "Mic"
    assert find_device(None, "output", found).index == 1
    assert find_device(2, "output", found).index == 2
    assert find_device("2", "output", found).index == 2
    assert find_device("cable input", "output", found).index == 2
    assert find_device("Speakers [WASAPI]", "output", found).index == 4
    assert find_device("speakers", "output", found).index == 1          # two host APIs: the default one wins
    p = find_device("pulse:como_live_sink", "output", found)
    assert p.index == 3 and p.pulse_target == "como_live_sink" and p.name == "pulse:como_live_sink"
    with pytest.raises(DeviceError, match="no input channels"):
        find_device(1, "input", found)
    with pytest.raises(DeviceError, match="No output device is called 'nope'"):
        find_device("nope", "output", found)
    with pytest.raises(DeviceError, match="no audio device number 9"):
        find_device(9, "output", found)
    with pytest.raises(DeviceError, match="No input devices"):
        find_device(None, "input", [])
    with pytest.raises(DeviceError, match="libasound2-plugins"):
        find_device("pulse:x", "output", found[:3])


def test_portaudio_errors_become_sentences():
    msg = explain_error("Error opening Stream: Invalid sample rate [PaErrorCode -9997]", "USB Mic [MME]")
    assert msg.startswith("USB Mic [MME] does not support this sample rate.") and "-9997" in msg
    assert "unplugged" in explain_error("Device unavailable [PaErrorCode -9985]")
    assert "different host APIs" in explain_error("Illegal combination of I/O devices")
    assert explain_error("something odd").endswith("something odd")


def test_device_list_groups_by_host_api():
    class FakeSd:
        default = type("D", (), {"device": (0, 1)})()

        @staticmethod
        def query_devices():
            return [dict(index=0, name="Mic", hostapi=0, max_input_channels=1, max_output_channels=0,
                         default_samplerate=48000.0, default_low_input_latency=0.01, default_low_output_latency=0.01),
                    dict(index=1, name="Out", hostapi=1, max_input_channels=0, max_output_channels=2,
                         default_samplerate=44100.0, default_low_input_latency=0.01, default_low_output_latency=0.01)]

        @staticmethod
        def query_hostapis():
            return [dict(name="MME", default_input_device=0, default_output_device=-1),
                    dict(name="WASAPI", default_input_device=-1, default_output_device=1)]

    groups = devices.host_apis(FakeSd)
    assert [g.name for g in groups] == ["MME", "WASAPI"]
    assert groups[0].devices[0].is_default_input and groups[1].devices[0].is_default_output
    text = devices.format_devices(groups)
    assert "MME:" in text and "Out" in text and "44100 Hz" in text
    assert "No audio devices" in devices.format_devices([])


def test_pulse_targets_are_set_only_while_opening():
    os.environ.pop("PULSE_SINK", None)
    with aimed_at(source=None, sink="vc_out"):
        assert os.environ["PULSE_SINK"] == "vc_out" and "PULSE_SOURCE" not in os.environ
    assert "PULSE_SINK" not in os.environ


# --- planning --------------------------------------------------------------------------------------

def test_plan_duplex_split_and_monitor():
    be = SimulatedBackend()
    p = plan_streams(be, input="Sim Cable", output="Sim Cable")
    assert p.duplex and p.rate == 48000 and p.frames == 480
    p = plan_streams(be, input="Sim Microphone", output="Sim Speakers", monitor="Sim Headphones", input_channel=1)
    assert not p.duplex and p.monitor.name == "Sim Headphones"
    assert p.input_channels == 2 and p.input_column == 1 and p.output_channels == 2
    p = plan_streams(be, input=None, output="Sim Speakers", monitor="Sim Speakers")
    assert p.monitor is None and any("hear yourself twice" in n for n in p.notes)
    with pytest.raises(DeviceError, match="channel 3 does not exist"):
        plan_streams(be, input=None, output=None, input_channel=2)


def test_alsa_plugin_devices_run_as_two_streams_hardware_as_one():
    """The ALSA pulse plugin fails PortAudio's duplex loop (see DeviceInfo.duplex_safe)."""
    def plan(device: DeviceInfo) -> StreamPlan:
        return StreamPlan(input=device, output=device, monitor=None, rate=RATE, frames=480, input_channels=1,
                          input_column=0, output_channels=2, monitor_channels=0, exclusive=False)

    assert not plan(dev(3, "pulse")).duplex and not plan(dev(4, "default")).duplex
    assert not plan(dev(3, "pulse:vc_out", pulse_target="vc_out")).duplex
    assert plan(dev(0, "HDA Intel PCH: ALC892 Analog (hw:0,0)")).duplex
    assert plan(dev(2, "Speakers", api="Windows WASAPI")).duplex


def test_unsupported_rate_falls_back_to_the_device_default_and_says_so():
    be = SimulatedBackend()
    p = plan_streams(be, input=None, output="Sim Headphones", sample_rate=44100)
    assert p.rate == 48000
    assert any("44100 Hz is not supported" in n and "48000 Hz" in n for n in p.notes)
    be = SimulatedBackend(devices=[SimDevice("A", 1, 0, rate=44100, rates=(44100,)),
                                   SimDevice("B", 0, 2, rate=96000, rates=(96000,))])
    with pytest.raises(DeviceError, match="No sample rate works"):
        plan_streams(be, input="A", output="B")


def test_exclusive_mode_only_on_wasapi():
    p = plan_streams(SimulatedBackend(), input=None, output=None, exclusive=True)
    assert not p.exclusive and any("WASAPI" in n for n in p.notes)


# --- running on the simulated card -----------------------------------------------------------------

def impulses(n, every=12000, first=2400):
    x = np.zeros(n, np.float32)
    x[first::every] = 0.7
    return x


def run_io(be, plan, seconds, recorder=None, monitor_gain_db=0.0):
    runner = RealtimeRunner(Delay(100), 960, sample_rate=plan.rate, chunk=960, callback_frames=plan.frames)
    io = AudioIO(be, plan, runner, recorder=recorder, monitor_gain_db=monitor_gain_db)
    runner.start()
    io.start()
    try:
        be.wait_clock(be.clock + int(seconds * plan.rate))
        fault = io.poll()
    finally:
        io.stop()
        runner.stop()
    return runner, io, fault


@pytest.mark.parametrize("split", [False, True])
def test_streams_convert_with_constant_latency(split):
    x = impulses(3 * RATE)
    be = SimulatedBackend(x, lockstep=True)
    plan = plan_streams(be, input="Sim Microphone" if split else "Sim Cable", output="Sim Cable",
                        monitor="Sim Headphones")
    runner, io, fault = run_io(be, plan, 2.0, monitor_gain_db=-6.0)
    assert fault is None and runner.stats().underruns == 0
    st = runner.stats()
    y = be.played["Sim Cable"][:len(x)]
    xi, yi = np.flatnonzero(x > 0.3), np.flatnonzero(y > 0.3)
    offs = set((yi - xi[np.searchsorted(xi, yi) - 1]).tolist())     # delay < impulse spacing
    assert len(yi) >= 6 and len(offs) == 1
    # the runner's own account of the delay (inside the program; the simulated card adds none)
    assert offs.pop() == pytest.approx(runner.latency() + st.queue_ms * RATE / 1000, abs=3)
    assert st.input_latency_ms == pytest.approx(5.0) and st.output_latency_ms == pytest.approx(10.0)
    mon = be.played["Sim Headphones"][:len(x)]
    assert mon.max() == pytest.approx(0.7 * 10 ** (-6 / 20), rel=1e-3)   # the monitor has its own gain


@pytest.mark.parametrize("channel", [0, 1])
def test_input_channel_is_picked_and_copied_to_both_outputs(channel):
    be = SimulatedBackend(impulses(RATE), mic_channel=1, speed=2.0)
    plan = plan_streams(be, input="Sim Cable", output="Sim Cable", input_channel=channel)
    run_io(be, plan, 0.8)
    assert plan.input_column == channel and plan.output_channels == 2
    heard = be.played["Sim Cable"].max()
    assert heard > 0.5 if channel == 1 else heard == 0.0
    assert be.unequal_output_channels == 0


def test_disconnect_stops_with_a_sentence_and_restart_works():
    be = SimulatedBackend(impulses(4 * RATE))
    plan = plan_streams(be, input="Sim Microphone", output="Sim Cable")
    runner = RealtimeRunner(Delay(), 960, sample_rate=RATE, chunk=960, callback_frames=480)
    io = AudioIO(be, plan, runner)
    runner.start()
    io.start()
    be.wait_clock(be.clock + RATE // 4)
    be.disconnect("Sim Cable")
    fault = io.poll()
    io.stop()
    runner.stop()
    assert fault is not None and "Sim Cable [Simulated] stopped unexpectedly" in fault
    be.reconnect("Sim Cable")
    runner = RealtimeRunner(Delay(), 960, sample_rate=RATE, chunk=960, callback_frames=480)
    io = AudioIO(be, plan_streams(be, input="Sim Microphone", output="Sim Cable"), runner)
    runner.start()
    io.start()
    be.wait_clock(be.clock + RATE // 4)
    assert io.poll() is None and io.running
    io.stop()
    runner.stop()


def test_persistent_status_flags_are_a_fault_but_single_ones_are_counted():
    be = SimulatedBackend(speed=4.0)
    plan = plan_streams(be, input="Sim Cable", output="Sim Cable")
    runner = RealtimeRunner(Delay(), 960, sample_rate=RATE, chunk=960, callback_frames=480)
    io = AudioIO(be, plan, runner, max_flagged_callbacks=20)
    runner.start()
    io.start()
    be.flag_status(True)
    be.wait_clock(be.clock + 10 * 480)
    be.flag_status(False)
    be.wait_clock(be.clock + 10 * 480)
    assert io.poll() is None and io.xruns >= 9
    be.flag_status(True)
    be.wait_clock(be.clock + 30 * 480)
    fault = io.poll()
    io.stop()
    runner.stop()
    assert fault is not None and "over/underflows" in fault


def test_stalled_device_is_detected_by_the_watchdog():
    be = SimulatedBackend()
    plan = plan_streams(be, input="Sim Cable", output="Sim Cable")
    runner = RealtimeRunner(Delay(), 960, sample_rate=RATE, chunk=960, callback_frames=480)
    io = AudioIO(be, plan, runner, stall_timeout_s=0.2)
    runner.start()
    io.start()
    be.wait_clock(be.clock + 4800)
    assert io.poll() is None
    for s in list(be._streams):       # the clock stops calling back, but nobody says why
        be._detach(s)
    import time
    deadline = time.monotonic() + 5
    while io.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    io.stop()
    runner.stop()
    assert io.fault is not None and "stopped delivering audio" in io.fault


def test_open_failure_is_a_sentence_and_closes_everything():
    be = SimulatedBackend()
    be.fail_open = "Device unavailable [PaErrorCode -9985]"
    plan = plan_streams(be, input="Sim Microphone", output="Sim Speakers")
    io = AudioIO(be, plan, RealtimeRunner(Delay(), 960, sample_rate=RATE))
    with pytest.raises(DeviceError, match="in use by another program"):
        io.start()
    assert not io.running and not be._streams


def test_recorder_writes_input_and_output(tmp_path):
    x = impulses(2 * RATE)
    be = SimulatedBackend(x, lockstep=True)
    plan = plan_streams(be, input="Sim Cable", output="Sim Cable")
    rec = Recorder(tmp_path / "rec", RATE, stem="take")
    rec.start()
    runner, io, _ = run_io(be, plan, 1.5, recorder=rec)
    rec.wait_written(RATE)
    paths = rec.stop()
    assert [p.name for p in paths] == ["take-input.wav", "take-output.wav"]
    xin, sr = sf.read(paths[0], dtype="float32")
    yout, _ = sf.read(paths[1], dtype="float32")
    assert sr == RATE and len(xin) == len(yout) >= RATE and rec.dropped == 0
    np.testing.assert_array_equal(xin, x[:len(xin)])
    d = runner.latency()
    np.testing.assert_array_equal(yout[d:], xin[:len(yout) - d])


def test_xruns_are_counted_by_kind_and_a_latency_step_is_reported_with_its_cause():
    """An output underflow after which the driver plays everything 25 ms later (what the ALSA
    pulse plugin does after an underrun): counted, and the step reported once, naming the xrun."""
    be = SimulatedBackend(speed=4.0, lockstep=True)
    plan = plan_streams(be, input="Sim Cable", output="Sim Cable")
    runner = RealtimeRunner(Delay(), 960, sample_rate=RATE, chunk=960, callback_frames=480)
    io = AudioIO(be, plan, runner)
    io.latency_step_check_s = 0.0
    runner.start()
    io.start()
    try:
        be.flag_status(SimFlags(priming_output=True))            # not an xrun
        be.wait_clock(be.clock + 2 * 480)
        be.flag_status(False)
        be.wait_clock(be.clock + 300 * 480)                      # two windows of steady time stamps
        assert io.poll() is None and io.xruns == 0 and io.xrun_log.counts().priming >= 1
        assert io.xrun_log.steps == []
        be.flag_status(SimFlags(output_underflow=True))
        be.output_latency += 0.025
        be.wait_clock(be.clock + 480)
        be.flag_status(False)
        be.wait_clock(be.clock + 300 * 480)
        assert io.poll() is None
        counts = io.xrun_log.counts()
        assert counts.output_underflow == counts.total >= 1 and counts.input_overflow == 0
        assert len(counts.positions) == counts.total and counts.describe().startswith(f"{counts.total} (output")
        steps = io.xrun_log.steps
        assert len(steps) == 1 and steps[0].step_ms == pytest.approx(25.0, abs=0.5)
        assert "output underflow" in steps[0].cause and "+25 ms" in steps[0].sentence()
        be.output_latency -= 0.025                               # a step back without an xrun
        be.wait_clock(be.clock + 300 * 480)
        io.poll()
        assert len(io.xrun_log.steps) == 2 and "no xrun was reported" in io.xrun_log.steps[1].cause
    finally:
        io.stop()
        runner.stop()
