"""The detector contract that the baselines and the diffusion scores share: pyod's, which is sklearn-shaped.

    det = make_baseline("iforest", contamination=0.1).fit(normal_images)
    det.decision_scores_              # scores of the training images, higher = more anomalous
    det.threshold_                    # the score above which `contamination` of held-out normals lie
    det.decision_function(images)     # one score per image, higher = more anomalous
    det.predict(images)               # 1 = anomaly (score above threshold_), 0 = normal
    det.predict_proba(images)         # (N, 2): P(normal), P(anomaly), from the scores as pyod does

Images are (N, C, H, W) torch tensors or numpy arrays, uint8 in [0, 255] or floats in [-1, 1]
(:func:`course_lib.data.as_images`). A detector's constructor arguments are its parameters
(``get_params`` / ``set_params``), so ``sklearn.base.clone`` makes an unfitted copy.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
from scipy.special import erf
from sklearn.base import BaseEstimator

from .data.task import as_images


class Detector(BaseEstimator, ABC):
    """The pyod contract. Subclasses implement ``_fit(images)`` and ``_decision(images)`` on float
    (N, C, H, W) tensors in [-1, 1], and take ``contamination`` and ``threshold_split`` in their constructor.

    ``threshold_`` is set on normal images the detector did not train on: those passed to ``fit`` as
    `X_threshold` (then every image of `X` trains), else a share ``threshold_split`` of `X` set aside (the
    rest trains), so that ``predict`` flags about ``contamination`` of new normal images. With
    ``threshold_split=0`` it is pyod's in-sample rule, on the training images themselves: a model scores
    images it has seen lower than new ones, so new normals then cross the threshold more often. A method
    compared by AUROC alone (the benchmark) needs no threshold and trains on every image that way.
    """

    name: str = "detector"
    contamination: float = 0.1   # the share of normal images expected above threshold_ (as in pyod)
    threshold_split: float = 0.2  # share of fit's normal images set aside to set threshold_ (0: pyod's in-sample)
    # what kind of method it is: "pixels" (a classical detector on the pixels) or "diffusion" (a trained
    # denoiser, whose fit reports its training in train_info_)
    kind: str = "pixels"

    @property
    def nfe_per_image(self) -> int:
        """Network evaluations one image's score costs (0 for methods without a network)."""
        return 0

    def fit(self, X, y=None, *, X_threshold=None) -> "Detector":
        """Fit on normal images (`y` is ignored, as in pyod's unsupervised detectors); returns self.
        `X_threshold`: other normal images that set ``threshold_`` (default: a share of `X`, see the class)."""
        if not 0 < self.contamination <= 0.5:
            raise ValueError(f"{self.name}: contamination={self.contamination!r} must be in (0, 0.5] (the share "
                             "of normal images that may lie above threshold_, i.e. the false-alarm rate).")
        if not 0 <= self.threshold_split < 1:
            raise ValueError(f"{self.name}: threshold_split={self.threshold_split!r} must be in [0, 1) (the share "
                             "of the normal images set aside to set threshold_; 0: the training images set it).")
        images, held = self._split(as_images(X, f"{self.name}.fit: normal images"), X_threshold)
        self._fit(images)
        self.image_shape_ = tuple(images.shape[1:])
        self.decision_scores_ = self._finite(self._training_scores(images), "the training images")
        reference = self.decision_scores_ if held is None else self._finite(self._decision(held), "the held-out normals")
        self.threshold_ = float(np.percentile(reference, 100 * (1 - self.contamination)))
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(int)
        return self

    def _split(self, images: torch.Tensor, X_threshold) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the images to train on, the normal images that set threshold_, or None for the in-sample rule),
        checked before any training starts. The share set aside is drawn by a fixed permutation."""
        if X_threshold is not None:
            held = as_images(X_threshold, f"{self.name}.fit: X_threshold")
            if held.shape[1:] != images.shape[1:] or len(held) < 2:
                raise ValueError(f"{self.name}.fit: X_threshold must hold at least 2 images of the training "
                                 f"images' shape {tuple(images.shape[1:])}, got {tuple(held.shape)}.")
            return images, held
        if self.threshold_split == 0:
            return images, None
        n_held = int(round(self.threshold_split * len(images)))
        if n_held < 2 or len(images) - n_held < 2:
            raise ValueError(f"{self.name}.fit: {len(images)} normal images are too few to set aside "
                             f"threshold_split={self.threshold_split} of them for the threshold (at least 2 on "
                             "each side); pass more images, X_threshold=..., or threshold_split=0.")
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
        return images[order[n_held:]], images[order[:n_held]]

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

    def predict_proba(self, X, method: str = "linear") -> np.ndarray:
        """(N, 2) float64: P(normal) and P(anomaly) per image, as pyod's ``predict_proba``: ``"linear"``
        scales the score by the range of ``decision_scores_`` (min 0, max 1, clipped); ``"unify"`` is
        erf((score - mean) / (std sqrt 2)) over them, clipped at 0 (Kriegel et al. 2011)."""
        scores = self.decision_function(X)
        train = self.decision_scores_
        if method == "linear":
            span = train.max() - train.min()
            p = (scores - train.min()) / (span if span > 0 else 1.0)
        elif method == "unify":
            p = erf((scores - train.mean()) / (train.std() * np.sqrt(2)))
        else:
            raise ValueError(f"{self.name}.predict_proba: method must be 'linear' or 'unify', got {method!r}.")
        p = np.clip(p, 0, 1)
        return np.stack([1 - p, p], axis=1)

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
