"""Prepared items -> training batches, with resumable, seed-determined order and crops.

Keys passed to the datasets are `(index, epoch)`, so a crop depends only on (seed, epoch, index):
resuming at step s rebuilds exactly the batches of an uninterrupted run (see `StepBatches`).
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from models.audio import HOP, SAMPLE_RATE
from models.train.errors import TrainError


def read_list(work_dir: Path, which: str) -> list[str]:
    """Item names ('<speaker>/<item>') of filelists/<which>.txt."""
    path = work_dir / "filelists" / f"{which}.txt"
    if not path.is_file():
        raise TrainError(f"{path} is missing: run `python -m models.train prepare DATA_DIR {work_dir}` first")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_item(work_dir: Path, name: str, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    folder = work_dir / "data" / name
    try:
        return {k: np.load(folder / f"{k}.npy", allow_pickle=False) for k in keys}
    except (OSError, ValueError) as exc:
        raise TrainError(f"prepared item {folder} is unreadable ({exc}); delete its folder and the matching "
                         f"data/<speaker>/.done/*.json entry, then re-run prepare") from None


class _Items(Dataset):
    """Common part: item list, speaker ids, seeded crop offsets."""

    keys: tuple[str, ...] = ()

    def __init__(self, work_dir: Path, names: list[str], speakers: dict[str, int], seed: int) -> None:
        if not names:
            raise TrainError(f"{work_dir}: the item list is empty; prepare more audio")
        unknown = sorted({n.split("/")[0] for n in names} - set(speakers))
        if unknown:
            raise TrainError(f"speakers {unknown} in the item lists are not in the config's spk map")
        self.work_dir, self.names, self.speakers, self.seed = work_dir, names, speakers, seed

    def __len__(self) -> int:
        return len(self.names)

    def _rng(self, index: int, epoch: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch, index])

    def _speaker(self, index: int) -> int:
        return self.speakers[self.names[index].split("/")[0]]


class AcousticItems(_Items):
    """Crops of `frames` mel frames for the acoustic model; with probability `aug_prob` the key-shifted
    mel/volume, f0 · 2^(k/12) and k (spec §3).

    item -> units [T,C] (aligned to mel frames), f0 [T], volume [T], mel [T,80], speaker, keyshift."""

    keys = ("units", "f0", "volume", "mel", "aug_mel", "aug_vol", "aug")

    def __init__(self, work_dir: Path, names: list[str], speakers: dict[str, int], seed: int, frames: int,
                 aug_prob: float, unit_mode: str, content_rate: tuple[int, int]) -> None:
        super().__init__(work_dir, names, speakers, seed)
        self.frames, self.aug_prob, self.unit_mode, self.content_rate = frames, aug_prob, unit_mode, content_rate

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        from models.content import align_units

        index, epoch = key
        rng = self._rng(index, epoch)
        item = load_item(self.work_dir, self.names[index], self.keys)
        n = len(item["mel"])
        units = align_units(torch.from_numpy(item["units"])[None], n, self.unit_mode, self.content_rate)[0]
        use_aug = rng.random() < self.aug_prob
        shift = float(item["aug"][0]) if use_aug else 0.0
        mel = item["aug_mel"] if use_aug else item["mel"]
        vol = item["aug_vol"] if use_aug else item["volume"]
        f0 = item["f0"] * 2 ** (shift / 12)
        start = int(rng.integers(0, max(1, n - self.frames + 1)))
        sl = slice(start, start + self.frames)
        out = {"units": units[sl], "f0": torch.from_numpy(f0[sl].astype(np.float32)),
               "volume": torch.from_numpy(vol[sl].astype(np.float32)), "mel": torch.from_numpy(mel[sl].copy()),
               "speaker": torch.tensor(self._speaker(index)), "keyshift": torch.tensor(shift, dtype=torch.float32)}
        return _pad_frames(out, self.frames)


class VocoderItems(_Items):
    """Segments of `frames` frames: mel [T,80], f0 [T], audio [T·hop] (the same samples). With `mel_dir`
    the mel is the acoustic model's of the item (`<mel_dir>/<name>.npy`, models/train/generated_mels.py)
    instead of the recording's."""

    def __init__(self, work_dir: Path, names: list[str], speakers: dict[str, int], seed: int, frames: int,
                 mel_dir: Path | None = None) -> None:
        super().__init__(work_dir, names, speakers, seed)
        self.frames, self.mel_dir = frames, mel_dir

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        index, epoch = key
        item = vocoder_item(self.work_dir, self.names[index], self.mel_dir)
        n = len(item["mel"])
        start = int(self._rng(index, epoch).integers(0, max(1, n - self.frames + 1)))
        end = start + self.frames
        out = {"mel": torch.from_numpy(item["mel"][start:end].copy()),
               "f0": torch.from_numpy(item["f0"][start:end].astype(np.float32)),
               "audio": torch.from_numpy(item["audio"][start * HOP:end * HOP].copy())}
        if len(out["mel"]) < self.frames:  # short item: pad with silence-level mel and zeros
            pad = self.frames - len(out["mel"])
            out["mel"] = torch.cat([out["mel"], torch.full((pad, out["mel"].shape[1]), -5.0)])
            out["f0"] = torch.cat([out["f0"], out["f0"][-1:].expand(pad)])
            out["audio"] = torch.cat([out["audio"], torch.zeros(pad * HOP)])
        return out


