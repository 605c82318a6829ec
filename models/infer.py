"""Reference offline converter: `python -m models.infer in.wav out.wav --ckpt … --vocoder … --content …`.

The official CoMoSVC inference (spec §9.3), simplified and made reproducible:

1. read the file (soundfile), mix channels to mono (mean), resample to 24 kHz (soxr HQ) when needed;
   no peak normalisation, no clipping (as the official inference);
2. f0 by DIO (official) or FCPE at T = N // 128 frames, unvoiced frames interpolated, shifted by
   `key` semitones; RMS volume (spec §3);
3. content units: 24 kHz -> the encoder's rate (ContentVec: 16 kHz, soxr HQ; the official code uses
   torchaudio's sinc resampler; the PPG's "mel" framing reads the 24 kHz audio itself), the content
   encoder, then `align_units` to T frames with the config's `data.unit_interpolate_mode` ('left'
   when the key is absent, as official; an encoder on the mel grid gives one frame per mel frame);
4. mel: student = consistency sampler with `steps` NFE (default 1) on the online `denoise_fn`;
   teacher (a teacher checkpoint or `teacher=True`) = Euler sampler (default 50 steps);
   the starting noise is drawn as [1, 80, T] and transposed, like the official sampler;
5. vocoder with the shifted f0, zero initial phase and seeded source noise -> T·128 samples, 24 kHz.

All randomness comes from one `torch.Generator` seeded with `seed`: the same input, settings and seed
give the same output. Files longer than `slice_seconds` (default 30 s) are converted in slices whose
outputs are crossfaded (see `plan_slices`); shorter files go through the pipeline in one piece.
The official slicer (cut at silences, 0.5 s zero padding per chunk) is not reproduced.

Exit codes of `main`: 0 ok, 2 usage or input error (bad file, unreadable checkpoint, unknown
speaker, …), 1 unexpected failure, 130 interrupted. Messages are one line on stderr; `--verbose`
adds the traceback.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.safe_write import OutputError, atomic_path, audio_writer, check_output_file
from models.audio import HOP, N_MELS, SAMPLE_RATE, rms_volume
from models.checkpoints import CheckpointError
from models.cli import run_command
from models.comosvc import LoadedModel, load_official
from models.content import ContentEncoder, align_units, load_content_encoder
from models.nsf_source import advance_phase
from models.pitch import EXTRACTORS, PitchExtractor, make_pitch_extractor, shift_f0
from models.vocoder import NSFHiFiGAN, VocoderConfigError, load_vocoder

DEFAULT_TEACHER_STEPS = 50
DEFAULT_STUDENT_STEPS = 1
DEFAULT_SLICE_SECONDS = 30.0
SLICE_CONTEXT_SECONDS = 0.5    # extra audio each slice sees beyond its crossfade zone (edge effects)
SLICE_CROSSFADE_SECONDS = 0.5  # linear crossfade centred on each slice boundary
MAX_KEY = 48.0                 # semitones; beyond 4 octaves f0 leaves any voice's range

Log = Callable[[str], None]


class InputError(Exception):
    """A problem with what the user passed (file, option, checkpoint); exit code 2."""


# --------------------------------------------------------------------------------------------------
# Audio in / out
# --------------------------------------------------------------------------------------------------

def _silent(_: str) -> None:
    pass


def load_audio(path: str | os.PathLike, log: Log = _silent) -> np.ndarray:
    """Read an audio file as mono 24 kHz float32 `[N]`, explaining every change through `log`.

    Channels are averaged; other sample rates are resampled with soxr (HQ). Raises InputError for a
    missing/unreadable file, no samples, non-finite samples, or less than one 128-sample frame.
    """
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise InputError(f"input file not found: {path}")
    if not path.is_file():
        raise InputError(f"input is not a file: {path}")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # [N, channels]
    except (sf.SoundFileError, RuntimeError, OSError) as exc:
        raise InputError(f"cannot read audio from {path}: {str(exc).strip() or type(exc).__name__} "
                         "(not an audio file soundfile/libsndfile understands, or corrupt)") from exc
    if data.size == 0:
        raise InputError(f"{path} contains no audio samples")
    bad = int(np.count_nonzero(~np.isfinite(data)))
    if bad:
        raise InputError(f"{path} contains {bad} non-finite sample value(s) (NaN or inf) out of {data.size}; "
                         "refusing to convert it")
    if data.shape[1] > 1:
        log(f"input has {data.shape[1]} channels: mixed to mono (mean)")
    wav = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if sr != SAMPLE_RATE:
        import soxr

        log(f"input is {sr} Hz: resampled to {SAMPLE_RATE} Hz (soxr HQ)")
        wav = soxr.resample(wav, sr, SAMPLE_RATE, quality="HQ").astype(np.float32)
    if len(wav) < HOP:
        raise InputError(f"{path} is too short: {len(wav)} samples at {SAMPLE_RATE} Hz "
                         f"({1000 * len(wav) / SAMPLE_RATE:.2f} ms); at least one frame of {HOP} samples "
                         f"({1000 * HOP / SAMPLE_RATE:.2f} ms) is needed")
    peak = float(np.max(np.abs(wav)))
    if peak > 1.0:
        log(f"input peaks at {peak:.3f} (> 1.0): passed through unchanged (no normalisation, as official)")
    return np.ascontiguousarray(wav, dtype=np.float32)


def output_length(n_samples_24k: int) -> int:
    """Output samples for an input of `n_samples_24k` 24 kHz samples: `(N // 128) · 128`."""
    return n_samples_24k // HOP * HOP


# --------------------------------------------------------------------------------------------------
# Long files: slices with crossfades
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Slice:
    """One piece of a long file, in mel frames.

    `[start, stop)` is what gets converted (core plus context); `[core_start, core_stop)` is the part
    it owns. Consecutive cores meet at a boundary b; around it the outputs crossfade linearly over
    the 24 kHz samples `[128 b - half, 128 b + half)`.
    """

    start: int
    stop: int
    core_start: int
    core_stop: int


def plan_slices(n_frames: int, slice_frames: int, context_frames: int, crossfade_frames: int) -> list[Slice]:
    """Cut `n_frames` into ceil(n_frames / slice_frames) equal cores; each slice adds
    `context_frames + ceil(crossfade_frames / 2)` frames on both sides (clipped to the file).

    One slice (the whole file, exact) when `n_frames <= slice_frames`.
    """
    if n_frames < 1:
        raise ValueError(f"need at least one frame, got {n_frames}")
    if slice_frames < 2 * crossfade_frames or slice_frames < 1:
        raise ValueError(f"slices of {slice_frames} frames are too short for a {crossfade_frames}-frame crossfade")
    n = math.ceil(n_frames / slice_frames)
    bounds = [round(k * n_frames / n) for k in range(n + 1)]
    reach = context_frames + (crossfade_frames + 1) // 2
    return [Slice(max(0, a - reach), min(n_frames, b + reach), a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def slice_weights(piece: Slice, n_frames: int, half_samples: int) -> np.ndarray:
    """Crossfade weight of each output sample of `piece` (`[(stop - start) · 128]`, float32).

    Linear ramps of 2·half_samples centred on the boundaries; the weights of all slices sum to 1
    at every sample, and are 0 outside a slice's core ± half_samples."""
    n = np.arange(piece.start * HOP, piece.stop * HOP, dtype=np.float64) + 0.5  # sample centres

    def rise(boundary: int) -> np.ndarray:
        if half_samples == 0:
            return (n >= boundary * HOP).astype(np.float64)
        return np.clip((n - (boundary * HOP - half_samples)) / (2 * half_samples), 0.0, 1.0)

    w = np.ones_like(n)
    if piece.core_start > 0:
        w *= rise(piece.core_start)
    if piece.core_stop < n_frames:
        w *= 1.0 - rise(piece.core_stop)
    return w.astype(np.float32)


