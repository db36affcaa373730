"""The detector contract that the baselines and the diffusion scores share: pyod's, which is sklearn-shaped.

    det = make_baseline("iforest", contamination=0.1).fit(normal_images)
    det.decision_scores_              # scores of the training images, higher = more anomalous
    det.threshold_                    # the score above which `contamination` of them lie
    det.decision_function(images)     # one score per image, higher = more anomalous
    det.predict(images)               # 1 = anomaly (score above threshold_), 0 = normal

Images are (N, C, H, W) torch tensors or numpy arrays, uint8 in [0, 255] or floats in [-1, 1]
(:func:`course_lib.data.as_images`). A detector's constructor arguments are its parameters
(``get_params`` / ``set_params``), so ``sklearn.base.clone`` makes an unfitted copy.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
from sklearn.base import BaseEstimator

from .data.task import as_images


class Detector(BaseEstimator, ABC):
    """The pyod contract. Subclasses implement ``_fit(images)`` and ``_decision(images)`` on float
    (N, C, H, W) tensors in [-1, 1], and take ``contamination`` in their constructor."""

    name: str = "detector"
    contamination: float = 0.1   # expected share of anomalies, sets threshold_ (as in pyod)
    # what kind of method it is: "pixels" (a classical detector on the pixels) or "diffusion" (a trained
    # denoiser, whose fit reports its training in train_info_)
    kind: str = "pixels"

    @property
    def nfe_per_image(self) -> int:
        """Network evaluations one image's score costs (0 for methods without a network)."""
        return 0

    def fit(self, X, y=None) -> "Detector":
        """Fit on normal images (`y` is ignored, as in pyod's unsupervised detectors); returns self."""
        if not 0 < self.contamination <= 0.5:
            raise ValueError(f"{self.name}: contamination={self.contamination!r} must be in (0, 0.5] "
                             "(the share of anomalies expected among the training images).")
        images = as_images(X, f"{self.name}.fit: normal images")
        self._fit(images)
        self.image_shape_ = tuple(images.shape[1:])
        self.decision_scores_ = self._finite(self._training_scores(images), "the training images")
        self.threshold_ = float(np.percentile(self.decision_scores_, 100 * (1 - self.contamination)))
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(int)
        return self

    def decision_function(self, X) -> np.ndarray:
        """(N,) float64 anomaly scores, higher = more anomalous."""
        if not hasattr(self, "threshold_"):
            raise RuntimeError(f"{self.name}: call fit(normal_images) before decision_function(images).")
        images = as_images(X, f"{self.name}.decision_function: images")
        if tuple(images.shape[1:]) != self.image_shape_:
            raise ValueError(f"{self.name}: fitted on images of shape {self.image_shape_}, "
                             f"asked to score shape {tuple(images.shape[1:])}.")
        return self._finite(self._decision(images), "these images")

    def predict(self, X) -> np.ndarray:
        """(N,) int 0/1: 1 where the score is above ``threshold_``."""
        return (self.decision_function(X) > self.threshold_).astype(int)

    def _finite(self, scores, what: str) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        if not np.isfinite(scores).all():
            raise FloatingPointError(f"{self.name}: {int((~np.isfinite(scores)).sum())} of {len(scores)} scores "
                                     f"of {what} are NaN or infinite; check the images and the settings.")
        return scores

    def _training_scores(self, images: torch.Tensor) -> np.ndarray:
        """decision_scores_: the scores of the training images (a subclass may reuse work done in _fit)."""
        return self._decision(images)

    @abstractmethod
    def _fit(self, images: torch.Tensor) -> None: ...

    @abstractmethod
    def _decision(self, images: torch.Tensor) -> np.ndarray: ...
