"""`prepare DATA_DIR WORK_DIR`: audio folders -> sliced, normalised 24 kHz items with features (spec §1-§3, §9.3).

DATA_DIR/<speaker>/*.{wav,flac,ogg,mp3}. Each source file is decoded (mono, resampled to 24 kHz),
cut at silences (runs below `data.silence_db` of at least `data.min_silence_ms`, keeping
`data.keep_silence_ms` each side; long pieces split to at most `data.slice_seconds`), loudness
normalised (RMS to `data.target_rms_db`, peak capped at `data.peak`; null = the official peak
normalisation only) and turned into one item folder per slice:

    WORK_DIR/data/<speaker>/<stem>-<k>/  audio.npy [N] f32 · units.npy [T_c, C] (content frames at the
        encoder's rate: 50 Hz for ContentVec, one per mel frame for the PPG's "mel" framing)
        f0.npy [T] Hz (unvoiced interpolated) · uv.npy [T] · volume.npy [T] · mel.npy [T, 80]
        aug_mel.npy [T, 80] · aug_vol.npy [T] · aug.npy [keyshift semitones, log10 gain]

Only `.npy` files (no pickles). A source file is finished when `data/<speaker>/.done/<stem>.json`
exists; a rerun skips it. Unreadable or too-short files are named, skipped and listed at the end
(and in WORK_DIR/skipped.txt). Train/validation lists go to WORK_DIR/filelists/.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.audio import HOP, SAMPLE_RATE
from models.train.config import (CONFIG_NAME, apply_overrides, check_content_right_context, default_config, load_config,
                                 validate, write_config)
from models.train.errors import TrainError

FEATURES = ("audio", "units", "f0", "uv", "volume", "mel", "aug_mel", "aug_vol", "aug")
DONE_DIR = ".done"
_FRAME_MS = 20  # silence detector window (hop = half)


@dataclass
class FileResult:
    speaker: str
    source: str
    items: list[str]
    skipped: str = ""  # reason, when the file was skipped


# --------------------------------------------------------------------------------------------------
# Slicing and normalisation (pure numpy)
# --------------------------------------------------------------------------------------------------

def slice_on_silence(wav: np.ndarray, cfg: dict[str, Any]) -> list[np.ndarray]:
    """wav [N] 24 kHz -> non-silent pieces [n_i], each at most `data.slice_seconds` long and at least
    `data.min_seconds` (shorter pieces are dropped)."""
    data = cfg["data"]
    win = SAMPLE_RATE * _FRAME_MS // 1000
    hop = win // 2
    n_frames = max(1, 1 + (len(wav) - win) // hop) if len(wav) >= win else 1
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(wav, (0, max(0, win - len(wav)))), win)[::hop][:n_frames]
    db = 20 * np.log10(np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1)) + 1e-10)
    loud = db > float(data["silence_db"])
    min_silence = max(1, int(data["min_silence_ms"]) * SAMPLE_RATE // 1000 // hop)
    keep = int(data["keep_silence_ms"]) * SAMPLE_RATE // 1000
    # a split point is the middle of every silent run that is long enough
    spans: list[tuple[int, int]] = []
    start: int | None = None
    silent_run = 0
    for i, is_loud in enumerate(loud):
        if is_loud:
            if start is None:
                start = i
            silent_run = 0
        elif start is not None:
            silent_run += 1
            if silent_run >= min_silence:
                spans.append((start, i - silent_run + 1))
                start, silent_run = None, 0
    if start is not None:
        spans.append((start, len(loud) - silent_run))
    max_len = int(float(data["slice_seconds"]) * SAMPLE_RATE)
    min_len = int(float(data["min_seconds"]) * SAMPLE_RATE)
    pieces: list[np.ndarray] = []
    for a, b in spans:
        lo = max(0, a * hop - keep)
        hi = min(len(wav), b * hop + win + keep)
        n_parts = -(-(hi - lo) // max_len)
        bounds = np.linspace(lo, hi, n_parts + 1).astype(int)
        pieces += [wav[s:e] for s, e in zip(bounds[:-1], bounds[1:]) if e - s >= min_len]
    return pieces


def normalise_loudness(wav: np.ndarray, target_rms_db: float | None, peak: float) -> np.ndarray:
    """RMS to `target_rms_db` dBFS with the peak capped at `peak`; None = official peak normalisation
    (wav / (1e-5 + max|wav|) · peak). [N] -> [N] float32."""
    wav = wav.astype(np.float64)
    if target_rms_db is None:
        return (wav / (1e-5 + np.max(np.abs(wav))) * peak).astype(np.float32)
    rms = np.sqrt(np.mean(wav ** 2)) + 1e-10
    wav = wav * (10 ** (target_rms_db / 20) / rms)
    top = np.max(np.abs(wav))
    if top > peak:
        wav = wav * (peak / top)
    return wav.astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Features (one worker process holds one content encoder and one pitch extractor)
# --------------------------------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(cfg: dict[str, Any]) -> None:
    import torch

    from models.content import load_content_encoder
    from models.pitch import make_pitch_extractor

    torch.set_num_threads(1)  # processes are the parallelism
    _WORKER["cfg"] = cfg
    _WORKER["content"] = load_content_encoder(cfg["content"]["path"]).eval()
    _WORKER["pitch"] = make_pitch_extractor(cfg["data"]["f0_extractor"])


def item_features(wav: np.ndarray, name: str) -> dict[str, np.ndarray]:
    """One slice wav [N] 24 kHz -> every feature of FEATURES (uses the worker's encoder/extractor)."""
    import torch

    from models.audio import mel_spectrogram, rms_volume

    cfg, encoder, pitch = _WORKER["cfg"], _WORKER["content"], _WORKER["pitch"]
    n = len(wav) // HOP * HOP
    wav = np.ascontiguousarray(wav[:n], dtype=np.float32)
    x = torch.from_numpy(wav)[None]
    with torch.no_grad():
        units = encoder(torch.from_numpy(encoder.encoder_input(wav))[None])[0].numpy()
        mel = mel_spectrogram(x)[0].numpy()
        volume = rms_volume(x)[0].numpy()
        # key-shift augmentation, precomputed once per item (spec §3)
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        k = float(rng.uniform(-cfg["data"]["keyshift_range"], cfg["data"]["keyshift_range"]))
        max_amp = float(np.max(np.abs(wav))) + 1e-5
        g = float(rng.uniform(-1.0, min(1.0, np.log10(1.0 / max_amp))))
        aug = x * 10 ** g
        aug_mel = mel_spectrogram(aug, keyshift=k)[0].numpy()
        aug_vol = rms_volume(aug)[0].numpy()
    raw, _ = pitch.raw(wav)
    f0, uv = pitch.fill(raw)
    return {"audio": wav, "units": units.astype(np.float32), "f0": f0, "uv": uv, "volume": volume,
            "mel": mel, "aug_mel": aug_mel, "aug_vol": aug_vol, "aug": np.array([k, g], dtype=np.float32)}


def _process_file(speaker: str, source: str, out_dir: str) -> FileResult:
    """Decode, slice, normalise and featurise one source file; items are written atomically."""
    from models.infer import InputError, load_audio

    cfg = _WORKER["cfg"]
    src = Path(source)
    try:
        wav = load_audio(src)
    except InputError as exc:
        return FileResult(speaker, source, [], skipped=str(exc))
    pieces = slice_on_silence(wav, cfg)
    if not pieces:
        return FileResult(speaker, source, [], skipped=(
            f"{src}: no non-silent piece of at least {cfg['data']['min_seconds']} s "
            f"(too short or too quiet; threshold {cfg['data']['silence_db']} dBFS)"))
    spk_dir = Path(out_dir) / speaker
    names = []
    for k, piece in enumerate(pieces):
        piece = normalise_loudness(piece, cfg["data"]["target_rms_db"], float(cfg["data"]["peak"]))
        name = f"{src.stem}-{k:03d}"
        feats = item_features(piece, f"{speaker}/{name}")
        tmp = spk_dir / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for key, value in feats.items():
            np.save(tmp / f"{key}.npy", value, allow_pickle=False)
        final = spk_dir / name
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        names.append(name)
    done = spk_dir / DONE_DIR / f"{src.stem}.json"
    done.parent.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps({"source": str(src), "items": names}), encoding="utf-8")
    return FileResult(speaker, source, names)


