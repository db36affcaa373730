"""Anomaly scores from a diffusion model trained on normal images only.

Two scores, both higher = more anomalous, both with a per-pixel anomaly map:

* **Reconstruction error** (the paper's method, arXiv 2412.07539): noise x_0 to level t*, denoise
  back with DDPM or DDIM in K steps, and measure || x_0 - x̂_0 ||² (or 1 - SSIM). A normal image is
  pulled back to itself; an anomaly is pulled towards the normal data and comes back changed.
  Cost: K network evaluations (NFE) per noise draw and per t*.
* **Noise-prediction error**: the epsilon-MSE || eps - eps_theta(x_t, t) ||² at a few fixed t with
  fixed noise, no reverse chain. The network predicts noise well only on data like its training set.
  Cost: one NFE per timestep and per noise draw. With antithetic pairs (eps, -eps), 2 NFE per pair,
  the map keeps only the part of the error that does not flip with the noise: the error about the image.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from . import config
from .detector import Detector
from .diffusion import Diffusion
from .sampling import reconstruct

ScoreName = Literal["reconstruction", "noise"]
ErrorName = Literal["mse", "ssim"]
MapReduce = Literal["mean", "max", "peak"]


class ScoreResult(NamedTuple):
    scores: torch.Tensor       # (B,) image scores, higher = more anomalous
    maps: torch.Tensor         # (B, 1, H, W) per-pixel squared error, averaged over channels, draws and levels
    nfe: int                   # network evaluations spent per image
    level_maps: torch.Tensor   # (L, B, 1, H, W) the same, one map per noise level (t* or t), before averaging


def _generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


@torch.no_grad()
def reconstruction_error(diffusion: Diffusion, model, x0: torch.Tensor, t_stars=(250,), *, steps: int = 10,
                         sampler: Literal["ddim", "ddpm"] = "ddim", eta: float = 0.0, n_noise: int = 1,
                         seed: int = 0, error: ErrorName = "mse") -> ScoreResult:
    """Mean over t* and noise draws of the per-pixel error between x_0 and x̂_0 = denoise(noise(x_0, t*)):
    the squared error (x_0 - x̂_0)² (``error="mse"``) or the structural dissimilarity 1 - SSIM(x_0, x̂_0)
    (``error="ssim"``), averaged over channels.

    t* is 1-indexed in [1, T] as in the paper (t* = T means pure noise).
    """
    if error not in ("mse", "ssim"):
        raise ValueError(f"Unknown reconstruction error {error!r}; use 'mse' or 'ssim'.")
    gen = _generator(seed, x0.device)
    levels = torch.zeros(len(t_stars), x0.shape[0], 1, *x0.shape[2:], device=x0.device)
    nfe = 0
    for level, t_star in zip(levels, t_stars):
        for _ in range(n_noise):
            x_hat, used = reconstruct(diffusion, model, x0, t_star, steps=steps, sampler=sampler, eta=eta,
                                      generator=gen)
            x_hat = x_hat.float()
            err = (x0 - x_hat).pow(2) if error == "mse" else 1 - ssim_map(x0.float(), x_hat)
            level += err.mean(1, keepdim=True)
            nfe += used
    return _result(levels / n_noise, nfe)


@torch.no_grad()
def noise_prediction_error(diffusion: Diffusion, model, x0: torch.Tensor, timesteps=(50, 250), *,
                           n_noise: int = 1, seed: int = 0, antithetic: bool = False,
                           coarse_sigma: float = 0.0) -> ScoreResult:
    """Mean over t and noise draws of the squared residual r(eps) = eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1-abar_t) eps, t).

    Timesteps are 1-indexed in [1, T] like t*. Each draw uses one noise pattern, from `seed`, shared by
    every image of the batch, so an image's score depends on the image alone (not on its batch).

    ``antithetic=True``: each draw is the pair (eps, -eps), 2 NFE, and the map is the square of the
    residual's *even part* r_even = (r(eps) + r(-eps)) / 2. Exactly, (r(eps)² + r(-eps)²) / 2 =
    r_even² + r_odd² with r_odd = (r(eps) - r(-eps)) / 2: the odd part flips with the noise and is the
    network's error about the noise itself, much the same for every image; the even part stays when the
    noise flips and is its error about the *image*. One draw's r² also carries the cross term
    2 r_even r_odd, zero on average but the largest noise in a one-draw map; the pair removes it.
    ``coarse_sigma`` > 0 (needs ``antithetic``) blurs r_even by a Gaussian of that many pixels before
    squaring, at the levels where the noise outweighs the image, SNR_t = abar_t / (1 - abar_t) < 1. The
    network can judge only neighbourhoods there, not single pixels: averaging its signed error over a
    neighbourhood keeps a smooth defect (a stain) and cancels the pixel-to-pixel scatter.
    """
    if coarse_sigma < 0 or (coarse_sigma > 0 and not antithetic):
        raise ValueError(f"coarse_sigma = {coarse_sigma}: it blurs the even part of an antithetic pair, so it must "
                         f"be >= 0, and > 0 only with antithetic=True.")
    gen = _generator(seed, x0.device)
    levels = torch.zeros(len(timesteps), x0.shape[0], 1, *x0.shape[2:], device=x0.device)
    for level, t1 in zip(levels, timesteps):
        if not 1 <= int(t1) <= diffusion.T:
            raise ValueError(f"timestep {t1} must lie in [1, {diffusion.T}] (1-indexed, as t* in the paper).")
        t = torch.full((x0.shape[0],), int(t1) - 1, device=x0.device, dtype=torch.long)
        coarse = coarse_sigma > 0 and float(diffusion.alphas_cumprod[int(t1) - 1]) < 0.5   # SNR_t < 1
        for _ in range(n_noise):
            eps = torch.randn((1, *x0.shape[1:]), generator=gen, device=x0.device).expand_as(x0)
            r = eps - model(diffusion.q_sample(x0, t, eps), t).float()
            if antithetic:
                r = (r - eps - model(diffusion.q_sample(x0, t, -eps), t).float()) / 2   # (r(eps) + r(-eps)) / 2
                if coarse:
                    r = smooth_maps(r.flatten(0, 1)[:, None], coarse_sigma).view_as(r)
            level += r.pow(2).mean(1, keepdim=True)
    return _result(levels / n_noise, len(timesteps) * n_noise * (2 if antithetic else 1))


def _result(level_maps: torch.Tensor, nfe: int) -> ScoreResult:
    maps = level_maps.mean(0)
    return ScoreResult(maps.flatten(1).mean(1), maps, nfe, level_maps)


def smooth_maps(maps: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Gaussian blur of (B, 1, H, W) anomaly maps (reflect padding): single noisy pixels fade,
    coherent defects stay. sigma = 0 returns the maps unchanged."""
    if sigma <= 0:
        return maps
    radius = max(1, int(round(3 * sigma)))
    if radius >= min(maps.shape[-2:]):
        raise ValueError(f"smooth_maps: sigma = {sigma} px needs a kernel radius of {radius} px, but the maps are "
                         f"only {tuple(maps.shape[-2:])} px; use sigma < {min(maps.shape[-2:]) / 3:.1f} for maps "
                         f"this small (a smaller sigma, or the mean of the map, has the same effect).")
    return _gaussian_blur(maps, sigma, radius=radius)


