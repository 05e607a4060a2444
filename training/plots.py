"""Per-epoch metrics: a CSV file and a PNG of the loss and mAP curves (matplotlib, Agg)."""

from __future__ import annotations

import csv
import logging
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .state import make_world_readable

logger = logging.getLogger(__name__)

METRIC_COLUMNS = (
    "epoch", "lr", "train_box", "train_obj", "train_cls", "train_loss",
    "val_box", "val_obj", "val_cls", "val_loss", "map50", "map50_95", "fitness",
    "epoch_time_s", "train_images_per_s", "ignored_obj_cells",
)
"""Columns of ``metrics.csv``; losses are per image (gained), mAP in [0, 1]; empty when an
epoch was not validated."""


def _atomic_write_text(path: Path, text: str) -> None:
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(handle, "w", newline="") as out:
        out.write(text)
    make_world_readable(tmp)
    os.replace(tmp, path)


def write_metrics_csv(path: Path, rows: Sequence[dict]) -> None:
    """Rewrite ``path`` with ``rows`` (the whole history: a resumed run rewrites it exactly)."""
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in METRIC_COLUMNS})
    _atomic_write_text(Path(path), buffer.getvalue())


def plot_metrics(path: Path, rows: Sequence[dict]) -> None:
    """Save a 2x3 grid: train/val box, objectness and class losses; mAP@0.5; mAP@0.5:0.95;
    learning rate, against the epoch."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt

    epochs = [r["epoch"] for r in rows]
    panels = [("box loss", ("train_box", "val_box")), ("objectness loss", ("train_obj", "val_obj")),
              ("class loss", ("train_cls", "val_cls")), ("mAP@0.5", ("map50",)),
              ("mAP@0.5:0.95", ("map50_95",)), ("learning rate", ("lr",))]
    fig, axes = plt.subplots(2, 3, figsize=(12, 6), tight_layout=True)
    for ax, (title, keys) in zip(axes.ravel(), panels):
        for key in keys:
            points = [(e, r.get(key)) for e, r in zip(epochs, rows)
                      if r.get(key) is not None and math.isfinite(r[key])]
            if points:
                ax.plot(*zip(*points), marker=".", label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if len(keys) > 1:
            ax.legend()
    handle, tmp = tempfile.mkstemp(prefix=f".{Path(path).name}.", suffix=".png", dir=Path(path).parent)
    os.close(handle)
    try:
        fig.savefig(tmp, dpi=100)
        make_world_readable(tmp)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
