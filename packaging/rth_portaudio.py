"""PyInstaller runtime hook (Linux): make sounddevice load the PortAudio library bundled next to the app.

sounddevice looks PortAudio up with `ctypes.util.find_library("portaudio")`, which only searches the
system; a user without libportaudio2 would get "PortAudio library not found". This runs before the
app imports sounddevice and answers that one lookup with the bundled file.
"""
import ctypes.util
import os
import sys

_bundled = os.path.join(sys._MEIPASS, "libportaudio.so.2")
_system_find_library = ctypes.util.find_library


def _find_library(name):
    if name == "portaudio" and os.path.exists(_bundled):
        return _bundled
    return _system_find_library(name)


ctypes.util.find_library = _find_library