def vocoder_item(work_dir: Path, name: str, mel_dir: Path | None = None) -> dict[str, np.ndarray]:
    """mel [T,80] (the recording's, or from `mel_dir`), f0 [T], uv [T], audio [T·hop] of a prepared item."""
    item = load_item(work_dir, name, ("mel", "f0", "uv", "audio"))
    if mel_dir is not None:
        item["mel"] = generated_mel(mel_dir, name, item["mel"].shape)
    return item


def generated_mel(mel_dir: Path, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """`<mel_dir>/<name>.npy` (models/train/generated_mels.py), which must have the recorded mel's `shape`."""
    path = mel_dir / f"{name}.npy"
    try:
        mel = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise TrainError(f"generated mel {path} is unreadable ({exc}); delete {mel_dir} to make them again") from None
    if mel.shape != shape:
        raise TrainError(f"generated mel {path} has shape {mel.shape}, the item's mel {shape}; "
                         f"delete {mel_dir} to make them again")
    return mel


def _pad_frames(item: dict[str, torch.Tensor], frames: int) -> dict[str, torch.Tensor]:
    """Pad frame-rate tensors of an item shorter than `frames` by repeating its last frame."""
    n = len(item["mel"])
    if n >= frames:
        return item
    for key in ("units", "f0", "volume", "mel"):
        t = item[key]
        item[key] = torch.cat([t, t[-1:].expand(frames - n, *t.shape[1:])])
    return item


class StepBatches:
    """Batches of dataset keys for steps start..: epoch e is DistributedSampler(seed).set_epoch(e),
    cut into batches of `batch_size` (the last partial one dropped); a run resumed at step s sees the
    same batches as one that never stopped."""

    def __init__(self, n_items: int, batch_size: int, rank: int, world: int, seed: int) -> None:
        self.sampler = DistributedSampler(range(n_items), num_replicas=world, rank=rank, shuffle=True, seed=seed)
        per_rank = len(self.sampler)
        if per_rank < 1:
            raise TrainError(f"{n_items} training item(s) cannot feed {world} processes")
        self.batch_size = min(batch_size, per_rank)  # tiny data sets still make progress
        self.per_epoch = per_rank // self.batch_size

    def epoch_batches(self, epoch: int) -> list[list[tuple[int, int]]]:
        self.sampler.set_epoch(epoch)
        order = list(self.sampler)
        b = self.batch_size
        return [[(i, epoch) for i in order[k * b:(k + 1) * b]] for k in range(self.per_epoch)]

    def from_step(self, step: int) -> Iterator[list[tuple[int, int]]]:
        epoch, offset = divmod(step, self.per_epoch)
        while True:
            yield from self.epoch_batches(epoch)[offset:]
            epoch, offset = epoch + 1, 0


def seconds_of_audio(work_dir: Path, names: list[str]) -> float:
    """Total duration of the prepared items (from the audio arrays' headers)."""
    total = 0
    for name in names:
        arr = np.load(work_dir / "data" / name / "audio.npy", mmap_mode="r", allow_pickle=False)
        total += arr.shape[0]
    return total / SAMPLE_RATE


def content_rate(cfg: dict[str, Any]) -> tuple[int, int]:
    """(hop, sample_rate) of the prepared units' frames (`prepare` records the encoder's)."""
    return int(cfg["data"]["encoder_hop_size"]), int(cfg["data"]["encoder_sample_rate"])


def item_tensors(work_dir: Path, cfg: dict[str, Any], name: str, device: torch.device | str = "cpu",
                 ) -> dict[str, torch.Tensor]:
    """A whole prepared item as a batch of one: units [1,T,C] (aligned), f0 [1,T], volume [1,T],
    mel [1,T,80], uv [1,T], audio [1,N], speaker [1] (id from cfg['spk'])."""
    from models.content import align_units

    item = load_item(work_dir, name, ("units", "f0", "uv", "volume", "mel", "audio"))
    n = len(item["mel"])
    out = {k: torch.from_numpy(item[k].astype(np.float32))[None] for k in ("f0", "uv", "volume", "mel", "audio")}
    out["units"] = align_units(torch.from_numpy(item["units"])[None], n, cfg["data"]["unit_interpolate_mode"],
                               content_rate(cfg))
    out["speaker"] = torch.tensor([cfg["spk"][name.split("/")[0]]])
    return {k: v.to(device) for k, v in out.items()}


def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}