def _run_one(args: tuple[str, str, str]) -> FileResult:
    speaker, source, out_dir = args
    try:
        return _process_file(speaker, source, out_dir)
    except Exception as exc:  # noqa: BLE001 - any failure of one file is named and the others go on
        return FileResult(speaker, source, [], skipped=f"{source}: {type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------------

def scan(data_dir: Path, extensions: list[str]) -> dict[str, list[Path]]:
    """{speaker: sorted audio files} from DATA_DIR/<speaker>/*.<ext>."""
    if not data_dir.is_dir():
        raise TrainError(f"DATA_DIR {data_dir} is not a folder (expected one sub-folder of audio per speaker)")
    exts = {"." + e.lower().lstrip(".") for e in extensions}
    found = {d.name: sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in exts)
             for d in sorted(data_dir.iterdir()) if d.is_dir() and not d.name.startswith(".")}
    found = {k: v for k, v in found.items() if v}
    if not found:
        raise TrainError(f"DATA_DIR {data_dir} has no speaker folders with audio files "
                         f"({', '.join(sorted(exts))}); expected DATA_DIR/<speaker>/<file>")
    return found


def _config_for(work_dir: Path, content: str | None, f0: str | None, preset: str,
                overrides: list[str]) -> dict[str, Any]:
    """The existing WORK_DIR config (its feature settings must not change), or a new one."""
    path = work_dir / CONFIG_NAME
    if path.exists():
        cfg = load_config(path, overrides)
        for label, given, stored in (("--content", content, cfg["content"]["path"]),
                                     ("--f0", f0, cfg["data"]["f0_extractor"])):
            if given is not None and str(given) != str(stored):
                raise TrainError(f"{label} {given} differs from {stored} used for the features already in "
                                 f"{work_dir}; use a new WORK_DIR (nothing there was changed)")
        return cfg
    cfg = default_config(preset)
    if content is None:
        raise TrainError("--content is required on the first run: a ContentVec checkpoint (fairseq .pt or HF "
                         "folder) or a PPG encoder .pt")
    cfg["content"]["path"] = str(Path(content).resolve())
    if f0 is not None:
        cfg["data"]["f0_extractor"] = f0
    return validate(apply_overrides(cfg, overrides), "the new config")


