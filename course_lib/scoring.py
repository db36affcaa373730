"""Anomaly scores from a diffusion model trained on normal images only.

Two scores, both higher = more anomalous, both with a per-pixel anomaly map:

* **Reconstruction error** (the paper's method, arXiv 2412.07539): noise x_0 to level t*, denoise
  back with DDPM or DDIM in K steps, and measure || x_0 - x̂_0 ||². A normal image is pulled back to
  itself; an anomaly is pulled towards the normal data and comes back changed.
  Cost: K network evaluations (NFE) per noise draw and per t*.
* **Noise-prediction error**: the epsilon-MSE || eps - eps_theta(x_t, t) ||² at a few fixed t with
  fixed noise, no reverse chain. The network predicts noise well only on data like its training set.
  Cost: one NFE per timestep and per noise draw.
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
MapReduce = Literal["mean", "max"]


class ScoreResult(NamedTuple):
    scores: torch.Tensor   # (B,) image scores, higher = more anomalous
    maps: torch.Tensor     # (B, 1, H, W) per-pixel squared error, averaged over channels and draws
    nfe: int               # network evaluations spent per image


def _generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


@torch.no_grad()
def reconstruction_error(diffusion: Diffusion, model, x0: torch.Tensor, t_stars=(250,), *, steps: int = 10,
                         sampler: Literal["ddim", "ddpm"] = "ddim", eta: float = 0.0, n_noise: int = 1,
                         seed: int = 0) -> ScoreResult:
    """Mean over t* and noise draws of the per-pixel error (x_0 - x̂_0)², with x̂_0 = denoise(noise(x_0, t*)).

    t* is 1-indexed in [1, T] as in the paper (t* = T means pure noise).
    """
    gen = _generator(seed, x0.device)
    maps = torch.zeros(x0.shape[0], 1, *x0.shape[2:], device=x0.device)
    nfe = 0
    for t_star in t_stars:
        for _ in range(n_noise):
            x_hat, used = reconstruct(diffusion, model, x0, t_star, steps=steps, sampler=sampler, eta=eta,
                                      generator=gen)
            maps += (x0 - x_hat.float()).pow(2).mean(1, keepdim=True)
            nfe += used
    maps /= len(t_stars) * n_noise
    return ScoreResult(maps.flatten(1).mean(1), maps, nfe)


@torch.no_grad()
def noise_prediction_error(diffusion: Diffusion, model, x0: torch.Tensor, timesteps=(50, 250), *,
                           n_noise: int = 1, seed: int = 0) -> ScoreResult:
    """Mean over t and noise draws of (eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1-abar_t) eps, t))².

    Timesteps are 1-indexed in [1, T] like t*. Each draw uses one noise pattern, from `seed`, shared by
    every image of the batch, so an image's score depends on the image alone (not on its batch).
    """
    gen = _generator(seed, x0.device)
    maps = torch.zeros(x0.shape[0], 1, *x0.shape[2:], device=x0.device)
    for t1 in timesteps:
        if not 1 <= int(t1) <= diffusion.T:
            raise ValueError(f"timestep {t1} must lie in [1, {diffusion.T}] (1-indexed, as t* in the paper).")
        t = torch.full((x0.shape[0],), int(t1) - 1, device=x0.device, dtype=torch.long)
        for _ in range(n_noise):
            eps = torch.randn((1, *x0.shape[1:]), generator=gen, device=x0.device).expand_as(x0)
            eps_hat = model(diffusion.q_sample(x0, t, eps), t).float()
            maps += (eps - eps_hat).pow(2).mean(1, keepdim=True)
    maps /= len(timesteps) * n_noise
    return ScoreResult(maps.flatten(1).mean(1), maps, len(timesteps) * n_noise)


def smooth_maps(maps: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Gaussian blur of (B, 1, H, W) anomaly maps (reflect padding): single noisy pixels fade,
    coherent defects stay. sigma = 0 returns the maps unchanged."""
    if sigma <= 0:
        return maps
    radius = max(1, int(round(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=maps.dtype, device=maps.device)
    k = torch.exp(-x ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    out = F.pad(maps, (radius, radius, 0, 0), mode="reflect")
    out = F.conv2d(out, k.view(1, 1, 1, -1))
    out = F.pad(out, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(out, k.view(1, 1, -1, 1))


def image_score_from_map(maps: torch.Tensor, reduce: MapReduce = "mean") -> torch.Tensor:
    """One number per image from its map: the mean (diffuse anomalies) or the max (small defects)."""
    if reduce == "mean":
        return maps.flatten(1).mean(1)
    if reduce == "max":
        return maps.flatten(1).amax(1)
    raise ValueError(f"Unknown map reduction {reduce!r}; use 'mean' or 'max'.")


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
    sampler: Literal["ddim", "ddpm"] = "ddim"
    eta: float = 0.0                      # DDIM stochasticity (0 = deterministic, 1 = DDPM variance)
    n_noise: int = 1                      # noise draws averaged per image
    sigma: float = 1.0                    # Gaussian smoothing of the anomaly map, in pixels
    reduce: MapReduce = "mean"            # image score = mean or max of the smoothed map
    batch_size: int = 64                  # images per forward pass while scoring
    seed: int = 0                         # the scoring noise


class DiffusionDetector(Detector):
    """Train a denoiser on the normal images (``fit``), then score new images by its errors.

    Trained models are kept in the checkpoint directory under a name that hashes the training
    images and the configuration, so detectors that differ only in how they score share one model.
    """

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
        self.name = f"ddpm-unet/{'recon' if score_config.score == 'reconstruction' else 'noise'}"

    @property
    def nfe_per_image(self) -> int:
        per_draw = self.sc.steps if self.sc.score == "reconstruction" else 1
        return per_draw * self.sc.n_noise * len(self.sc.t_stars)

    def _fit(self, images: torch.Tensor) -> None:
        self.model_, self.train_info_ = fit_denoiser(images, self.prof, seed=self.seed, preset=self.preset,
                                                     diffusion=self.diffusion, device=self.device,
                                                     progress=self.progress)

    def _errors(self, images: torch.Tensor) -> ScoreResult:
        sc, parts = self.sc, []
        for i in range(0, len(images), sc.batch_size):
            x = images[i:i + sc.batch_size].to(self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.prof.bf16 and
                                self.device.type == "cuda"):
                if sc.score == "reconstruction":
                    r = reconstruction_error(self.diffusion, self.model_, x, sc.t_stars, steps=sc.steps,
                                             sampler=sc.sampler, eta=sc.eta, n_noise=sc.n_noise,
                                             seed=sc.seed)
                else:
                    r = noise_prediction_error(self.diffusion, self.model_, x, sc.t_stars, n_noise=sc.n_noise,
                                               seed=sc.seed)
            parts.append(r.maps.float().cpu())
        return torch.cat(parts)

    def anomaly_maps(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) smoothed per-pixel anomaly maps, higher = more anomalous."""
        return smooth_maps(self._errors(images), self.sc.sigma)

    def _score(self, images: torch.Tensor) -> np.ndarray:
        return image_score_from_map(self.anomaly_maps(images), self.sc.reduce).numpy()
