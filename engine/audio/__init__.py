"""The I/O edge of the engine: devices, PulseAudio, streams, the virtual cable and the recorder.

Import order is one way: `pulse` (pactl, no devices) <- `devices` (PortAudio listing and lookup)
<- `virtual_cable`, `streams`; `recorder` stands alone.
"""
