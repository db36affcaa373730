"""The one shape every dataset takes: an :class:`AnomalyTask`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch


def as_images(x, what: str = "images") -> torch.Tensor:
    """Images as the course wants them, from what a user has: a torch tensor or a numpy array of shape
    (N, C, H, W), either uint8 in [0, 255] (scaled to [-1, 1]) or floating point already in [-1, 1]
    (returned as float32). Anything else gets an error that says how to convert it."""
    if isinstance(x, np.ndarray):
        if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise TypeError(f"{what}: a numpy array of numbers is needed, got dtype {x.dtype}.")
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor or numpy array of shape (N, C, H, W), "
                        f"got {type(x).__name__}.")
    if x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        raise ValueError(f"{what} has shape {tuple(x.shape)}, which looks channels-last (N, H, W, C); the course "
                         "uses (N, C, H, W): pass x.permute(0, 3, 1, 2) (torch) or x.transpose(0, 3, 1, 2) (numpy).")
    if x.dtype == torch.uint8:
        x = x.float() / 127.5 - 1
    elif x.is_floating_point():
        x = x.float()
    else:
        raise TypeError(f"{what}: images must be uint8 in [0, 255] or floating point in [-1, 1]; got dtype "
                        f"{x.dtype}. Convert with x.astype(np.uint8), or scale to [-1, 1] as floats.")
    return check_images(x, what)


def check_images(x: torch.Tensor, what: str = "images") -> torch.Tensor:
    """Refuse anything but a float (N, C, H, W) tensor in [-1, 1], with a message that says how to fix it."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor of shape (N, C, H, W), got {type(x).__name__}.")
    if x.ndim != 4:
        raise ValueError(f"{what} must have shape (N, C, H, W); got shape {tuple(x.shape)}. "
                         "Add a batch or channel axis with x[None] or x[:, None].")
    if x.shape[0] == 0:
        raise ValueError(f"{what} is empty (N = 0): at least one image is needed.")
    if not x.is_floating_point():
        raise TypeError(f"{what} must be floating point in [-1, 1]; got dtype {x.dtype}. "
                        "Convert uint8 images with x.float() / 127.5 - 1.")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1.001 or hi > 1.001 or x.isnan().any():
        raise ValueError(f"{what} must lie in [-1, 1]; got values in [{lo:.3g}, {hi:.3g}]. "
                         "Scale [0, 1] images with 2 * x - 1.")
    return x


@dataclass
class AnomalyTask:
    """Normal training images, and labelled images to score (with, optionally, pixel masks).

    Images are float tensors (N, C, H, W) in [-1, 1]; labels are 1 for an anomaly, 0 for normal.
    `extent` says how much of an anomalous image is anomalous: "global" (another class, a corruption of
    the whole image) or "local" (a defect on part of a normal surface, as in MVTec-AD). A detector that
    turns a pixel map into an image score should match it (``anomaly_maps.image_score_from_map``).
    `images` are the labelled images, and `split` says which they are: the test images whose AUROC is
    reported ("test"), or validation images built from the dataset's training data alone, for choosing
    settings (``load_task(..., split="validation")``, :mod:`course_lib.data.validation`).
    """

    name: str                       # e.g. "digits/3" or "textures/brick"
    description: str                # one sentence a learner can read
    train: torch.Tensor             # (N, C, H, W) normal images only
    images: torch.Tensor            # (M, C, H, W) the labelled images: test or validation images (`split`)
    labels: torch.Tensor            # (M,) int64, 1 = anomaly
    masks: torch.Tensor | None = None  # (M, 1, H, W) bool, True = anomalous pixel
    kinds: list[str] = field(default_factory=list)  # (M,) anomaly type per labelled image, "normal" for normals
    extent: Literal["global", "local"] = "global"   # whole-image anomalies, or defects on part of an image
    split: Literal["test", "validation"] = "test"   # "validation": built from the training data alone

    def __post_init__(self):
        check_images(self.train, f"{self.name}: train")
        check_images(self.images, f"{self.name}: images")
        if self.train.shape[1:] != self.images.shape[1:]:
            raise ValueError(f"{self.name}: train images {tuple(self.train.shape[1:])} and labelled images "
                             f"{tuple(self.images.shape[1:])} differ in shape.")
        self.labels = torch.as_tensor(self.labels, dtype=torch.long)
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"{self.name}: labels has shape {tuple(self.labels.shape)}, "
                             f"expected ({len(self.images)},), one per labelled image.")
        found = set(self.labels.unique().tolist())
        if not found <= {0, 1}:
            raise ValueError(f"{self.name}: labels must be 0 (normal) or 1 (anomaly); found {sorted(found)}.")
        if found != {0, 1}:
            raise ValueError(f"{self.name}: the labelled images need both normal (0) and anomalous (1) ones to "
                             f"score a detector (AUROC); it has only label {found.pop()}.")
        if self.masks is not None:
            n, _, h, w = self.images.shape
            if tuple(self.masks.shape) != (n, 1, h, w):
                raise ValueError(f"{self.name}: masks has shape {tuple(self.masks.shape)}, "
                                 f"expected {(n, 1, h, w)}.")
            self.masks = self.masks.bool()
        if self.extent not in ("global", "local"):
            raise ValueError(f"{self.name}: extent must be 'global' (whole-image anomalies) or 'local' "
                             f"(defects on part of an image), got {self.extent!r}.")
        if self.split not in ("test", "validation"):
            raise ValueError(f"{self.name}: split must be 'test' or 'validation', got {self.split!r}.")
        if self.kinds and len(self.kinds) != len(self.images):
            raise ValueError(f"{self.name}: kinds has {len(self.kinds)} entries for {len(self.images)} images.")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.shape[1:])

    def __repr__(self) -> str:
        n_anom = int(self.labels.sum())
        c, h, w = self.image_shape
        return (f"AnomalyTask({self.name!r}: {len(self.train)} normal train, {len(self.images)} {self.split} "
                f"({n_anom} anomalous), {c}x{h}x{w}{', masks' if self.masks is not None else ''})")
