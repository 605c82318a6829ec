"""PyInstaller runtime hook (Linux): make sounddevice load the PortAudio library bundled with the app.

sounddevice looks PortAudio up with `ctypes.util.find_library("portaudio")`, which only searches the
system; a user without libportaudio2 would get "PortAudio library not found". This runs before the
app imports sounddevice and answers that one lookup with the bundled file. PortAudio links JACK's
client library: the user's is loaded when there is one, the bundled fallback copy otherwise.
"""
import ctypes
import ctypes.util
import glob
import os
import sys

_bundled = os.path.join(sys._MEIPASS, "libportaudio.so.2")
_system_find_library = ctypes.util.find_library


def _find_library(name):
    if name == "portaudio" and os.path.exists(_bundled):
        return _bundled
    return _system_find_library(name)


def _load_fallbacks():
    # fallback-libs (bundle_rules.FALLBACK_FOLDER) is not on the loader's path; a library loaded here
    # satisfies PortAudio's link by its soname.
    for path in glob.glob(os.path.join(sys._MEIPASS, "fallback-libs", "*.so*")):
        try:
            ctypes.CDLL(os.path.basename(path), mode=ctypes.RTLD_GLOBAL)   # the user's copy
        except OSError:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)


ctypes.util.find_library = _find_library
_load_fallbacks()
