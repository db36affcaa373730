"""Figures the notebooks share: image grids, ROC curves, anomaly maps, score histograms."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch


def set_style() -> None:
    """The course's plot style: seaborn's whitegrid at notebook scale, 90 dpi."""
    import seaborn as sns
    sns.set_theme(context="notebook", style="whitegrid")
    plt.rcParams["figure.dpi"] = 90


def to_display(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) or (N, H, W) floats in [0, 1] for imshow."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
    return x[..., 0] if x.shape[-1] == 1 else x


def image_grid(images: torch.Tensor, nrow: int = 8, pad: int = 1) -> np.ndarray:
    """Tile a batch into one (H', W'[, C]) array with `nrow` images per row and white padding."""
    x = to_display(images)
    n, h, w = x.shape[:3]
    ncol = min(nrow, n)
    rows = -(-n // ncol)
    shape = (rows * (h + pad) + pad, ncol * (w + pad) + pad) + x.shape[3:]
    grid = np.ones(shape, dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, ncol)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = x[i]
    return grid


def show_images(images: torch.Tensor, nrow: int = 8, title: str | None = None, ax=None, scale: float = 1.0):
    """Show a batch as one grid; returns the axis."""
    grid = image_grid(images, nrow=nrow)
    if ax is None:
        h, w = grid.shape[:2]
        _, ax = plt.subplots(figsize=(scale * max(2.0, w / 40), scale * max(1.5, h / 40)))
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def plot_roc(labels, scores: Mapping[str, Sequence[float]], ax=None, title: str = "ROC"):
    """One ROC curve per named score, AUROC in the legend, the chance diagonal dashed."""
    from sklearn.metrics import roc_curve

    from .metrics import auroc
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 4))
    for name, s in scores.items():
        fpr, tpr, _ = roc_curve(np.asarray(labels), np.asarray(s))
        ax.plot(fpr, tpr, label=f"{name} (AUROC {auroc(labels, s):.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize="small")
    return ax


def plot_score_hist(labels, scores, ax=None, title: str = "scores", threshold: float | None = None):
    """Histograms of the scores of normal and anomalous test images, optionally with a threshold line."""
    labels, scores = np.asarray(labels), np.asarray(scores)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    bins = np.histogram_bin_edges(scores, bins=30)
    ax.hist(scores[labels == 0], bins=bins, alpha=0.6, label="normal", color="tab:blue")
    ax.hist(scores[labels == 1], bins=bins, alpha=0.6, label="anomaly", color="tab:red")
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", label="threshold")
    ax.set(xlabel="anomaly score (higher = more anomalous)", ylabel="count", title=title)
    ax.legend(fontsize="small")
    return ax


def show_anomaly_maps(images: torch.Tensor, maps: torch.Tensor, masks: torch.Tensor | None = None,
                      n: int = 6, title: str | None = None):
    """Rows: image, anomaly map, (ground-truth mask). One column per image."""
    n = min(n, len(images))
    rows = 3 if masks is not None else 2
    fig, axes = plt.subplots(rows, n, figsize=(1.6 * n, 1.6 * rows), squeeze=False)
    disp = to_display(images[:n])
    for i in range(n):
        axes[0, i].imshow(disp[i], cmap="gray" if disp.ndim == 3 else None, vmin=0, vmax=1)
        axes[1, i].imshow(maps[i].detach().cpu().float().squeeze(0).numpy(), cmap="inferno")
        if masks is not None:
            axes[2, i].imshow(masks[i].detach().cpu().float().squeeze(0).numpy(), cmap="gray", vmin=0, vmax=1)
    for ax in axes.ravel():
        ax.set_axis_off()
    for r, name in enumerate(["image", "anomaly map", "ground truth"][:rows]):
        axes[r, 0].text(-0.1, 0.5, name, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
