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

import numbers
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch

from . import config
from .anomaly_maps import MAP_REDUCE, MAP_REDUCES, MapReduce, smooth_maps, ssim_map
from .diffusion import Diffusion
from .sampling import grad_through_images, reconstruct

ScoreName = Literal["reconstruction", "noise"]
ErrorName = Literal["mse", "ssim"]
SamplerName = Literal["ddim", "ddpm"]
SCORES: tuple[str, ...] = ("reconstruction", "noise")
ERRORS: tuple[str, ...] = ("mse", "ssim")
SAMPLERS: tuple[str, ...] = ("ddim", "ddpm")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


class ScoreResult(NamedTuple):
    scores: torch.Tensor       # (B,) image scores, higher = more anomalous
    maps: torch.Tensor         # (B, 1, H, W) per-pixel squared error, averaged over channels, draws and levels
    nfe: int                   # network evaluations spent per image
    level_maps: torch.Tensor   # (L, B, 1, H, W) the same, one map per noise level (t* or t), before averaging


def _generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


@grad_through_images
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
    levels, nfe = [], 0
    for t_star in t_stars:
        level = 0.0
        for _ in range(n_noise):
            x_hat, used = reconstruct(diffusion, model, x0, t_star, steps=steps, sampler=sampler, eta=eta,
                                      generator=gen)
            x_hat = x_hat.float()
            err = (x0 - x_hat).pow(2) if error == "mse" else 1 - ssim_map(x0.float(), x_hat)
            level = level + err.mean(1, keepdim=True)   # out of place: gradients may flow (an attack)
            nfe += used
        levels.append(level)
    return _result(torch.stack(levels) / n_noise, nfe)


@grad_through_images
def noise_prediction_error(diffusion: Diffusion, model, x0: torch.Tensor, timesteps=(50, 250), *,
                           n_noise: int = 1, seed: int = 0, antithetic: bool = False,
                           coarse_sigma: float = 0.0) -> ScoreResult:
    """Mean over t and noise draws of the squared residual r(eps) = eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1-abar_t) eps, t),
    where eps_theta is the noise the network's output implies (``diffusion.prediction``: eps, x0 or v).

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
    levels = []
    for t1 in timesteps:
        if not 1 <= int(t1) <= diffusion.T:
            raise ValueError(f"timestep {t1} must lie in [1, {diffusion.T}] (1-indexed, as t* in the paper).")
        t = diffusion.timesteps(int(t1) - 1, x0.shape[0], x0.device)
        coarse = coarse_sigma > 0 and float(diffusion.alphas_cumprod[int(t1) - 1]) < 0.5   # SNR_t < 1
        level = 0.0
        for _ in range(n_noise):
            eps = torch.randn((1, *x0.shape[1:]), generator=gen, device=x0.device).expand_as(x0)
            r = eps - _eps_hat(diffusion, model, diffusion.q_sample(x0, t, eps), t)
            if antithetic:
                r = (r - eps - _eps_hat(diffusion, model, diffusion.q_sample(x0, t, -eps), t)) / 2   # (r(eps) + r(-eps)) / 2
                if coarse:
                    r = smooth_maps(r.flatten(0, 1)[:, None], coarse_sigma).view_as(r)
            level = level + r.pow(2).mean(1, keepdim=True)   # out of place: gradients may flow (an attack)
        levels.append(level)
    return _result(torch.stack(levels) / n_noise, len(timesteps) * n_noise * (2 if antithetic else 1))


def _eps_hat(diffusion: Diffusion, model, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The noise that the network's output at (x_t, t) implies, whatever it predicts (eps, x0 or v)."""
    return diffusion.split_output(model(x_t, t).float(), x_t, t)[1]


def _result(level_maps: torch.Tensor, nfe: int) -> ScoreResult:
    maps = level_maps.mean(0)
    return ScoreResult(maps.flatten(1).mean(1), maps, nfe, level_maps)


