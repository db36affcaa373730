"""The detector contract shared by the baselines and the diffusion scores (pyod-style)."""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch

from .data.task import check_images


class Detector(ABC):
    """``fit(normal_images)`` returns self; ``score(images)`` returns one float per image,
    higher = more anomalous. ``nfe_per_image`` is the network evaluations one score costs
    (0 for methods without a network)."""

    name: str = "detector"
    nfe_per_image: int = 0

    def fit(self, images: torch.Tensor) -> "Detector":
        self._fit(check_images(images, f"{self.name}.fit: normal images"))
        self._shape = tuple(images.shape[1:])
        return self

    def score(self, images: torch.Tensor) -> np.ndarray:
        if not hasattr(self, "_shape"):
            raise RuntimeError(f"{self.name}: call fit(normal_images) before score(images).")
        check_images(images, f"{self.name}.score: images")
        if tuple(images.shape[1:]) != self._shape:
            raise ValueError(f"{self.name}: fitted on images of shape {self._shape}, "
                             f"asked to score shape {tuple(images.shape[1:])}.")
        return np.asarray(self._score(images), dtype=np.float64)

    @abstractmethod
    def _fit(self, images: torch.Tensor) -> None: ...

    @abstractmethod
    def _score(self, images: torch.Tensor) -> np.ndarray: ...
