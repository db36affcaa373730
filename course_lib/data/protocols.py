"""Evaluation protocols and the small image helpers every loader shares.

Two protocols turn a labelled, multi-class dataset into an anomaly-detection task:

- ``one-class``: class k is normal, every other class is an anomaly (Ruff et al. 2018,
  "Deep One-Class Classification"; the standard for CIFAR-10, MNIST, Mini-ImageNet).
- ``leave-one-class-out``: every class but k is normal, class k is the anomaly
  (Ahmed & Courville 2020, "Detecting semantic anomalies").

Sizes, for both: at most ``n_train`` normal training images; a balanced test set of
``n_test // 2`` normal and as many anomalous images (so AUROC and AUPRC are read on the same footing
in both protocols). Within each half, classes keep their natural proportion: images are drawn
uniformly from the pool of that half. When a pool is too small (sklearn digits have ~90 test images
per class), both halves shrink to the smaller pool, so the test set stays balanced.
"""
from __future__ import annotations

from typing import Callable, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F

Protocol = Literal["one-class", "leave-one-class-out"]
PROTOCOLS: tuple[str, ...] = ("one-class", "leave-one-class-out")


def check_protocol(protocol: str, dataset: str, allowed: Sequence[str] = PROTOCOLS) -> str:
    """Return `protocol` if `dataset` supports it, else a ValueError that lists what it supports."""
    if protocol not in allowed:
        extra = ("" if tuple(allowed) == PROTOCOLS else
                 f" {dataset} has its own fixed train/test split, so only the default applies.")
        raise ValueError(f"{dataset}: unknown or unsupported protocol {protocol!r}; "
                         f"valid: {', '.join(repr(p) for p in allowed)}.{extra}")
    return protocol


def normal_classes(protocol: str, k: int, n_classes: int) -> list[int]:
    """The normal classes: [k] under one-class, all but k under leave-one-class-out."""
    if protocol == "one-class":
        return [k]
    return [c for c in range(n_classes) if c != k]


def to_unit_range(x: np.ndarray | torch.Tensor, max_value: float) -> torch.Tensor:
    """Map values in [0, max_value] (uint8 images: 255) to float32 in [-1, 1]."""
    x = torch.tensor(np.asarray(x), dtype=torch.float32)  # a copy: inputs may be read-only memmaps
    return (x / max_value * 2.0 - 1.0).clamp_(-1.0, 1.0)


def resize(x: torch.Tensor, size: int, *, mode: str = "bilinear") -> torch.Tensor:
    """Resize (N, C, H, W) to (N, C, size, size); bilinear with antialias (or nearest, for masks)."""
    if x.shape[-2:] == (size, size):
        return x
    if mode == "nearest":
        return F.interpolate(x.float(), size=(size, size), mode="nearest").to(x.dtype)
    y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return y.clamp_(-1.0, 1.0)


def take(rng: np.random.Generator, pool: np.ndarray, n: int) -> np.ndarray:
    """min(n, len(pool)) distinct elements of `pool`, in random order."""
    n = min(int(n), len(pool))
    return pool[rng.permutation(len(pool))[:n]]


def split_halves(labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split indices 0..N-1 into two disjoint halves, stratified by label (first half gets the extra)."""
    first, second = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        h = (len(idx) + 1) // 2
        first.append(idx[:h])
        second.append(idx[h:])
    return np.sort(np.concatenate(first)), np.sort(np.concatenate(second))


def select_by_class(train_labels: np.ndarray, test_labels: np.ndarray, normal: Sequence[int],
                    n_train: int, n_test: int, rng: np.random.Generator,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pick indices for a protocol from labelled pools.

    Returns (train_idx into the train pool, test_idx into the test pool, labels (M,) 1 = anomaly).
    The test set is shuffled; normal train images come only from `normal` classes.
    """
    is_normal_tr = np.isin(train_labels, normal)
    is_normal_te = np.isin(test_labels, normal)
    train_idx = take(rng, np.flatnonzero(is_normal_tr), n_train)
    n_half = min(n_test // 2, int(is_normal_te.sum()), int((~is_normal_te).sum()))
    norm_idx = take(rng, np.flatnonzero(is_normal_te), n_half)
    anom_idx = take(rng, np.flatnonzero(~is_normal_te), n_half)
    test_idx = np.concatenate([norm_idx, anom_idx])
    labels = np.concatenate([np.zeros(len(norm_idx), np.int64), np.ones(len(anom_idx), np.int64)])
    order = rng.permutation(len(test_idx))
    return train_idx, test_idx[order], labels[order]


def sample_by_class(draw: Callable[[int, str, int], torch.Tensor], n_classes: int, normal: Sequence[int],
                    n_train: int, n_test: int, rng: np.random.Generator,
                    ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """The same protocol for generated datasets (crops of photos): ``draw(cls, split, n)`` makes
    n images of class `cls` from the "train" or "test" region. Classes are drawn uniformly within
    each half. Returns (train, test, labels (M,), test classes (M,))."""
    normal = list(normal)
    anomalous = [c for c in range(n_classes) if c not in normal]

    def draw_many(classes: list[int], split: str, n: int) -> tuple[torch.Tensor, np.ndarray]:
        cls = np.sort(rng.choice(classes, size=n))
        parts = [draw(int(c), split, int((cls == c).sum())) for c in classes if (cls == c).any()]
        return torch.cat(parts), cls

    train, _ = draw_many(normal, "train", n_train)
    x_norm, c_norm = draw_many(normal, "test", n_test // 2)
    x_anom, c_anom = draw_many(anomalous, "test", n_test // 2)
    test = torch.cat([x_norm, x_anom])
    labels = np.concatenate([np.zeros(len(x_norm), np.int64), np.ones(len(x_anom), np.int64)])
    classes = np.concatenate([c_norm, c_anom])
    order = rng.permutation(len(test))
    return train[torch.as_tensor(rng.permutation(len(train)))], test[torch.as_tensor(order)], \
        labels[order], classes[order]


def kinds_from_classes(labels: np.ndarray, classes: np.ndarray, names: Sequence[str]) -> list[str]:
    """One string per test image: "normal" for normals, else the name of its class."""
    return ["normal" if lab == 0 else str(names[int(c)]) for lab, c in zip(labels, classes)]


def equal_shares(names: Sequence[str], n: int, rng: np.random.Generator) -> list[str]:
    """n names, each of `names` used n / len(names) times (up to one), in random order."""
    return [str(names[i]) for i in rng.permutation(np.arange(n) % len(names))]