# --------------------------------------------------------------------------------------------------
# The converter
# --------------------------------------------------------------------------------------------------

@dataclass
class Converter:
    """Loaded networks + the official pipeline. Build with `Converter.load(...)`, run `convert`."""

    acoustic: LoadedModel
    vocoder: NSFHiFiGAN
    content: ContentEncoder
    pitch: PitchExtractor
    device: torch.device
    unit_mode: str

    @classmethod
    def load(cls, ckpt: str | os.PathLike, vocoder: str | os.PathLike, content: str | os.PathLike,
             config: str | os.PathLike | None = None, pitch: str = "dio",
             device: str | torch.device = "cpu") -> Converter:
        """Load everything (safely, see models.checkpoints). Raises InputError with the loader's
        message for any file that cannot be used, naming which option it came from."""
        device = torch.device(device)
        for option, path in (("--ckpt", ckpt), ("--vocoder", vocoder), ("--content", content)):
            if not os.path.exists(path):  # before load_official, which would first miss the config beside it
                raise InputError(f"{option}: file not found: {path}")
        with _loading("--ckpt/--config"):
            acoustic = load_official(ckpt, config, device=device)
        with _loading("--vocoder"):
            voc = load_vocoder(vocoder).to(device)
        with _loading("--content"):
            enc = load_content_encoder(content).to(device).eval()
        if enc.width != acoustic.model.units_dim:
            raise InputError(
                f"the content encoder ({content}) gives {enc.width}-dim units but the model expects "
                f"{acoustic.model.units_dim} (data.encoder_out_channels in its config)")
        with _loading("--pitch"):
            extractor = make_pitch_extractor(pitch, **({"device": str(device)} if pitch == "fcpe" else {}))
        mode = (acoustic.config.get("data") or {}).get("unit_interpolate_mode") or "left"
        if mode not in ("nearest", "left"):
            raise InputError(f"config data.unit_interpolate_mode={mode!r} is not supported (use 'nearest' or 'left')")
        return cls(acoustic, voc, enc, extractor, device, mode)

    # ------------------------------------------------------------------ settings
    @property
    def speakers(self) -> dict[str, int]:
        return self.acoustic.speakers

    def resolve_speaker(self, spec: str | int | None, log: Log = _silent) -> int | None:
        """Speaker name or id -> id (None for single-speaker models). Names win over ids (as official).

        Default (spec None): id 0. Raises InputError listing the known speakers."""
        n_spk = self.acoustic.model.n_spk
        names = {i: n for n, i in self.speakers.items()}
        known = ", ".join(f"{n} (id {i})" for n, i in sorted(self.speakers.items(), key=lambda kv: kv[1])) or "none named"
        if n_spk == 1:
            if spec is not None and str(spec) not in self.speakers and str(spec) != "0":
                raise InputError(f"unknown speaker {spec!r}: this is a single-speaker model (speakers: {known})")
            return None
        if spec is None:
            log(f"speaker: {names.get(0, '?')} (id 0, the default; the model has {n_spk}: {known})")
            return 0
        if str(spec) in self.speakers:
            return self.speakers[str(spec)]
        try:
            idx = int(str(spec))
        except ValueError:
            raise InputError(f"unknown speaker {spec!r}; known speakers: {known}") from None
        if not 0 <= idx < n_spk:
            raise InputError(f"speaker id {idx} is out of range 0..{n_spk - 1}; known speakers: {known}")
        return idx

    def is_teacher(self, teacher: bool | None) -> bool:
        return bool(teacher) or self.acoustic.kind == "teacher"

    # ------------------------------------------------------------------ pipeline
    def features(self, wav: np.ndarray, key: float) -> tuple[torch.Tensor, torch.Tensor]:
        """wav [N] 24 kHz -> (shifted f0 [1, T] Hz, volume [1, T]) on the device, T = N // 128."""
        f0 = shift_f0(np.asarray(self.pitch(wav), dtype=np.float32), float(key))
        volume = rms_volume(torch.from_numpy(wav)[None])
        return torch.from_numpy(f0.astype(np.float32))[None].to(self.device), volume.to(self.device)

    def content_audio(self, wav: np.ndarray) -> np.ndarray:
        """wav [N] 24 kHz -> the content encoder's input [N_c] (`ContentEncoder.encoder_input`: at its
        rate, 16 kHz soxr HQ for ContentVec; at least one window long)."""
        return self.content.encoder_input(wav)

    def units(self, content_in: np.ndarray, n_frames: int) -> torch.Tensor:
        """The whole file's units: content input [N_c] -> [1, n_frames, C] aligned to the mel frames."""
        units = self.content(torch.from_numpy(content_in)[None].to(self.device))
        return align_units(units, n_frames, self.unit_mode, self.content.frame_rate)

    def unit_index(self, content_in: np.ndarray, n_frames: int) -> np.ndarray:
        """Content frame that each mel frame takes when the whole file is aligned: [n_frames] int64."""
        n_content = self.content.num_frames(len(content_in))
        ramp = torch.arange(n_content, dtype=torch.float64)[None, :, None]
        return align_units(ramp, n_frames, self.unit_mode, self.content.frame_rate)[0, :, 0].long().numpy()

    def slice_units(self, content_in: np.ndarray, index: np.ndarray, a: int, b: int) -> torch.Tensor:
        """Units of mel frames [a, b) -> [1, b - a, C]: the same content frames as the whole-file
        alignment, computed from just the audio of those frames' windows (attention sees the slice)."""
        j0, j1 = int(index[a]), int(index[b - 1])
        hop, window = self.content.hop, self.content.window
        units = self.content(torch.from_numpy(content_in[j0 * hop:j1 * hop + window])[None].to(self.device))
        return units[:, torch.from_numpy(index[a:b] - j0).to(self.device)]

    def convert(self, wav: np.ndarray, key: float = 0.0, speaker: int | None = None, steps: int | None = None,
                teacher: bool | None = None, seed: int = 0, slice_seconds: float = DEFAULT_SLICE_SECONDS,
                progress: Callable[[int], None] | None = None, log: Log = _silent) -> np.ndarray:
        """wav [N] 24 kHz mono float32 -> converted wav [(N // 128) · 128] float32, 24 kHz.

        key: semitones; speaker: id (see resolve_speaker); steps: NFE (default 1 student / 50
        teacher); teacher: force the Euler teacher sampler (always used for teacher checkpoints);
        seed: all noise; slice_seconds: longer inputs are converted in crossfaded slices.
        progress(n) is called after every n units of work (see `work_units`)."""
        teacher = self.is_teacher(teacher)
        steps = steps if steps is not None else (DEFAULT_TEACHER_STEPS if teacher else DEFAULT_STUDENT_STEPS)
        if steps < 1:
            raise InputError(f"steps must be >= 1, got {steps}")
        n_frames = len(wav) // HOP
        if n_frames < 1:
            raise InputError(f"audio too short: {len(wav)} samples, need at least {HOP}")
        pieces = self.plan(n_frames, slice_seconds)
        tick = progress or (lambda n: None)

        with torch.inference_mode():
            f0, volume = self.features(wav, key)
            tick(1)
            gen = torch.Generator().manual_seed(int(seed))  # CPU generator: same noise on every device
            # drawn [1, 80, T] then transposed, as the official samplers do
            noise = torch.randn(1, N_MELS, n_frames, generator=gen).transpose(1, 2).to(self.device)
            renoise = None
            if not teacher and steps > 1:
                renoise = torch.randn(steps - 1, 1, n_frames, N_MELS, generator=gen).to(self.device)
            spk = None if speaker is None else torch.tensor([speaker], dtype=torch.long, device=self.device)
            content_in = self.content_audio(wav)
            index = self.unit_index(content_in, n_frames) if len(pieces) > 1 else None
            half = SLICE_CROSSFADE_SECONDS * SAMPLE_RATE / 2 if len(pieces) > 1 else 0
            out = np.zeros(n_frames * HOP, dtype=np.float32)
            def count_pass(*_: object) -> None:
                tick(1)   # returns None: a forward hook's non-None return would replace the decoder's output

            hook = self.acoustic.model.decoder.register_forward_hook(count_pass)
            try:
                for piece in pieces:
                    a, b = piece.start, piece.stop
                    if index is None:  # one piece: exactly the whole-file pipeline
                        units = self.units(content_in, n_frames)
                    else:
                        units = self.slice_units(content_in, index, a, b)
                    tick(1)
                    audio = self.render(units, a, b, f0, volume, spk, noise, renoise, steps, teacher, gen)
                    tick(1)
                    w = slice_weights(piece, n_frames, int(half)) if len(pieces) > 1 else 1.0
                    out[a * HOP:b * HOP] += audio * w
            finally:
                hook.remove()
        return out

    def render(self, units: torch.Tensor, a: int, b: int, f0: torch.Tensor, volume: torch.Tensor,
               spk: torch.Tensor | None, noise: torch.Tensor, renoise: torch.Tensor | None, steps: int,
               teacher: bool, gen: torch.Generator) -> np.ndarray:
        """Frames [a, b) of the file: units [1, b - a, C] (+ whole-file f0, volume, noise) -> mel ->
        audio [(b - a) · 128]."""
        mel = self.acoustic.model.infer_mel(
            units, f0[:, a:b], volume[:, a:b], spk, noise[:, a:b], steps=steps, teacher=teacher,
            renoise=None if renoise is None else renoise[:, :, a:b])
        n_harm = self.vocoder.n_harmonics
        phase = torch.zeros(1, n_harm, device=self.device)
        if a > 0:  # the sines continue where the previous frames left them
            phase = advance_phase(phase, f0[:, :a], HOP, SAMPLE_RATE)
        src_noise = torch.randn(1, (b - a) * HOP, n_harm, generator=gen).to(self.device)
        return self.vocoder(mel, f0[:, a:b], phase, src_noise)[0].float().cpu().numpy()

    def plan(self, n_frames: int, slice_seconds: float) -> list[Slice]:
        frame_rate = SAMPLE_RATE / HOP
        return plan_slices(n_frames, max(1, round(slice_seconds * frame_rate)),
                           round(SLICE_CONTEXT_SECONDS * frame_rate), round(SLICE_CROSSFADE_SECONDS * frame_rate))

    def work_units(self, n_samples: int, steps: int, slice_seconds: float) -> int:
        """Total of `progress` ticks for `convert`: features + per slice (content, steps NFE, vocoder)."""
        return 1 + len(self.plan(n_samples // HOP, slice_seconds)) * (steps + 2)


@contextmanager
def _loading(option: str) -> Iterator[None]:
    """Turn loader errors (bad/unsafe/mismatched files) into InputError naming the option."""
    try:
        yield
    except InputError:
        raise
    except (CheckpointError, VocoderConfigError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise InputError(f"{option}: {exc}") from exc
    except (ValueError, KeyError, TypeError) as exc:  # malformed configs/checkpoints the loaders did not name
        raise InputError(f"{option}: cannot use this file ({type(exc).__name__}: {exc})") from exc


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m models.infer",
        description="Convert a recording with a CoMoSVC checkpoint (reference offline converter, PyTorch).",
        epilog=(f"Output: mono 32-bit float audio (WAV unless the extension names another format) at {SAMPLE_RATE} Hz with exactly T*{HOP} samples, "
                f"T = floor(N / {HOP}), where N is the input length after resampling to {SAMPLE_RATE} Hz "
                f"(the last N mod {HOP} samples, under {1000 * HOP / SAMPLE_RATE:.1f} ms, are dropped). "
                "Any input sample rate is accepted and resampled (soxr HQ); several channels are mixed "
                "to mono. Exit codes: 0 ok, 2 usage/input error, 1 unexpected failure."),
    )
    p.add_argument("input", help="input audio file (WAV/FLAC/OGG…, any sample rate)")
    p.add_argument("output", help="output audio path (its folder must exist; the format follows the extension, "
                                  "32-bit float where it has it)")
    p.add_argument("--ckpt", required=True, help="official CoMoSVC checkpoint model_<step>.pt (student or teacher)")
    p.add_argument("--config", help="its config.yaml (default: config.yaml next to --ckpt)")
    p.add_argument("--vocoder", required=True, help="NSF-HiFiGAN checkpoint (M4Singer .ckpt or openvpi 'model'), "
                                                    "config beside it, or a harmonic-plus-noise hn_vocoder_<step>.ckpt")
    p.add_argument("--content", required=True, help="content encoder: ContentVec fairseq .pt, HF folder, or PPG .pt")
    p.add_argument("--steps", type=int, help=f"sampling steps (NFE); default {DEFAULT_STUDENT_STEPS} for the "
                                             f"student, {DEFAULT_TEACHER_STEPS} with the teacher sampler")
    p.add_argument("--teacher", action="store_true",
                   help="Euler teacher sampler (automatic for teacher checkpoints; on a student checkpoint it "
                        "runs the student's network, as the official code does)")
    p.add_argument("--key", type=float, default=0.0, help="pitch shift in semitones (default 0)")
    p.add_argument("--speaker", help="target speaker name or id (default: id 0)")
    p.add_argument("--pitch", default="dio", choices=sorted(EXTRACTORS), help="f0 extractor (default dio, official)")
    p.add_argument("--seed", type=int, default=0, help="seed of all sampling noise (default 0)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--slice-seconds", type=float, default=DEFAULT_SLICE_SECONDS,
                   help=f"inputs longer than this are converted in slices crossfaded over "
                        f"{SLICE_CROSSFADE_SECONDS} s (default {DEFAULT_SLICE_SECONDS:g}; minimum 1)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or notes")
    p.add_argument("-v", "--verbose", action="store_true", help="full traceback on errors")
    return p


def _check_args(args: argparse.Namespace) -> torch.device:
    if args.steps is not None and args.steps < 1:
        raise InputError(f"--steps must be >= 1, got {args.steps}")
    if not math.isfinite(args.key) or abs(args.key) > MAX_KEY:
        raise InputError(f"--key must be a finite number of semitones within ±{MAX_KEY:g}, got {args.key}")
    if not math.isfinite(args.slice_seconds) or args.slice_seconds < 1.0:
        raise InputError(f"--slice-seconds must be at least 1, got {args.slice_seconds}")
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be >= 1, got {args.threads}")
    try:
        device = torch.device(args.device)
    except (RuntimeError, ValueError) as exc:
        raise InputError(f"--device: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {args.device}: CUDA is not available in this torch build/machine")
    try:
        check_output_file(args.output, [args.input], audio=True)
    except OutputError as exc:
        raise InputError(str(exc)) from None
    return device


def _write(path: str, audio: np.ndarray) -> None:
    """Write `audio` atomically (temp file beside `path`, fsync, rename): never half a file."""
    try:
        with atomic_path(path) as temp, audio_writer(temp, path, SAMPLE_RATE) as out:
            out.write(audio)
    except OutputError as exc:
        raise InputError(str(exc)) from exc


def run(args: argparse.Namespace, log: Log) -> None:
    """The CLI body (raises InputError / anything else; `main` maps them to exit codes)."""
    device = _check_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    wav = load_audio(args.input, log)  # before the (slow) model loading: bad input fails fast
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        conv = Converter.load(args.ckpt, args.vocoder, args.content, args.config, args.pitch, device)
    for w in caught:
        log(f"warning: {w.message}")
    model = conv.acoustic
    teacher = conv.is_teacher(args.teacher)
    steps = args.steps or (DEFAULT_TEACHER_STEPS if teacher else DEFAULT_STUDENT_STEPS)
    if args.teacher and model.kind == "student":
        log("note: --teacher on a student checkpoint runs the Euler sampler with the student's online network "
            "(as the official code); pass the teacher checkpoint for the real teacher")
    log(f"model: {model.kind} (step {model.global_step}), {model.model.n_spk} speaker(s); sampler: "
        f"{'teacher Euler' if teacher else 'consistency'} with {steps} step(s); pitch {args.pitch}, "
        f"units '{conv.unit_mode}'; loaded in {time.perf_counter() - t0:.1f} s")
    speaker = conv.resolve_speaker(args.speaker, log)
    pieces = conv.plan(len(wav) // HOP, args.slice_seconds)
    if len(pieces) > 1:
        log(f"input is {len(wav) / SAMPLE_RATE:.1f} s long: converting in {len(pieces)} slices of about "
            f"{args.slice_seconds:g} s, crossfaded over {SLICE_CROSSFADE_SECONDS:g} s")

    from tqdm import tqdm

    t0 = time.perf_counter()
    with tqdm(total=conv.work_units(len(wav), steps, args.slice_seconds), desc="converting", unit="pass",
              file=sys.stderr, disable=args.quiet, leave=False) as bar:
        audio = conv.convert(wav, key=args.key, speaker=speaker, steps=steps, teacher=teacher, seed=args.seed,
                             slice_seconds=args.slice_seconds, progress=bar.update)
    elapsed = time.perf_counter() - t0
    _write(args.output, audio)
    seconds = len(audio) / SAMPLE_RATE
    log(f"wrote {args.output}: {seconds:.2f} s at {SAMPLE_RATE} Hz ({len(audio)} samples) in {elapsed:.1f} s "
        f"(real-time factor {elapsed / max(seconds, 1e-9):.3f})")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 2 usage/input error, 1 unexpected failure, 130 interrupted)."""
    def convert(args: argparse.Namespace) -> None:
        run(args, _silent if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True)))

    return run_command(argv, build_parser(), convert, (InputError,), "stopped: nothing was written")


if __name__ == "__main__":
    sys.exit(main())
