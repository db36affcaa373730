"""Detectors from pyod on flattened, standardized pixels: the paper's three classical baselines
(Isolation Forest, One-Class SVM, COPOD) and three that a practitioner would try next: k nearest
neighbours, and two deep detectors that train from scratch on the pixels (pyod's AutoEncoder, whose
score is the reconstruction error, and Deep SVDD, the distance to a learned centre, Ruff et al. 2018).

Each wraps a pyod model behind the course's detector contract (:class:`course_lib.detector.Detector`):
``fit(normal_images)`` then ``decision_function(images)``, higher = more anomalous.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler

from .detector import Detector

BaselineName = Literal["iforest", "ocsvm", "copod", "knn", "autoencoder", "deepsvdd"]
BASELINES: tuple[str, ...] = ("iforest", "ocsvm", "copod")             # the paper's
STRONGER_BASELINES: tuple[str, ...] = ("knn", "autoencoder", "deepsvdd")  # what a practitioner tries next
ALL_BASELINES: tuple[str, ...] = BASELINES + STRONGER_BASELINES


def flatten_pixels(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) tensor -> (N, C*H*W) float64 array: every pixel becomes one feature."""
    return images.detach().reshape(len(images), -1).cpu().double().numpy()


class PixelBaseline(Detector):
    """A pyod detector on standardized pixels; the scaler is fitted on the normal images only."""

    def __init__(self, name: BaselineName = "iforest", seed: int = 0, contamination: float = 0.1,
                 threshold_split: float = 0.2):
        if name not in ALL_BASELINES:
            raise ValueError(f"Unknown baseline {name!r}; valid baselines: {', '.join(ALL_BASELINES)}.")
        self.name, self.seed, self.contamination, self.threshold_split = name, seed, contamination, threshold_split

    def _make(self, n_features: int):
        # Imported here so that `import course_lib` stays fast. pyod's defaults, except where noted.
        if self.name == "iforest":
            from pyod.models.iforest import IForest
            return IForest(n_estimators=200, random_state=self.seed)
        if self.name == "ocsvm":
            from pyod.models.ocsvm import OCSVM
            return OCSVM(kernel="rbf", gamma="auto", nu=0.5)  # gamma = 1 / n_features
        if self.name == "copod":
            from pyod.models.copod import COPOD
            return COPOD()
        if self.name == "knn":
            from pyod.models.knn import KNN
            return KNN(n_neighbors=5, method="largest")       # distance to the 5th nearest normal image
        if self.name == "autoencoder":
            from pyod.models.auto_encoder import AutoEncoder
            # an MLP 64-32-64 trained 10 epochs on the normal pixels; the score is the reconstruction error
            return AutoEncoder(random_state=self.seed, verbose=0)
        from pyod.models.deep_svdd import DeepSVDD
        # an MLP mapped onto a hypersphere around a fixed centre for 100 epochs; the score is the distance
        return DeepSVDD(n_features=n_features, random_state=self.seed, verbose=0)

    def _fit(self, images: torch.Tensor) -> None:
        x = flatten_pixels(images)
        self.scaler_ = StandardScaler().fit(x)
        with torch.random.fork_rng(devices=[]):   # the deep detectors seed torch globally: keep that local
            self.model_ = self._make(x.shape[1]).fit(self.scaler_.transform(x))

    def _training_scores(self, images: torch.Tensor) -> np.ndarray:
        return self.model_.decision_scores_   # pyod's own scores of its training data

    def _decision(self, images: torch.Tensor) -> np.ndarray:
        x = self.scaler_.transform(flatten_pixels(images))
        if self.name == "copod":
            # pyod's COPOD builds its empirical CDFs from the training data *plus the batch it scores*,
            # so an image's score would depend on its batch-mates. One image at a time keeps the
            # score a function of the image alone (the CDFs see n_train + 1 points).
            return np.concatenate([self.model_.decision_function(x[i:i + 1]) for i in range(len(x))])
        return self.model_.decision_function(x)


def make_baseline(name: BaselineName, seed: int = 0, contamination: float = 0.1,
                  threshold_split: float = 0.2) -> PixelBaseline:
    """``make_baseline("copod")`` -> an unfitted detector (see :class:`course_lib.detector.Detector` for
    `contamination` and `threshold_split`)."""
    return PixelBaseline(name, seed=seed, contamination=contamination, threshold_split=threshold_split)
