"""The file-conversion CLI (the object it drives is `engine.converter.Converter`): convert a file
through the streaming engine — the exact path live audio takes.

    python -m engine.convert in.wav out.wav --voice voices/my-voice --block-ms 80 --lookahead-ms 40
    python -m engine.convert in.wav out.wav --voice voices/my-voice --whole     # the offline reference
    python -m engine.convert in.wav out.wav --voice builtin:dsp --key 4         # no model needed

The file is fed to the same `Converter` the live engine uses, block by block (or as one block with
`--whole`); the output is aligned (the engine's latency is flushed and trimmed) and has the input's
sample rate and length.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from engine.converter import Converter, convert_whole
from engine.settings import Settings
from engine.voicepack import VoicePackError
from engine.voices import BUILTIN_DSP, describe, load_voice

PROVIDER_CHOICES = {"auto": ("tensorrt", "cuda", "cpu"), "tensorrt": ("tensorrt", "cpu"),
                    "cuda": ("cuda", "cpu"), "cpu": ("cpu",)}


class InputError(ValueError):
    """The input file or an option cannot be used; the message says why."""


def read_audio(path: Path) -> tuple[np.ndarray, int, str]:
    """Mono float32 audio, its rate and a note on anything that was changed."""
    import soundfile as sf

    if not path.is_file():
        raise InputError(f"input file not found: {path}")
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # noqa: BLE001 - libsndfile raises its own error types
        raise InputError(f"cannot read {path} as audio ({exc})") from exc
    notes = []
    if audio.shape[1] > 1:
        notes.append(f"{audio.shape[1]} channels mixed to mono")
    audio = audio.mean(axis=1)
    if len(audio) == 0:
        raise InputError(f"{path} holds no audio samples")
    bad = int((~np.isfinite(audio)).sum())
    if bad:
        notes.append(f"{bad} non-finite samples (NaN/inf) replaced by silence")
        audio = np.where(np.isfinite(audio), audio, 0.0).astype(np.float32)
    return audio, int(rate), "; ".join(notes)


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
    p.add_argument("--voice", default=BUILTIN_DSP, help=f"voice pack folder or {BUILTIN_DSP} (default)")
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        audio, rate, note = read_audio(args.input)
        if note:
            print(f"note: {note}", file=sys.stderr)
        settings = Settings(block_ms=args.block_ms, lookahead_ms=args.lookahead_ms,
                            crossfade_ms=args.crossfade_ms, context_ms=args.context_ms, pitch=args.key,
                            speaker=speaker_id(args.voice, args.speaker), gate_db=-120.0)
        prefer = PROVIDER_CHOICES[args.provider]
        converter = Converter(lambda s: load_voice(args.voice, s, prefer, args.threads), settings, rate)
    except (InputError, VoicePackError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if converter.provider_note:
        print(f"note: running on {converter.provider}. {converter.provider_note}", file=sys.stderr)
    block = None if args.whole else max(1, int(round(settings.block_ms * rate / 1000)))
    from tqdm import tqdm

    started = time.perf_counter()
    with tqdm(total=len(audio), unit="sample", unit_scale=True, disable=args.quiet, file=sys.stderr,
              desc="converting") as bar:
        done = [0]

        def progress(position: int) -> None:
            bar.update(position - done[0])
            done[0] = position

        out = convert_whole(converter, audio, block, progress)
    elapsed = time.perf_counter() - started
    import soundfile as sf

    try:
        sf.write(str(args.output), out, rate, subtype="FLOAT")
    except Exception as exc:  # noqa: BLE001
        print(f"error: cannot write {args.output} ({exc})", file=sys.stderr)
        return 2
    seconds = len(audio) / rate
    print(f"{args.output}: {seconds:.2f} s at {rate} Hz via {converter.core.describe()}; "
          f"latency {converter.latency()} samples ({1000 * converter.latency() / rate:.1f} ms, compensated); "
          f"real-time factor {elapsed / seconds:.3f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
