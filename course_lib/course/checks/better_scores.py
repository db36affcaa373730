"""Self-checks for the exercises of notebook 07 (making the noise score better).

* ``check_z_map``: the calibrated anomaly map, checked against ``anomaly_maps.calibrate_maps`` and
  ``standardize_maps`` in float64 on level maps built so that each typical mistake changes the answer.
* ``check_even_residual_map``: the squared even part of the noise-prediction residual from a pair
  (eps, -eps), checked with the Gaussian oracle, for which the even part has a closed form.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from course_lib.anomaly_maps import calibrate_maps, standardize_maps
from course_lib.course.checks._core import call_learner as _call, fail, passed
from course_lib.course.checks.scoring import _as_array, oracle_case

__all__ = ["check_z_map", "check_even_residual_map"]


def _z_reference(levels, normal_levels, floor, *, unbiased=True, floor_on=True, per_level=True):
    """The z-map, and the variants a learner plausibly writes instead (all float64 numpy)."""
    mean = normal_levels.mean(1, keepdims=True)
    std = normal_levels.std(1, ddof=1 if unbiased else 0, keepdims=True)
    if floor_on:
        scale = std.mean(axis=(2, 3, 4), keepdims=True) if per_level else std.mean(keepdims=True)
        std = np.maximum(std, floor * scale)
    with np.errstate(divide="ignore", invalid="ignore"):                 # the unfloored variant divides by 0
        return ((levels - mean) / std).mean(0)


def check_z_map(fn: Callable) -> bool:
    """``fn(levels, normal_levels, floor) -> (B, 1, H, W)``: the calibrated map. ``levels`` (L, B, 1, H, W)
    are the test images' maps per noise level, ``normal_levels`` (L, N, 1, H, W) the normal images' maps.
    Per level and pixel: z = (A - mean) / std over the N normal images (torch's std, N - 1), the std floored
    at ``floor`` times its mean over the image of that level; then the mean of z over the levels."""
    what = "calibrated z-map"
    g = torch.Generator().manual_seed(11)
    L, N, B, H, W = 3, 12, 2, 6, 5
    scales = torch.tensor([4.0, 1.0, 0.05], dtype=torch.float64).view(L, 1, 1, 1, 1)   # levels differ in size
    normal = scales * (1 + torch.rand((L, N, 1, H, W), generator=g, dtype=torch.float64))
    normal[:, :, :, 0, 0] = scales[:, :, :, 0, 0] * 1.5          # a pixel that never varies: the floor matters
    levels = scales * (1 + 2 * torch.rand((L, B, 1, H, W), generator=g, dtype=torch.float64))
    floor = 0.1
    cal = calibrate_maps(normal, floor)
    want = standardize_maps(levels, cal).mean(0).numpy()
    assert np.allclose(want, _z_reference(levels.numpy(), normal.numpy(), floor))   # the library, written out
    got = _as_array(_call(fn, what, levels.clone(), normal.clone(), floor), what, (B, 1, H, W))
    if np.allclose(got, want, rtol=1e-5, atol=1e-5):                     # float32 answers pass too
        return passed(what)
    if not np.isfinite(got).all():
        fail(what, "your map has inf or NaN values.",
             "A pixel whose normal maps never vary has std 0: floor the std at floor x its mean over the image.")
    variants = {
        "you used the std that divides by N; torch's .std() (and the library) divide by N - 1.":
            dict(unbiased=False),
        "you did not floor the std.": dict(floor_on=False),
        "you floored the std at the mean over all levels; each level needs its own floor (a small t has far "
        "larger errors than a large one).": dict(per_level=False),
    }
    for problem, kw in variants.items():
        if np.allclose(got, _z_reference(levels.numpy(), normal.numpy(), floor, **kw), rtol=1e-6, atol=1e-8):
            fail(what, problem, "std = normal_levels.std(1, keepdim=True); "
                                "std = torch.maximum(std, floor * std.mean(dim=(2, 3, 4), keepdim=True)).")
    pooled = normal.numpy().std(axis=(1, 3, 4), ddof=1, keepdims=True)
    if np.allclose(got, ((levels.numpy() - normal.numpy().mean(1, keepdims=True)) / pooled).mean(0), rtol=1e-6):
        fail(what, "you took one std per level over all pixels; the calibration keeps one per pixel.",
             "Reduce over the normal images only: dimension 1 of (L, N, 1, H, W).")
    fail(what, f"your map differs from the calibrated z-map by up to {np.abs(got - want).max():.3g}.",
         "Per level: mean and std over the N normal images (dimension 1), std floored; z = (A - mean) / std; "
         "then average z over the levels (dimension 0).")


def check_even_residual_map(fn: Callable) -> bool:
    """``fn(model, x0, eps, t, abar_t) -> (B, 1, H, W)``: with r(e) = e - model(x_t(e), t), the map
    ((r(eps) + r(-eps)) / 2)^2 averaged over the channels. For the Gaussian oracle the even part is exactly
    -c sqrt(abar_t) (x0 - mu) with c = sqrt(1 - abar_t) / (abar_t s^2 + 1 - abar_t): it does not depend on eps."""
    what = "even part of the noise residual"
    abar, oracle, g, x0 = oracle_case(13, (2, 3, 5, 4))
    shape = x0.shape
    x0[:, :, 1:3, 1:3] += 1.5                                               # a "defect" the even part sees
    for t in (24, 399):
        eps = torch.randn(shape, generator=g, dtype=torch.float64)
        a = float(abar[t])
        c = math.sqrt(1 - a) / (a * oracle.s ** 2 + 1 - a)
        even = -c * math.sqrt(a) * (x0.numpy() - oracle.mu)
        odd = (1 - c * math.sqrt(1 - a)) * eps.numpy()
        want = (even ** 2).mean(1, keepdims=True)
        got = _as_array(_call(fn, what, oracle, x0.clone(), eps.clone(), t, a), what, (2, 1, 5, 4))
        if np.allclose(got, want, rtol=1e-5, atol=1e-8):
            continue
        mistakes = {
            "your map is even² + odd²: you averaged the two squared residuals, which keeps the noise's part.":
                ((even ** 2 + odd ** 2)).mean(1, keepdims=True),
            "your map is the odd part (the difference of the two residuals), the network's error about the noise.":
                (odd ** 2).mean(1, keepdims=True),
            "your map is one draw's squared residual: the second residual must use -eps, both in x_t and in "
            "r = e - eps_hat.": ((even + odd) ** 2).mean(1, keepdims=True),
            "you summed over the 3 channels; the map is their mean.": 3 * want,
            "you squared the sum of the two residuals without halving it.": 4 * want,
        }
        for problem, value in mistakes.items():
            if np.allclose(got, value, rtol=1e-5, atol=1e-8):
                fail(what, problem, "r_plus = eps - model(x_t(eps), t); r_minus = -eps - model(x_t(-eps), t); "
                                    "map = ((r_plus + r_minus) / 2) ** 2 averaged over the channels.")
        fail(what, f"at t = {t} your map differs from ((r(eps) + r(-eps)) / 2)^2 by up to "
                   f"{np.abs(got - want).max():.3g}.",
             "x_t(e) = sqrt(abar_t) x0 + sqrt(1 - abar_t) e for e = eps and e = -eps; r(e) = e - model(x_t(e), t).")
    return passed(what)
