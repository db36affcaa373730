"""A diffusion model as an anomaly detector: train any denoiser on normal images, score by its errors.

    det = DiffusionDetector("noise", extent="local", preset="dit-ti4-d6").fit(normal_images)
    det.decision_function(images)   # higher = more anomalous
    det.anomaly_maps(images)        # (N, 1, H, W), where in each image

It follows the pyod contract of :class:`course_lib.detector.Detector`, so the baselines and every
denoiser (U-Net or DiT, by preset name) share one benchmark loop.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.utils.checkpoint

from . import config
from .atomic import atomic_write, write_text_atomic
from .anomaly_maps import (MapCalibration, calibrate_maps, image_score_from_map, smooth_maps,
                           standardize_maps)
from .data.task import as_images
from .denoisers import fit_denoiser
from .detector import Detector
from .diffusion import PREDICTIONS, Diffusion
from .nets import build_denoiser, denoiser_config, denoiser_family
from .scoring import ScoreConfig, ScoreName, noise_prediction_error, reconstruction_error

DENOISER_LABELS = {"unet": "ddpm-unet", "dit": "dit"}   # the benchmark's method names: "ddpm-unet/noise", ...


class DiffusionDetector(Detector):
    """Train a denoiser on the normal images (``fit``), then score new images by its errors.

    `score_config` is a :class:`ScoreConfig`, or the name of a score ("noise" or "reconstruction") for
    the profile's settings of it (:meth:`ScoreConfig.for_task`, with the anomalies' `extent`). `preset`
    names the denoiser (default: the profile's U-Net). With ``calibrate=True``, ``fit`` also measures
    the error maps of the normal training images, and each level's map is standardized against them
    (:func:`calibrate_maps`) before the levels are averaged. Trained models are kept in the checkpoint
    directory under a name that carries the preset and hashes the training images and the configuration,
    so detectors that differ only in how they score share one model. `prediction` is what the network
    learns to output (``"eps"``, ``"x0"`` or ``"v"``, :data:`course_lib.diffusion.Prediction`); the
    scores read the noise it implies, and the checkpoint's name says which (an eps model's name does not).

    ``fit`` resolves every setting it depends on (the profile, the score's settings, the preset) and keeps
    them as ``profile_``, ``settings_`` and ``preset_``: a fitted detector scores the same way after
    ``COURSE_PROFILE`` changes, after ``pickle``, and after :meth:`save` and :meth:`load`.
    ``decision_scores_`` holds the scores of the first ``CALIBRATION_IMAGES`` training images (all of
    them in the smoke and cpu profiles), which also set the calibration; ``threshold_`` comes from held-out
    normals (``threshold_split``, `X_threshold`; :class:`course_lib.detector.Detector`).
    """

    # training images whose maps calibrate the detector and give decision_scores_: every
    # training image of the cpu profile (400), a bounded cost at the gpu profile's 5000
    CALIBRATION_IMAGES = 512
    kind = "diffusion"
    SAVE_FORMAT = "course_lib.DiffusionDetector/1"   # detector.json's "format": what load() reads

    def __init__(self, score_config: ScoreConfig | ScoreName = "noise", *, extent: str = "global",
                 preset: str | None = None, prof: config.Profile | None = None, seed: int = 0,
                 schedule: str = "linear", prediction: str = "eps", device: torch.device | str | None = None,
                 progress: bool = True, contamination: float = 0.1, threshold_split: float = 0.2):
        self.score_config, self.extent, self.preset, self.prof = score_config, extent, preset, prof
        self.seed, self.schedule, self.prediction = seed, schedule, prediction
        self.device, self.progress = device, progress
        self.contamination, self.threshold_split = contamination, threshold_split
        if prediction not in PREDICTIONS:
            raise ValueError(f"{self.name}: prediction={prediction!r} must be one of {', '.join(PREDICTIONS)} "
                             "(what the network learns to output: the noise, the clean image, or v).")
        sc, T = self.settings, self.profile.timesteps          # check the settings now, not after training
        bad = [t for t in sc.t_stars if not 1 <= t <= T]
        if bad:
            raise ValueError(f"{self.name}: timesteps {bad} must lie in [1, {T}] (1-indexed, as t* in the paper).")

    @property
    def profile(self) -> config.Profile:
        """The profile: frozen at fit (``profile_``); before it, `prof` or the active one."""
        return getattr(self, "profile_", None) or self.prof or config.profile()

    @property
    def settings(self) -> ScoreConfig:
        """The ScoreConfig this detector scores with: frozen at fit (``settings_``)."""
        if hasattr(self, "settings_"):
            return self.settings_
        if isinstance(self.score_config, ScoreConfig):
            return self.score_config
        return ScoreConfig.for_task(self.profile, self.score_config, self.extent)

    @property
    def denoiser_preset(self) -> str:
        """The denoiser's preset name: frozen at fit (``preset_``)."""
        return getattr(self, "preset_", None) or self.preset or self.profile.unet_preset

    @property
    def name(self) -> str:
        label = DENOISER_LABELS[denoiser_family(self.denoiser_preset)]
        return f"{label}/{'recon' if self.settings.score == 'reconstruction' else 'noise'}"

    @property
    def nfe_per_image(self) -> int:
        return self.settings.nfe_per_image

    def _fit(self, images: torch.Tensor) -> None:
        for frozen in ("profile_", "settings_", "preset_"):      # a refit resolves them afresh
            self.__dict__.pop(frozen, None)
        self.profile_ = self.profile
        self.settings_, self.preset_ = self.settings, self.denoiser_preset
        self.device_ = torch.device(self.device) if self.device is not None else config.get_device()
        self.diffusion_ = Diffusion(self.profile.timesteps, self.schedule, prediction=self.prediction)
        self.model_, self.train_info_ = fit_denoiser(images, self.profile_, seed=self.seed,
                                                     preset=self.denoiser_preset, diffusion=self.diffusion_,
                                                     device=self.device_, progress=self.progress)
        self.calibration_: MapCalibration | None = None
        normal = self.level_maps(images[:self.CALIBRATION_IMAGES])
        if self.settings.calibrate:
            # the maps of the normal training images set each pixel's scale
            if len(images) < 2:
                raise ValueError(f"{self.name}: calibrate=True needs at least 2 normal images, got {len(images)}.")
            self.calibration_ = calibrate_maps(normal)
        self._fit_scores = self._reduce(normal)

    def _training_scores(self, images: torch.Tensor) -> np.ndarray:
        # the scores of (up to CALIBRATION_IMAGES of) the training images, from the maps _fit already made
        return self._fit_scores

    def level_maps(self, images) -> torch.Tensor:
        """(L, N, 1, H, W): each noise level's smoothed error map, before calibration."""
        images = as_images(images, f"{self.name}.level_maps: images")
        self._check_fitted()
        bs = self.settings.batch_size
        raw = torch.cat([self._raw_maps(images[i:i + bs].to(self.device_)).cpu()
                         for i in range(0, len(images), bs)], dim=1)
        return self._smooth(raw)

    def differentiable_scores(self, images: torch.Tensor) -> torch.Tensor:
        """(N,) the scores of ``decision_function`` as a tensor on the detector's device that carries
        gradients back to `images` (float, (N, C, H, W) in [-1, 1], ``requires_grad=True``), for an
        attack (:func:`course_lib.programs.robustness.pgd_attack`). The scoring noise is fixed by the score's
        seed, so the score is a deterministic function of the images. One batch: the caller splits."""
        self._check_fitted()
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or tuple(images.shape[1:]) != self.image_shape_:
            raise ValueError(f"{self.name}.differentiable_scores: expected a float tensor of shape (N, "
                             f"{', '.join(map(str, self.image_shape_))}), got "
                             f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}.")
        maps = self._combine(self._smooth(self._raw_maps(images.to(self.device_), recompute=True)))
        return image_score_from_map(maps, self.settings.reduce)

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise RuntimeError(f"{self.name}: call fit(normal_images) first.")

    def _smooth(self, raw: torch.Tensor) -> torch.Tensor:
        return smooth_maps(raw.flatten(0, 1), self.settings.sigma).view_as(raw)

    def _raw_maps(self, x: torch.Tensor, recompute: bool = False) -> torch.Tensor:
        """(L, B, 1, H, W) raw error maps of one batch, on x's device; differentiable in x if x requires grad.

        `recompute`: backpropagating through a reconstruction keeps the activations of every network call
        of its DDIM chains (40 in the cpu profile) for the backward pass. With `recompute` each call keeps
        only its inputs and runs its forward pass again during the backward pass (activation
        checkpointing): the same gradients, a fraction of the memory, one more forward pass per call."""
        sc = self.settings
        with torch.autocast(self.device_.type, dtype=torch.bfloat16,
                            enabled=self.profile.bf16 and config.fast_paths(self.device_)):
            if sc.score == "reconstruction":
                model = _recomputed_in_backward(self.model_) if recompute and x.requires_grad else self.model_
                r = reconstruction_error(self.diffusion_, model, x, sc.t_stars, steps=sc.steps,
                                         sampler=sc.sampler, eta=sc.eta, n_noise=sc.n_noise,
                                         seed=sc.seed, error=sc.error)
            else:
                r = noise_prediction_error(self.diffusion_, self.model_, x, sc.t_stars, n_noise=sc.n_noise,
                                           seed=sc.seed, antithetic=sc.antithetic,
                                           coarse_sigma=sc.coarse_sigma)
        return r.level_maps.float()

    def _combine(self, level_maps: torch.Tensor) -> torch.Tensor:
        if self.calibration_ is not None:
            cal = MapCalibration(*(v.to(level_maps.device) for v in self.calibration_))
            level_maps = standardize_maps(level_maps, cal)
        return level_maps.mean(0)

    def _reduce(self, level_maps: torch.Tensor) -> np.ndarray:
        return image_score_from_map(self._combine(level_maps), self.settings.reduce).numpy()

    def anomaly_maps(self, images) -> torch.Tensor:
        """(N, 1, H, W) per-pixel anomaly maps, higher = more anomalous: the smoothed error map averaged
        over the noise levels, or, with calibrate=True, the average of the levels' z-maps."""
        return self._combine(self.level_maps(images))

    def _decision(self, images: torch.Tensor) -> np.ndarray:
        return self._reduce(self.level_maps(images))

    # ----- saving and loading -------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Keep the fitted detector in the folder `path`: ``detector.json`` (every setting, the threshold)
        and ``tensors.pt`` (the EMA weights, the calibration, decision_scores_), plain tensors that
        :meth:`load` reads with ``torch.load(weights_only=True)``, so loading runs no code. Returns `path`."""
        self._check_fitted()
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise ValueError(f"{self.name}.save: {path} is a file; give a folder (it is created if needed).")
        path.mkdir(parents=True, exist_ok=True)
        tensors = {"model": {k: v.detach().cpu() for k, v in self.model_.state_dict().items()},
                   "decision_scores": torch.from_numpy(self.decision_scores_)}
        if self.calibration_ is not None:
            tensors["calibration_mean"], tensors["calibration_std"] = (v.cpu() for v in self.calibration_)
        with atomic_write(path / "tensors.pt") as tmp:
            torch.save(tensors, tmp)
        settings = {"format": self.SAVE_FORMAT, "name": self.name,
                    "params": {"extent": self.extent, "preset": self.preset_, "seed": self.seed,
                               "schedule": self.schedule, "prediction": self.prediction, "contamination": self.contamination,
                               "threshold_split": self.threshold_split},
                    "profile": dataclasses.asdict(self.profile_), "score_config": dataclasses.asdict(self.settings_),
                    "image_shape": list(self.image_shape_), "threshold": self.threshold_,
                    "train_info": {k: self.train_info_[k] for k in ("steps", "seconds") if k in self.train_info_}}
        write_text_atomic(path / "detector.json", json.dumps(settings, indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: torch.device | str | None = None,
             progress: bool = False) -> "DiffusionDetector":
        """A detector saved by :meth:`save`, ready to score, on `device` (default: the best available)."""
        path = Path(path)
        files = [path / "detector.json", path / "tensors.pt"]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"{path} is not a saved detector: {', '.join(missing)} missing "
                                    "(DiffusionDetector.save(path) writes both).")
        try:
            saved = json.loads(files[0].read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{files[0]} is damaged ({err}); save the detector again.") from None
        if not isinstance(saved, dict) or saved.get("format") != cls.SAVE_FORMAT:
            found = saved.get("format") if isinstance(saved, dict) else type(saved).__name__
            raise ValueError(f"{files[0]}: format {found!r}, this course_lib reads {cls.SAVE_FORMAT!r}.")
        try:
            tensors = torch.load(files[1], map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 -- unpickling refused or a damaged file: say which file
            raise ValueError(f"{files[1]} is damaged or not plain tensors ({type(err).__name__}); "
                             "save the detector again.") from None
        try:
            prof = config.Profile(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved["profile"].items()})
            params = saved["params"]
            det = cls(ScoreConfig(**saved["score_config"]), extent=params["extent"], preset=params["preset"],
                      prof=prof, seed=params["seed"], schedule=params["schedule"], prediction=params["prediction"],
                      device=device, progress=progress, contamination=params["contamination"],
                      threshold_split=params["threshold_split"])
            c, h, _ = saved["image_shape"]
            model = build_denoiser(denoiser_config(params["preset"], in_channels=c, image_size=h))
            model.load_state_dict(tensors["model"])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:   # a field missing, unknown or bad
            what = f"field {err}" if isinstance(err, KeyError) else str(err).splitlines()[0]
            raise ValueError(f"{path}: not a detector this course_lib can load ({what}); it was saved by "
                             "another version, or edited. Fit and save the detector again.") from None
        det.profile_, det.settings_, det.preset_ = prof, det.score_config, params["preset"]
        det.device_ = torch.device(device) if device is not None else config.get_device()
        det.diffusion_ = Diffusion(prof.timesteps, params["schedule"], prediction=params["prediction"])
        det.model_ = model.requires_grad_(False).eval().to(det.device_)
        det.calibration_ = (MapCalibration(tensors["calibration_mean"], tensors["calibration_std"])
                            if "calibration_mean" in tensors else None)
        det.image_shape_ = tuple(saved["image_shape"])
        det.decision_scores_ = tensors["decision_scores"].numpy().astype(np.float64)
        det.threshold_ = float(saved["threshold"])
        det.labels_ = (det.decision_scores_ > det.threshold_).astype(int)
        det.train_info_ = dict(saved.get("train_info", {}), path=path, loaded=True, reason="DiffusionDetector.load")
        return det


def _recomputed_in_backward(model):
    """`model`, called so that autograd keeps its inputs rather than its activations and recomputes them
    in the backward pass (``torch.utils.checkpoint``; the RNG state is replayed, so the gradients match)."""
    def call(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.utils.checkpoint.checkpoint(model, x_t, t, use_reentrant=False)
    return call