def _gaussian_blur(maps: torch.Tensor, sigma: float, radius: int) -> torch.Tensor:
    """Separable Gaussian blur of (B, 1, H, W) with a kernel of 2 * radius + 1 taps, reflect padding."""
    x = torch.arange(-radius, radius + 1, dtype=maps.dtype, device=maps.device)
    k = torch.exp(-x ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    out = F.pad(maps, (radius, radius, 0, 0), mode="reflect")
    out = F.conv2d(out, k.view(1, 1, 1, -1))
    out = F.pad(out, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(out, k.view(1, 1, -1, 1))


def ssim_map(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 2.0, sigma: float = 1.5) -> torch.Tensor:
    """Local structural similarity (Wang et al. 2004) of two (B, C, H, W) batches, per pixel and channel.

    SSIM = (2 mu_x mu_y + c1)(2 cov_xy + c2) / ((mu_x^2 + mu_y^2 + c1)(var_x + var_y + c2)), with the
    local means, variances and covariance weighted by a Gaussian window (sigma 1.5, 11 taps, as
    scikit-image's ``structural_similarity(gaussian_weights=True)``), c1 = (0.01 L)^2, c2 = (0.03 L)^2 and
    L = `data_range` (2 for images in [-1, 1]). 1 means locally identical; it compares local contrast and
    structure, not only the pixel values.
    """
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"ssim_map: expected two (B, C, H, W) batches of one shape, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}.")
    radius = int(3.5 * sigma + 0.5)
    b, c, h, w = x.shape

    def blur(t: torch.Tensor) -> torch.Tensor:
        return _gaussian_blur(t.reshape(b * c, 1, h, w), sigma, radius).view(b, c, h, w)

    mx, my = blur(x), blur(y)
    var_x, var_y, cov = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return (2 * mx * my + c1) * (2 * cov + c2) / ((mx * mx + my * my + c1) * (var_x + var_y + c2))


def image_score_from_map(maps: torch.Tensor, reduce: MapReduce = "mean") -> torch.Tensor:
    """One number per image from its (N, 1, H, W) map. Match it to how much of the image an anomaly covers:

    - ``"mean"``: the whole image is anomalous (another class, a global corruption): every pixel adds
      evidence, and averaging them cancels the noise of single pixels.
    - ``"max"``: a small defect; the mean would dilute it.
    - ``"peak"``: the max minus the image's own mean, i.e. how far the worst region stands out from the
      rest of the *same* image. A small defect raises the max but barely moves the mean, while a
      nuisance that shifts the whole map (a crop that is brighter or busier than most) moves both and
      cancels. The best of the three for local defects (results/ablations-textures.md, notebook 05).
    """
    flat = maps.flatten(1)
    if reduce == "mean":
        return flat.mean(1)
    if reduce == "max":
        return flat.amax(1)
    if reduce == "peak":
        return flat.amax(1) - flat.mean(1)
    raise ValueError(f"Unknown map reduction {reduce!r}; use 'mean', 'max' or 'peak'.")


class MapCalibration(NamedTuple):
    """What normal images' anomaly maps look like, per noise level and per pixel."""
    mean: torch.Tensor   # (L, 1, 1, H, W)
    std: torch.Tensor    # (L, 1, 1, H, W), floored (see calibrate_maps)


def calibrate_maps(normal_level_maps: torch.Tensor, floor: float = 0.1) -> MapCalibration:
    """Per-level, per-pixel mean and standard deviation of the (smoothed) maps of normal images.

    `normal_level_maps` is (L, N, 1, H, W) with N >= 2 normal images. A raw error map is not equally
    large everywhere on normal images: it is larger near the border (the network sees zero padding
    there) and at positions where normal images vary most, and a small t gives far larger errors than
    a large one. Standardizing each level's map against normal images, z = (map - mean) / std, puts
    every pixel and every level on one scale: "how unusual is this error, here, at this t". (The same
    per-position Gaussian idea as PaDiM, Defard et al. 2021, applied to error maps.) The std is floored
    at `floor` x its mean over the image, so a pixel that barely varies cannot dominate.
    """
    if normal_level_maps.dim() != 5 or normal_level_maps.shape[1] < 2:
        raise ValueError(f"calibrate_maps: expected level maps (L, N, 1, H, W) of N >= 2 normal images, "
                         f"got shape {tuple(normal_level_maps.shape)}.")
    mean = normal_level_maps.mean(1, keepdim=True)
    std = normal_level_maps.std(1, keepdim=True)
    std = torch.maximum(std, floor * std.mean(dim=(2, 3, 4), keepdim=True))
    return MapCalibration(mean, std)


def standardize_maps(level_maps: torch.Tensor, calibration: MapCalibration) -> torch.Tensor:
    """z-maps (L, B, 1, H, W) = (level_maps - mean) / std, with the statistics of `calibrate_maps`."""
    if level_maps.shape[0] != calibration.mean.shape[0] or level_maps.shape[2:] != calibration.mean.shape[2:]:
        raise ValueError(f"standardize_maps: level maps of shape {tuple(level_maps.shape)} do not match the "
                         f"calibration, made for (L, N, 1, H, W) = {tuple(calibration.mean.shape)} with any N.")
    return (level_maps - calibration.mean) / calibration.std


def fit_denoiser(images: torch.Tensor, prof: config.Profile | None = None, *, seed: int = 0,
                 preset: str | None = None, diffusion: Diffusion | None = None,
                 device: torch.device | str | None = None, progress: bool = True):
    """Train (or load, if an earlier notebook or run already did) the profile's U-Net on normal images.

    The checkpoint name hashes the images and every setting, so notebook 04's model is the one that
    notebook 05 and the benchmark find again. Returns (EMA model in eval mode, info dict).
    """
    from .nets.unet import UNet, unet_config
    from .train import TrainConfig, train_or_load
    prof = prof or config.profile()
    diffusion = diffusion or Diffusion(prof.timesteps, "linear")
    device = torch.device(device) if device is not None else config.get_device()
    c, h, _ = images.shape[1:]
    net_cfg = unet_config(preset or prof.unet_preset, in_channels=c, image_size=h)
    tc = TrainConfig.from_profile(prof, seed=seed)
    key = repr((net_cfg, tc, diffusion.T, diffusion.schedule)).encode()
    digest = hashlib.sha1(images.detach().cpu().numpy().tobytes() + key).hexdigest()[:12]
    _, ema, info = train_or_load(f"unet-{prof.name}-{c}x{h}-{digest}", lambda: UNet(net_cfg), diffusion, images,
                                 tc, device=device, progress=progress)
    return ema.eval().to(device), info


@dataclass(frozen=True)
class ScoreConfig:
    """How a diffusion detector turns a trained denoiser into anomaly scores."""

    score: ScoreName = "reconstruction"   # which error to measure
    t_stars: tuple[int, ...] = (250,)     # reconstruction: noise levels (1-indexed); noise: the timesteps
    steps: int = 10                       # reconstruction: K denoising steps from t* to 0
    error: ErrorName = "mse"              # reconstruction: squared error, or 1 - local SSIM
    sampler: Literal["ddim", "ddpm"] = "ddim"
    eta: float = 0.0                      # DDIM stochasticity (0 = deterministic, 1 = DDPM variance)
    n_noise: int = 1                      # noise draws averaged per image (noise score: pairs, if antithetic)
    antithetic: bool = False              # noise score: draws in pairs (eps, -eps), the map from the even part
    coarse_sigma: float = 0.0             # noise score, antithetic: blur of the even part where SNR_t < 1, px
    sigma: float = 1.0                    # Gaussian smoothing of the anomaly map, in pixels
    reduce: MapReduce = "mean"            # image score from the smoothed map: mean, max or peak
    calibrate: bool = False               # standardize each level's map per pixel against normal images
    batch_size: int = 64                  # images per forward pass while scoring
    seed: int = 0                         # the scoring noise


class DiffusionDetector(Detector):
    """Train a denoiser on the normal images (``fit``), then score new images by its errors.

    With ``calibrate=True``, ``fit`` also measures the error maps of the normal training images, and
    each level's map is standardized against them (:func:`calibrate_maps`) before the levels are averaged.
    Trained models are kept in the checkpoint directory under a name that hashes the training
    images and the configuration, so detectors that differ only in how they score share one model.
    """

    # normal images whose maps calibrate the detector (calibrate=True): every training image of the cpu profile
    # (400; 256 of them gave grass 0.948 instead of 0.950), a bounded cost at the gpu profile's 5000
    CALIBRATION_IMAGES = 512

    def __init__(self, score_config: ScoreConfig, *, prof: config.Profile | None = None, seed: int = 0,
                 preset: str | None = None, schedule: str = "linear",
                 device: torch.device | str | None = None, progress: bool = True):
        self.sc, self.prof, self.seed = score_config, prof or config.profile(), seed
        self.preset, self.schedule = preset or self.prof.unet_preset, schedule
        self.device = torch.device(device) if device is not None else config.get_device()
        self.progress = progress
        self.diffusion = Diffusion(self.prof.timesteps, schedule)
        for t in self.sc.t_stars:
            if not 1 <= t <= self.diffusion.T:
                raise ValueError(f"t* = {t} must lie in [1, {self.diffusion.T}] (1-indexed, as in the paper).")
        if self.sc.error != "mse" and self.sc.score != "reconstruction":
            raise ValueError(f"error={self.sc.error!r} compares an image with its reconstruction; the noise score "
                             f"compares noises and has only the squared error. Use score='reconstruction'.")
        if (self.sc.antithetic or self.sc.coarse_sigma) and self.sc.score != "noise":
            raise ValueError("antithetic and coarse_sigma shape the noise score's residual; the reconstruction score "
                             "has no such residual. Use score='noise', or leave them at False and 0.")
        self.name = f"ddpm-unet/{'recon' if score_config.score == 'reconstruction' else 'noise'}"

    @property
    def nfe_per_image(self) -> int:
        per_draw = self.sc.steps if self.sc.score == "reconstruction" else 2 if self.sc.antithetic else 1
        return per_draw * self.sc.n_noise * len(self.sc.t_stars)

    def _fit(self, images: torch.Tensor) -> None:
        self.model_, self.train_info_ = fit_denoiser(images, self.prof, seed=self.seed, preset=self.preset,
                                                     diffusion=self.diffusion, device=self.device,
                                                     progress=self.progress)
        self.calibration_ = None
        if self.sc.calibrate:
            # the maps of (up to CALIBRATION_IMAGES of) the normal training images set each pixel's scale
            if len(images) < 2:
                raise ValueError(f"{self.name}: calibrate=True needs at least 2 normal images, got {len(images)}.")
            normal = self.level_maps(images[:self.CALIBRATION_IMAGES])
            self.calibration_ = calibrate_maps(normal)

    def level_maps(self, images: torch.Tensor) -> torch.Tensor:
        """(L, N, 1, H, W): each noise level's smoothed error map, before calibration."""
        raw = self._errors(images)
        return smooth_maps(raw.flatten(0, 1), self.sc.sigma).view_as(raw)

    def _errors(self, images: torch.Tensor) -> torch.Tensor:
        sc, parts = self.sc, []
        for i in range(0, len(images), sc.batch_size):
            x = images[i:i + sc.batch_size].to(self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.prof.bf16 and
                                self.device.type == "cuda"):
                if sc.score == "reconstruction":
                    r = reconstruction_error(self.diffusion, self.model_, x, sc.t_stars, steps=sc.steps,
                                             sampler=sc.sampler, eta=sc.eta, n_noise=sc.n_noise,
                                             seed=sc.seed, error=sc.error)
                else:
                    r = noise_prediction_error(self.diffusion, self.model_, x, sc.t_stars, n_noise=sc.n_noise,
                                               seed=sc.seed, antithetic=sc.antithetic,
                                               coarse_sigma=sc.coarse_sigma)
            parts.append(r.level_maps.float().cpu())
        return torch.cat(parts, dim=1)

    def anomaly_maps(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) per-pixel anomaly maps, higher = more anomalous: the smoothed error map averaged
        over the noise levels, or, with calibrate=True, the average of the levels' z-maps."""
        level_maps = self.level_maps(images)
        if self.calibration_ is not None:
            level_maps = standardize_maps(level_maps, self.calibration_)
        return level_maps.mean(0)

    def _score(self, images: torch.Tensor) -> np.ndarray:
        return image_score_from_map(self.anomaly_maps(images), self.sc.reduce).numpy()
