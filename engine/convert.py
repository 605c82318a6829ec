"""The file-conversion CLI (the object it drives is `engine.converter.Converter`): convert a file
through the streaming engine — the exact path live audio takes.

    python -m engine.convert in.wav out.wav --voice voices/my-voice --block-ms 80 --lookahead-ms 40
    python -m engine.convert in.wav out.wav --voice voices/my-voice --whole     # the offline reference
    python -m engine.convert in.wav out.wav --voice builtin:dsp --key 4         # no model needed

The file is fed to the same `Converter` the live engine uses, block by block (or as one block with
`--whole`); the output is aligned (the engine's latency is flushed and trimmed) and has the input's
sample rate and length. Blocks stream from file to file, so memory does not grow with the length
(`--whole` first says how much it needs). The output is checked before any work (never the input,
a writable folder, a format soundfile writes) and written to a temporary file that replaces it only
when complete: a full disk or Ctrl-C leaves nothing half-written.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from engine import voices
from engine.converter import Converter, convert_blocks
from engine.safe_write import OutputError, atomic_path, audio_writer, check_output_file
from engine.settings import Settings
from engine.voicepack import VoicePackError
from engine.voices import VOICE_HELP, describe, load_voice

if TYPE_CHECKING:
    import soundfile as sf

#: What `--whole` holds per input sample beyond the file itself: the converter's dry and output
#: histories, resampled copies and the model's features. Measured on the built-in voice and the
#: tiny test pack (peak RSS growth per 48 kHz sample: ≈125 B built-in, ≈240 B tiny pack), rounded up.
_WHOLE_BYTES_PER_SAMPLE = 256

PROVIDER_CHOICES = {"auto": ("tensorrt", "cuda", "cpu"), "tensorrt": ("tensorrt", "cpu"),
                    "cuda": ("cuda", "cpu"), "cpu": ("cpu",)}


class InputError(ValueError):
    """The input file or an option cannot be used; the message says why."""


def speaker_id(spec: str, speaker: str | None) -> int:
    """A speaker given by name or id, checked against the voice."""
    if speaker is None:
        return 0
    speakers = describe(spec).speakers
    if speaker in speakers:
        return speakers[speaker]
    if speaker.isdigit() and int(speaker) in speakers.values():
        return int(speaker)
    raise InputError(f"unknown speaker {speaker!r}; this voice has: "
                     + ", ".join(f"{name} ({idx})" for name, idx in speakers.items()))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.convert", description=__doc__.split("\n")[0])
    p.add_argument("input", type=Path)
    p.add_argument("output", type=Path)
    p.add_argument("--voice", default=voices.DEFAULT_VOICE, help=VOICE_HELP)
    p.add_argument("--block-ms", type=float, default=Settings.block_ms)
    p.add_argument("--lookahead-ms", type=float, default=Settings.lookahead_ms)
    p.add_argument("--crossfade-ms", type=float, default=Settings.crossfade_ms)
    p.add_argument("--context-ms", type=float, default=Settings.context_ms)
    p.add_argument("--key", type=float, default=0.0, help="pitch shift in semitones (-24..24)")
    p.add_argument("--speaker", help="speaker name or id (default: the first)")
    p.add_argument("--whole", action="store_true", help="convert the file as one block (offline reference)")
    p.add_argument("--provider", choices=sorted(PROVIDER_CHOICES), default="auto")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per ONNX session")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def open_input(path: Path) -> "sf.SoundFile":
    """The input opened for block reads (raises `InputError` when it is missing, unreadable or empty)."""
    import soundfile as sf

    if not path.is_file():
        raise InputError(f"input file not found: {path}")
    try:
        source = sf.SoundFile(str(path))
    except Exception as exc:  # noqa: BLE001 - libsndfile raises its own error types
        raise InputError(f"cannot read {path} as audio ({exc})") from exc
    if source.frames <= 0:
        source.close()
        raise InputError(f"{path} holds no audio samples")
    return source


class _MonoBlocks:
    """Mono float32 blocks of a file, non-finite samples replaced by silence (and counted)."""

    def __init__(self, source: "sf.SoundFile", block: int) -> None:
        self.source, self.block, self.nonfinite = source, block, 0

    def __iter__(self) -> Iterator[np.ndarray]:
        for chunk in self.source.blocks(self.block, dtype="float32", always_2d=True):
            mono = chunk.mean(axis=1) if chunk.shape[1] > 1 else chunk[:, 0]
            finite = np.isfinite(mono)
            if not finite.all():
                self.nonfinite += int(len(mono) - finite.sum())
                mono = np.where(finite, mono, np.float32(0.0))
            yield mono


def whole_file_bytes(frames: int, channels: int) -> int:
    """Memory `--whole` needs for a file of `frames` × `channels` samples (measured, rounded up)."""
    return frames * (4 * channels + _WHOLE_BYTES_PER_SAMPLE)


def convert_file(converter: Converter, source: "sf.SoundFile", output: Path, block: int | None,
                 progress: Callable[[int], None]) -> str:
    """Convert `source` into `output` (atomically); returns a note on non-finite input samples.

    Blocks are read, converted and written one at a time, so memory stays flat whatever the length;
    `block=None` (`--whole`) reads the file first and converts it as one block.
    """
    blocks = _MonoBlocks(source, block or source.frames)
    with atomic_path(output) as temp, audio_writer(temp, output, converter.device_rate) as sink:
        convert_blocks(converter, blocks, sink.write, progress)
    return f"{blocks.nonfinite} non-finite samples (NaN/inf) replaced by silence" if blocks.nonfinite else ""


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _stop_on_ctrl_c()
    try:
        check_output_file(args.output, [args.input], audio=True)
        source = open_input(args.input)
    except (InputError, OutputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with source:
        return _run(args, source)


def _stop_on_ctrl_c() -> None:
    """SIGINT raises KeyboardInterrupt (stop, remove the partial output) even when we were started with
    it ignored: a non-interactive shell's background job (`cmd &`, a CI runner) inherits SIG_IGN, and
    Python then installs no handler, so Ctrl-C or `kill -INT` would be ignored and the conversion run on."""
    if threading.current_thread() is threading.main_thread():   # signal handlers can only be set there
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _run(args: argparse.Namespace, source: "sf.SoundFile") -> int:
    rate = source.samplerate
    if source.channels > 1:
        print(f"note: {source.channels} channels mixed to mono", file=sys.stderr)
    try:
        settings = Settings(block_ms=args.block_ms, lookahead_ms=args.lookahead_ms,
                            crossfade_ms=args.crossfade_ms, context_ms=args.context_ms, pitch=args.key,
                            speaker=speaker_id(args.voice, args.speaker), gate_db=-120.0)
        prefer = PROVIDER_CHOICES[args.provider]
        converter = Converter(lambda s: load_voice(args.voice, s, prefer, args.threads), settings, rate)
    except (InputError, VoicePackError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 130
    if converter.provider_note:
        print(f"note: running on {converter.provider}. {converter.provider_note}", file=sys.stderr)
    if args.whole:
        need = whole_file_bytes(source.frames, source.channels)
        print(f"note: --whole holds the whole file in memory: about {need / 2**20:.0f} MiB for "
              f"{source.frames / rate:.0f} s (without --whole memory stays flat)", file=sys.stderr)
    block = None if args.whole else max(1, int(round(settings.block_ms * rate / 1000)))
    from tqdm import tqdm

    started = time.perf_counter()
    try:
        with tqdm(total=source.frames, unit="sample", unit_scale=True, disable=args.quiet, file=sys.stderr,
                  desc="converting") as bar:
            note = convert_file(converter, source, args.output, block, lambda done: bar.update(done - bar.n))
    except OutputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"stopped: nothing was written to {args.output}", file=sys.stderr)
        return 130
    if note:
        print(f"note: {note}", file=sys.stderr)
    elapsed = time.perf_counter() - started
    seconds = source.frames / rate
    print(f"{args.output}: {seconds:.2f} s at {rate} Hz via {converter.core.describe()}; "
          f"latency {converter.latency()} samples ({1000 * converter.latency() / rate:.1f} ms, compensated); "
          f"real-time factor {elapsed / seconds:.3f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