def _describe_encoder(cfg: dict[str, Any]) -> None:
    from models.checkpoints import CheckpointError
    from models.content import load_content_encoder

    try:
        enc = load_content_encoder(cfg["content"]["path"])
    except (CheckpointError, OSError, ValueError) as exc:
        raise TrainError(f"cannot load the content encoder {cfg['content']['path']}: {exc}") from None
    cfg["content"]["kind"] = enc.kind
    rf = enc.receptive_field
    check_content_right_context(cfg, None if rf is None else int(rf[1]))
    cfg["data"]["encoder"] = "vec768l12" if enc.kind == "contentvec" else enc.kind
    cfg["data"]["encoder_out_channels"] = int(enc.width)
    cfg["data"]["encoder_hop_size"], cfg["data"]["encoder_sample_rate"] = (int(v) for v in enc.frame_rate)


def split_items(items: dict[str, list[str]], val_per_speaker: int, seed: int) -> tuple[list[str], list[str]]:
    """Per speaker, `val_per_speaker` items (seeded choice, at least one left for training) -> (train, val)."""
    train, val = [], []
    for speaker, names in sorted(items.items()):
        names = sorted(names)
        rng = np.random.default_rng([seed, zlib.crc32(speaker.encode())])
        n_val = min(val_per_speaker, len(names) - 1)
        chosen = set(rng.choice(len(names), size=n_val, replace=False).tolist()) if n_val > 0 else set()
        for i, name in enumerate(names):
            (val if i in chosen else train).append(f"{speaker}/{name}")
    return train, val


def prepare(data_dir: str | os.PathLike, work_dir: str | os.PathLike, content: str | None = None,
            f0: str | None = None, preset: str = "official", workers: int = 1, overrides: list[str] | None = None,
            quiet: bool = False) -> dict[str, Any]:
    """Run the preparation; returns {'items': n, 'train': n, 'val': n, 'skipped': [reasons]}."""
    from tqdm import tqdm

    data_dir, work_dir = Path(data_dir), Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    cfg = _config_for(work_dir, content, f0, preset, overrides or [])
    _describe_encoder(cfg)
    sources = scan(data_dir, cfg["data"]["extensions"])
    out_dir = work_dir / "data"
    todo, items = [], {spk: [] for spk in sources}
    for spk, files in sources.items():
        for path in files:
            done = out_dir / spk / DONE_DIR / f"{path.stem}.json"
            if done.is_file():
                items[spk] += json.loads(done.read_text(encoding="utf-8"))["items"]
            else:
                todo.append((spk, str(path), str(out_dir)))
    skipped: list[str] = []
    with tqdm(total=len(todo), desc="prepare", unit="file", disable=quiet, file=sys.stderr) as bar:
        if workers <= 1:
            _init_worker(cfg)
            results = (_run_one(t) for t in todo)
            pool = None
        else:
            pool = ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(cfg,))
            results = pool.map(_run_one, todo)
        try:
            for res in results:
                if res.skipped:
                    skipped.append(res.skipped)
                items[res.speaker] += res.items
                bar.update()
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
    items = {spk: names for spk, names in items.items() if names}
    if not items:
        raise TrainError(f"no usable audio in {data_dir}: every file was skipped ({len(skipped)}): "
                         + "; ".join(skipped[:5]))
    # speaker ids: existing ones kept, new speakers appended in name order
    spk_map = dict(cfg.get("spk") or {})
    for spk in sorted(items):
        spk_map.setdefault(spk, len(spk_map))
    cfg["spk"] = spk_map
    cfg["model"]["n_spk"] = len(spk_map)
    train, val = split_items(items, int(cfg["data"]["val_per_speaker"]), int(cfg["train"]["seed"]))
    lists = work_dir / "filelists"
    lists.mkdir(exist_ok=True)
    (lists / "train.txt").write_text("".join(f"{x}\n" for x in train), encoding="utf-8")
    (lists / "val.txt").write_text("".join(f"{x}\n" for x in val), encoding="utf-8")
    (work_dir / "skipped.txt").write_text("".join(f"{s}\n" for s in skipped), encoding="utf-8")
    write_config(cfg, work_dir / CONFIG_NAME)
    return {"items": len(train) + len(val), "train": len(train), "val": len(val), "skipped": skipped,
            "speakers": spk_map}