@dataclass(frozen=True)
class ScoreConfig:
    """How a diffusion detector turns a trained denoiser into anomaly scores."""

    score: ScoreName = "reconstruction"   # which error to measure
    t_stars: tuple[int, ...] = (250,)     # reconstruction: noise levels (1-indexed); noise: the timesteps
    steps: int = 10                       # reconstruction: K denoising steps from t* to 0
    error: ErrorName = "mse"              # reconstruction: squared error, or 1 - local SSIM
    sampler: SamplerName = "ddim"          # reconstruction: the reverse chain
    eta: float = 0.0                      # DDIM stochasticity (0 = deterministic, 1 = DDPM variance)
    n_noise: int = 1                      # noise draws averaged per image (noise score: pairs, if antithetic)
    antithetic: bool = False              # noise score: draws in pairs (eps, -eps), the map from the even part
    coarse_sigma: float = 0.0             # noise score, antithetic: blur of the even part where SNR_t < 1, px
    sigma: float = 1.0                    # Gaussian smoothing of the anomaly map, in pixels
    reduce: MapReduce = "mean"            # image score from the smoothed map: mean, max or peak
    calibrate: bool = False               # standardize each level's map per pixel against normal images
    batch_size: int = 64                  # images per forward pass while scoring
    seed: int = 0                         # the scoring noise

    def __post_init__(self):
        object.__setattr__(self, "t_stars", tuple(self.t_stars))
        problems = [f"{name}={getattr(self, name)!r} must be {rule}" for name, ok, rule in [
            ("score", self.score in SCORES, f"one of {', '.join(SCORES)}"),
            ("error", self.error in ERRORS, f"one of {', '.join(ERRORS)}"),
            ("sampler", self.sampler in SAMPLERS, f"one of {', '.join(SAMPLERS)}"),
            ("reduce", self.reduce in MAP_REDUCES, f"one of {', '.join(MAP_REDUCES)}"),
            ("t_stars", len(self.t_stars) > 0 and all(_is_int(t) and t >= 1 for t in self.t_stars),
             "a non-empty tuple of timesteps >= 1 (1-indexed)"),
            ("steps", _is_int(self.steps) and self.steps >= 1, "an int >= 1"),
            ("eta", 0.0 <= self.eta <= 1.0, "in [0, 1]"),
            ("n_noise", _is_int(self.n_noise) and self.n_noise >= 1, "an int >= 1"),
            ("coarse_sigma", self.coarse_sigma >= 0, ">= 0"),
            ("sigma", self.sigma >= 0, ">= 0 (0 = no smoothing)"),
            ("batch_size", _is_int(self.batch_size) and self.batch_size >= 1, "an int >= 1"),
        ] if not ok]
        if self.error != "mse" and self.score != "reconstruction":
            problems.append(f"error={self.error!r} compares an image with its reconstruction; the noise score "
                            "compares noises and has only the squared error (use score='reconstruction')")
        if (self.antithetic or self.coarse_sigma) and self.score != "noise":
            problems.append("antithetic and coarse_sigma shape the noise score's residual, which the "
                            "reconstruction score does not have (use score='noise', or leave them at False and 0)")
        if self.coarse_sigma > 0 and not self.antithetic:
            problems.append(f"coarse_sigma={self.coarse_sigma} blurs the even part of an antithetic pair; "
                            "set antithetic=True too")
        if problems:
            raise ValueError("ScoreConfig: " + "; ".join(problems) + ".")

    @property
    def nfe_per_image(self) -> int:
        """Network evaluations one image's score costs."""
        per_draw = self.steps if self.score == "reconstruction" else 2 if self.antithetic else 1
        return per_draw * self.n_noise * len(self.t_stars)

    @classmethod
    def for_task(cls, prof: config.Profile, score: ScoreName, extent: str) -> "ScoreConfig":
        """The course's settings of a score ("reconstruction" or "noise") in profile `prof`, for a task whose
        anomalies cover the whole image (extent "global") or a part of it ("local"); the benchmark, the
        ablations and the notebooks all score with these."""
        if extent not in MAP_REDUCE:
            raise ValueError(f"extent must be one of {', '.join(MAP_REDUCE)} (AnomalyTask.extent), got {extent!r}.")
        if score not in SCORES:
            raise ValueError(f"Unknown score {score!r}; valid scores: {', '.join(SCORES)}.")
        common = dict(score=score, sigma=prof.map_sigma, reduce=MAP_REDUCE[extent], calibrate=prof.map_calibrate)
        if score == "reconstruction":
            return cls(t_stars=prof.t_stars, steps=prof.ddim_steps, n_noise=prof.n_noise, **common)
        # the noise score in antithetic pairs: the error about the image, without the noise's
        return cls(t_stars=prof.noise_timesteps, n_noise=prof.noise_pairs, antithetic=True,
                   coarse_sigma=prof.noise_coarse_sigma, **common)
