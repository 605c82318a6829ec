"""The model's audio grid (spec §1), defined once for the runtime.

Every voice pack is made for this grid (`NeuralCore` refuses a manifest made for another): the
decoder and vocoder run at `MODEL_RATE` with one mel frame per `HOP` samples (187.5 frames/s), and
mel frame `i` is vocoded into 24 kHz samples `[HOP i, HOP i + HOP)`. The content encoder and FCPE
read the same audio resampled to `CONTENT_RATE`.
"""
from __future__ import annotations

MODEL_RATE = 24_000
HOP = 128
CONTENT_RATE = 16_000
