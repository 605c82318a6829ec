"""Virtual cables: detection and suggestion (pure), and the Linux virtual mic through pactl."""
from __future__ import annotations

import pytest

from engine.audio import virtual_cable as vc
from engine.audio import devices, pulse
from engine.audio.devices import DeviceInfo
from engine.audio.pulse import PulseError, pulse_target_exists


def dev(index, name, ins=0, outs=2, api="MME"):
    return DeviceInfo(index=index, name=name, hostapi=api, max_input_channels=ins, max_output_channels=outs,
                      default_samplerate=48000.0)


WINDOWS = [
    dev(0, "Microphone (Realtek Audio)", ins=2, outs=0),
    dev(1, "Speakers (Realtek Audio)"),
    dev(2, "CABLE Output (VB-Audio Virtual Cable)", ins=2, outs=0),
    dev(3, "CABLE Input (VB-Audio Virtual Cable)"),
    dev(4, "VoiceMeeter Input (VB-Audio VoiceMeeter VAIO)"),
    dev(5, "VoiceMeeter Output (VB-Audio VoiceMeeter VAIO)", ins=2, outs=0),
]


def test_known_cables_are_recognised():
    names = {d.name for d in vc.find_virtual_devices(WINDOWS)}
    assert names == {d.name for d in WINDOWS[2:]}
    assert vc.cable_kind(WINDOWS[3]).name == "VB-Audio Virtual Cable"
    assert vc.cable_kind(WINDOWS[4]).name == "VoiceMeeter"
    assert vc.cable_kind(dev(0, "BlackHole 2ch", ins=2, api="Core Audio")).name == "BlackHole"
    assert vc.cable_kind(dev(0, "Loopback Audio", api="Core Audio")).name == "Loopback"
    assert vc.cable_kind(dev(0, "pulse:como_live_sink")).name == "CoMo Live virtual mic"
    assert vc.cable_kind(WINDOWS[1]) is None


def test_suggests_the_side_we_play_into():
    assert vc.suggest_output(WINDOWS).name == "CABLE Input (VB-Audio Virtual Cable)"
    assert vc.suggest_output(WINDOWS[:3] + WINDOWS[4:]).name.startswith("VoiceMeeter Input")
    ours = dev(9, "pulse:como_live_sink")
    assert vc.suggest_output(WINDOWS + [ours]) is ours
    mac = [dev(0, "MacBook Pro Microphone", ins=1, outs=0), dev(1, "BlackHole 2ch", ins=2, outs=2)]
    assert vc.suggest_output(mac).name == "BlackHole 2ch"
    assert vc.suggest_output(WINDOWS[:2]) is None


def test_clear_errors_without_pactl_or_server(monkeypatch, tmp_path):
    monkeypatch.setattr(pulse.shutil, "which", lambda name: None)
    with pytest.raises(PulseError, match="pulseaudio-utils"):
        vc.create_virtual_mic()
    ok, why = vc.can_create_virtual_mic()
    assert not ok and ("pactl" in why or "Linux" in why)
    monkeypatch.undo()
    if pulse.shutil.which("pactl") is None:
        pytest.skip("pactl is not installed")
    monkeypatch.setenv("PULSE_SERVER", f"unix:{tmp_path}/nobody-here")
    monkeypatch.setenv("PULSE_CLIENTCONFIG", str(tmp_path / "client.conf"))
    (tmp_path / "client.conf").write_text("autospawn = no\n")
    with pytest.raises(PulseError, match="No PulseAudio or PipeWire sound server is running"):
        vc.create_virtual_mic()
    assert devices.pulse_devices() == []
    assert pulse_target_exists("x", "output") is None


@pytest.mark.audio
def test_create_and_remove_virtual_mic_through_pactl(tmp_path_factory):
    from tests.pulse import start_or_skip

    server = start_or_skip(tmp_path_factory.mktemp("pulse_vc"))
    try:
        assert vc.can_create_virtual_mic() == (True, "")
        assert not vc.virtual_mic_exists()
        message = vc.create_virtual_mic()
        assert "Created" in message and vc.OUTPUT_SPEC in message
        again = vc.create_virtual_mic()                        # idempotent
        assert "already exists" in again
        sources = server.pactl("list", "sources")
        assert 'device.description = "CoMo Live Mic"' in sources
        assert sum(1 for line in server.pactl("list", "short", "modules").splitlines() if "como_live" in line) == 2
        found = {d.name: d for d in devices.pulse_devices()}
        assert "pulse:como_live_sink" in found and "pulse:como_live_mic" in found
        assert vc.suggest_output(list(found.values())).name == "pulse:como_live_sink"
        assert pulse_target_exists("como_live_mic", "input") is True
        # The engine can play into it by name.
        from engine.audio.streams import SoundDeviceBackend, plan_streams

        plan = plan_streams(SoundDeviceBackend(), input="vc_in", output=vc.OUTPUT_SPEC, sample_rate=48000)
        assert plan.output.pulse_target == "como_live_sink"
        assert "Removed" in vc.remove_virtual_mic()
        assert not vc.virtual_mic_exists() and "como_live" not in server.pactl("list", "short", "modules")
        assert "no CoMo Live virtual microphone" in vc.remove_virtual_mic()   # idempotent
        assert pulse_target_exists("como_live_mic", "input") is False
    finally:
        server.stop()
