"""Loss curves of a training run, drawn to PNG bytes (matplotlib's Agg canvas: no display needed)."""

from __future__ import annotations

import io
from collections.abc import Mapping

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def plot_loss_curves(curves: Mapping[str, pd.DataFrame], title: str, loss_label: str = "L1 loss (scaled)") -> bytes:
    """Return a PNG of training and validation loss per epoch, one colour per model.

    Parameters
    ----------
    curves : mapping
        Model name → per-epoch frame with ``epoch``, ``train_loss`` and ``val_mae``.
    title : str
        Figure title.
    loss_label : str
        Y-axis label.
    """
    figure = Figure(figsize=(8, 4.5), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for index, (name, frame) in enumerate(curves.items()):
        colour = f"C{index}"
        if "train_loss" in frame and frame["train_loss"].notna().any():
            axes.plot(frame["epoch"] + 1, frame["train_loss"], color=colour, linestyle="-", marker=".", label=f"{name} train")
        if "val_mae" in frame and frame["val_mae"].notna().any():
            axes.plot(frame["epoch"] + 1, frame["val_mae"], color=colour, linestyle="--", marker=".", label=f"{name} validation")
    axes.set_xlabel("epoch")
    axes.set_ylabel(loss_label)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
