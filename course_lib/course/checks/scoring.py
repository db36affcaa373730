"""Self-checks for the exercises of notebook 06 (anomaly scores from a diffusion model).

* ``check_noise_prediction_map``: the per-pixel noise-prediction error at one timestep, checked with
  an *oracle* denoiser whose optimal noise prediction is known in closed form (Gaussian data), in float64.
* ``check_ddim_reconstruction``: the paper's reconstruction (noise to t*, DDIM back with eta = 0), with the
  same oracle, against the update of Song et al. (2021, eq. 12) iterated in float64.
* ``check_smooth_maps``: Gaussian smoothing of anomaly maps, checked against
  ``scipy.ndimage.gaussian_filter`` (mode "mirror", which is torch's "reflect" padding).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from course_lib.course.checks._core import call_learner as _call, fail, passed

__all__ = ["GaussianEpsOracle", "check_noise_prediction_map", "check_smooth_maps", "check_ddim_reconstruction"]



def _as_array(x, what: str, shape: tuple[int, ...]) -> np.ndarray:
    if not isinstance(x, torch.Tensor):
        fail(what, f"return a torch tensor, got {type(x).__name__}.")
    if tuple(x.shape) != shape:
        fail(what, f"expected an output of shape {shape}, got {tuple(x.shape)}.",
             "One map per image with a single channel: average the squared error over the channels "
             "with .mean(1, keepdim=True), and do not reduce over the pixels.")
    return x.detach().cpu().double().numpy()


class GaussianEpsOracle(torch.nn.Module):
    """The best possible noise predictor when every pixel of the data is i.i.d. N(mu, s^2).

    x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps is jointly Gaussian with eps, so
    E[eps | x_t] = sqrt(1 - abar) (x_t - sqrt(abar) mu) / (abar s^2 + 1 - abar).
    Called like the course's networks, ``model(x_t, t)`` with t a long tensor of shape (B,) holding
    0-indexed code levels; ``abar`` is the table of alphas_cumprod it looks t up in.
    """

    def __init__(self, abar: torch.Tensor, mu: float = 0.3, s: float = 0.5):
        super().__init__()
        self.abar, self.mu, self.s = abar.double(), mu, s

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if not isinstance(t, torch.Tensor) or t.shape != (x_t.shape[0],) or t.is_floating_point():
            raise TypeError(f"the model takes t as an integer tensor of shape (B,) = ({x_t.shape[0]},), got "
                            f"{t!r}; build it with torch.full((B,), t, dtype=torch.long).")
        a = self.abar[t].view(-1, *([1] * (x_t.ndim - 1)))                     # (B, 1, 1, 1)
        return (1 - a).sqrt() * (x_t.double() - a.sqrt() * self.mu) / (a * self.s ** 2 + 1 - a)


def oracle_case(seed: int, shape: tuple[int, ...]):
    """What the oracle-based checks share: the linear schedule's abar table (T = 1000, float64), the Gaussian
    oracle on it, a generator, and clean images x0 ~ N(0.3, 0.5^2) of ``shape``."""
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
    g = torch.Generator().manual_seed(seed)
    x0 = 0.3 + 0.5 * torch.randn(shape, generator=g, dtype=torch.float64)
    return abar, GaussianEpsOracle(abar), g, x0


def check_noise_prediction_map(fn: Callable) -> bool:
    """``fn(model, x0, eps, t, abar_t) -> (B, 1, H, W)``: the map (eps - eps_theta(x_t, t))^2 averaged over
    the channels, with x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps and ``model(x_t, t_batch)``."""
    what = "noise-prediction error map"
    abar, oracle, g, x0 = oracle_case(5, (2, 3, 5, 4))
    shape = x0.shape
    eps = torch.randn(shape, generator=g, dtype=torch.float64)
    for t in (24, 249, 699):
        a = float(abar[t])
        x_t = math.sqrt(a) * x0.numpy() + math.sqrt(1 - a) * eps.numpy()
        k = math.sqrt(1 - a) / (a * oracle.s ** 2 + 1 - a)
        eps_hat = k * (x_t - math.sqrt(a) * oracle.mu)                           # the oracle, written out again
        want = ((eps.numpy() - eps_hat) ** 2).mean(1, keepdims=True)              # (B, 1, H, W)
        got = _as_array(_call(fn, what, oracle, x0.clone(), eps.clone(), t, a), what, (2, 1, 5, 4))
        if np.allclose(got, want, rtol=1e-5, atol=1e-6):
            continue
        from_x0 = ((eps.numpy() - k * (x0.numpy() - math.sqrt(a) * oracle.mu)) ** 2).mean(1, keepdims=True)
        x_t_lin = a * x0.numpy() + (1 - a) * eps.numpy()
        lin = ((eps.numpy() - k * (x_t_lin - math.sqrt(a) * oracle.mu)) ** 2).mean(1, keepdims=True)
        if np.allclose(got, from_x0, rtol=1e-6):
            fail(what, "you gave the network the clean image x_0.",
                 "The network sees the *noisy* image: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps.")
        if np.allclose(got, lin, rtol=1e-6):
            fail(what, "you scaled by abar_t and (1 - abar_t) instead of their square roots.")
        if np.allclose(got, 3 * want, rtol=1e-6):
            fail(what, "you summed over the 3 channels; the map is their mean.", "Use .mean(1, keepdim=True).")
        absolute = np.abs(eps.numpy() - eps_hat).mean(1, keepdims=True)
        if np.allclose(got, absolute, rtol=1e-5) or np.allclose(got, np.sqrt(want), rtol=1e-5):
            fail(what, "your map is not the squared error averaged over channels.",
                 "(eps - eps_hat).pow(2).mean(1, keepdim=True): square first, then average.")
        fail(what, f"at t = {t} your map differs from (eps - eps_theta(x_t, t))^2 by up to "
                   f"{np.abs(got - want).max():.3g}.",
             "x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps; eps_hat = model(x_t, torch.full((B,), t)); "
             "map = (eps - eps_hat)^2 averaged over the channels.")
    return passed(what)


def check_smooth_maps(fn: Callable) -> bool:
    """``fn(maps, sigma) -> maps``: Gaussian blur of (B, 1, H, W) maps with a kernel of radius round(3 sigma),
    normalized to sum 1, reflect padding. Compared with scipy.ndimage.gaussian_filter (mode "mirror")."""
    from scipy.ndimage import gaussian_filter
    what = "Gaussian smoothing of anomaly maps"
    g = torch.Generator().manual_seed(7)
    maps = torch.rand((2, 1, 14, 15), generator=g, dtype=torch.float64)
    const = _as_array(_call(fn, what, torch.full((1, 1, 14, 15), 2.0, dtype=torch.float64), 1.5), what,
                      (1, 1, 14, 15))
    if not np.allclose(const, 2.0, rtol=1e-6):
        fail(what, f"smoothing a constant map of 2.0 gives values in [{const.min():.4g}, {const.max():.4g}].",
             "Normalize the kernel so that it sums to 1 (k = k / k.sum()), and pad by reflection, not zeros.")
    for sigma in (1.0, 2.0):
        want = gaussian_filter(maps.numpy(), sigma=(0, 0, sigma, sigma), mode="mirror", truncate=3.0)
        got = _as_array(_call(fn, what, maps.clone(), sigma), what, tuple(maps.shape))
        if np.allclose(got, want, rtol=1e-6, atol=1e-9):
            continue
        r = int(round(3 * sigma))
        inner = (slice(None), slice(None), slice(r, -r), slice(r, -r))
        if np.allclose(got[inner], want[inner], rtol=1e-6, atol=1e-9):
            fail(what, f"with sigma = {sigma} the inside of the map is right but the border is not.",
                 "Pad by reflection before the convolution: F.pad(maps, (r, r, r, r), mode='reflect').")
        fail(what, f"with sigma = {sigma} your result differs from a Gaussian blur by up to "
                   f"{np.abs(got - want).max():.3g}.",
             "k(x) = exp(-x^2 / (2 sigma^2)) for x = -r..r with r = round(3 sigma), normalized; convolve the "
             "rows, then the columns (the 2-D Gaussian is separable).")
    return passed(what)


def _ddim_reference(model, x0, eps, abar, taus, *, renoise_with=None, last_to_x0=True, start_clean=False):
    """DDIM (eta = 0) from x_{taus[0]} down the code levels ``taus`` to hat x_0, in float64; the keyword
    arguments give the variants a learner plausibly writes instead."""
    a0 = abar[taus[0]]
    x = x0.clone() if start_clean else a0.sqrt() * x0 + (1 - a0).sqrt() * eps
    for i, tau in enumerate(taus):
        eps_hat = model(x, torch.full((len(x),), tau, dtype=torch.long))
        x0_hat = (x - (1 - abar[tau]).sqrt() * eps_hat) / abar[tau].sqrt()
        last = i + 1 == len(taus)
        if last and last_to_x0:
            return x0_hat
        a_prev = abar[taus[i + 1]] if not last else abar[0]
        x = a_prev.sqrt() * x0_hat + (1 - a_prev).sqrt() * (eps if renoise_with == "eps" else eps_hat)
    return x


def check_ddim_reconstruction(fn: Callable) -> bool:
    """``fn(model, x0, eps, abar, taus) -> hat x_0``: noise x0 to the code level taus[0] with eps, then run
    deterministic DDIM (eta = 0) down the levels ``taus`` (descending, ending at 0); the last step returns the
    estimate hat x_0. ``abar`` is the table of alphas_cumprod, ``model(x_t, t)`` takes t as a long tensor (B,)."""
    what = "DDIM reconstruction"
    abar, oracle, g, x0 = oracle_case(17, (3, 2, 4, 4))
    shape = tuple(x0.shape)
    x0[:, :, 1, 1] += 2.0                                                  # a "defect" the oracle cannot explain
    eps = torch.randn(shape, generator=g, dtype=torch.float64)
    for taus in ([249, 124, 0], [99, 66, 33, 0], [24]):
        want = _ddim_reference(oracle, x0, eps, abar, taus).numpy()
        got = _reconstruction(fn, what, oracle, x0, eps, abar, taus, shape)
        if np.allclose(got, want, rtol=1e-6, atol=1e-8):
            continue
        variants = {
            "your last step re-noises to level 0; it should return the estimate hat x_0 itself.":
                dict(last_to_x0=False),
            "you re-noise with the original eps; DDIM re-noises with the predicted noise eps_hat.":
                dict(renoise_with="eps"),
            "you start from the clean x0; first noise it to the level taus[0] with eps.": dict(start_clean=True),
        }
        for problem, kw in variants.items():
            if np.allclose(got, _ddim_reference(oracle, x0, eps, abar, taus, **kw).numpy(), rtol=1e-6, atol=1e-8):
                fail(what, problem)
        fail(what, f"on the levels {taus} your reconstruction is off by up to {np.abs(got - want).max():.3g}.",
             "x = sqrt(abar[taus[0]]) x0 + sqrt(1 - abar[taus[0]]) eps; at each level: eps_hat = model(x, t), "
             "hat x_0 = (x - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t), then x = sqrt(abar_next) hat x_0 + "
             "sqrt(1 - abar_next) eps_hat; after the last level return hat x_0.")
    return passed(what)


def _reconstruction(fn, what, model, x0, eps, abar, taus, shape) -> np.ndarray:
    out = _call(fn, what, model, x0.clone(), eps.clone(), abar.clone(), list(taus))
    if not isinstance(out, torch.Tensor):
        fail(what, f"return a torch tensor, got {type(out).__name__}.")
    if tuple(out.shape) != shape:
        fail(what, f"expected hat x_0 of the input's shape {shape}, got {tuple(out.shape)}.")
    return out.detach().cpu().double().numpy()
