"""What to do with a per-pixel error map: smooth it, calibrate it against normal images, reduce it to one
image score. Also the local SSIM, the structural alternative to the squared error.

A diffusion score (``scoring``) gives one error map per noise level, (L, B, 1, H, W). The detector then
smooths each map (:func:`smooth_maps`), standardizes it per pixel against the maps of normal images
(:func:`calibrate_maps`, :func:`standardize_maps`), averages the levels, and reduces the map to one
number per image in the way that fits how much of the image an anomaly covers (:func:`image_score_from_map`).
"""
from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F

MapReduce = Literal["mean", "max", "peak"]
MAP_REDUCES: tuple[str, ...] = ("mean", "max", "peak")

# the image score from an anomaly map, by the extent of a task's anomalies (AnomalyTask.extent)
MAP_REDUCE = {"global": "mean", "local": "peak"}


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
      cancels. The best of the three for local defects (results/ablations-textures.md, notebook 07).
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
