"""Training logs: scalars to WORK_DIR/logs/<stage>/metrics.csv (always: the record that resuming
keeps consistent), and to TensorBoard when it is installed; validation audio (WAV) and mel images
(PNG, matplotlib) under `val/step_<n>/` and in TensorBoard."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from models.audio import SAMPLE_RATE

METRICS = "metrics.csv"


class TrainLogger:
    """Only rank 0 creates one; `resume_at(step)` drops rows of steps after the checkpoint resumed from."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.csv_path = folder / METRICS
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # TensorBoard is optional: the CSV carries the scalars
            self.tb = None
        else:
            self.tb = SummaryWriter(str(folder / "tensorboard"))

    def resume_at(self, step: int) -> None:
        if not self.csv_path.exists():
            return
        rows = read_metrics(self.csv_path)
        tmp = self.csv_path.with_name(self.csv_path.name + ".tmp")   # a stop halfway keeps the old file
        with tmp.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["step", "name", "value"])
            writer.writerows((r["step"], r["name"], repr(r["value"])) for r in rows if r["step"] <= step)
        os.replace(tmp, self.csv_path)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        new = not self.csv_path.exists()
        with self.csv_path.open("a", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["step", "name", "value"])
            for name, value in values.items():
                writer.writerow([step, name, repr(float(value))])
                if self.tb is not None:
                    self.tb.add_scalar(name, float(value), step)

    def audio(self, step: int, tag: str, wav: np.ndarray) -> Path:
        import soundfile as sf

        path = self.folder / "val" / f"step_{step}" / f"{tag.replace('/', '_')}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), np.asarray(wav, dtype=np.float32), SAMPLE_RATE, subtype="FLOAT")
        if self.tb is not None:
            self.tb.add_audio(tag, np.asarray(wav, dtype=np.float32)[None], step, sample_rate=SAMPLE_RATE)
        return path

    def mel_image(self, step: int, tag: str, mels: dict[str, np.ndarray]) -> Path | None:
        """Mels [T, 80] side by side (one panel each) as a PNG; None when matplotlib is absent."""
        fig = mel_figure(mels)
        if fig is None:
            return None
        path = self.folder / "val" / f"step_{step}" / f"{tag.replace('/', '_')}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=80)
        if self.tb is not None:
            self.tb.add_figure(tag, fig, step)
        import matplotlib.pyplot as plt

        plt.close(fig)
        return path

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def mel_figure(mels: dict[str, np.ndarray]):
    """A matplotlib figure with one panel per mel [T, 80], or None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, len(mels), figsize=(4 * len(mels), 3), squeeze=False)
    for ax, (title, mel) in zip(axes[0], mels.items()):
        ax.imshow(np.asarray(mel).T, origin="lower", aspect="auto", vmin=-5, vmax=1.5)
        ax.set_title(title)
        ax.set_xlabel("frame")
    axes[0][0].set_ylabel("mel bin")
    fig.tight_layout()
    return fig


def read_metrics(path: Path) -> list[dict]:
    """Rows of a metrics.csv as {'step': int, 'name': str, 'value': float}."""
    with path.open(newline="", encoding="utf-8") as f:
        return [{"step": int(r["step"]), "name": r["name"], "value": float(r["value"])} for r in csv.DictReader(f)]
