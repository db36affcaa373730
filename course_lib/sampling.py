"""Samplers: ancestral DDPM, DDIM (eta), partial noising and denoising (``reconstruct``), DDIM inversion.

Every sampler returns ``(x, nfe)``: the result and the number of network evaluations per example.
Every sampler takes ``generator`` (a ``torch.Generator`` on any device, or None) for determinism,
runs on the device of its input, calls the network as ``model(x_t, t)`` with t a long tensor of
shape (B,), and shows a ``tqdm`` bar with ``progress=True``.

Timesteps. Two conventions meet here, and each function says which it uses:
  * code level ``t`` (0-indexed, as in :class:`~course_lib.diffusion.Diffusion`): x_t = q_sample(x0, t),
    t in [0, T-1]. Used by ``ddpm_denoise`` and ``ddim_denoise``.
  * paper level ``t_star`` (1-indexed, as in Ho et al. 2020 and the anomaly-detection papers):
    x_{t*} ~ q(x_{t*} | x_0), t* in [1, T]; t* = T is pure noise, t* = 1 the first noising step.
    Code level = t* - 1. Used by ``reconstruct`` and ``ddim_invert``.

References: Ho et al. 2020 (DDPM, Algorithm 2); Song, Meng & Ermon 2021 (DDIM, eq. 12 and 16);
Nichol & Dhariwal 2021 (respacing, sec. 4); Wolleb et al. 2022 and Graham et al. 2023 for
noising to t* and denoising back as an anomaly score.
"""
from __future__ import annotations

import functools
from typing import Literal, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .diffusion import Diffusion, Model, Variance

SamplerName = Literal[
    "ddim",  # deterministic for eta = 0 (Song et al. 2021); K steps on a sub-sequence of timesteps
    "ddpm",  # ancestral sampling (Ho et al. 2020, Alg. 2); all t* steps, or respaced to K steps
]


def grad_through_images(fn):
    """Run `fn` without autograd, unless the images it is given (its first tensor argument) require grad:
    then gradients flow back to them, for an adversarial attack on a score (course_lib.programs.robustness).
    Sampling and scoring never build a graph otherwise, whatever the network's parameters say."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        images = next((a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)), None)
        with torch.set_grad_enabled(images is not None and images.requires_grad):
            return fn(*args, **kwargs)
    return wrapper


def randn(shape: Sequence[int], *, generator: torch.Generator | None = None,
          device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise drawn on the generator's device, then moved to ``device``."""
    gen_device = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, device=gen_device, dtype=dtype).to(device)


def _t_batch(diffusion: Diffusion, t: int, x: torch.Tensor) -> torch.Tensor:
    return diffusion.timesteps(int(t), x.shape[0], x.device)  # (B,), checked on the int: no device sync


def _check_level(diffusion: Diffusion, t: int, name: str = "t") -> int:
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)):
        raise TypeError(f"{name} must be a Python int (a code level in [0, {diffusion.T - 1}]), got {t!r}.")
    if not 0 <= int(t) < diffusion.T:
        raise ValueError(f"{name} = {t} is outside [0, {diffusion.T - 1}] (0-indexed code levels).")
    return int(t)


def check_t_star(diffusion: Diffusion, t_star: int) -> int:
    """Validate a 1-indexed paper level t* in [1, T] and return it as an int."""
    if isinstance(t_star, bool) or not isinstance(t_star, (int, np.integer)):
        raise TypeError(f"t_star must be an int in [1, {diffusion.T}] (1-indexed, as in the paper), got {t_star!r}.")
    if not 1 <= int(t_star) <= diffusion.T:
        raise ValueError(f"t_star = {t_star} is outside [1, {diffusion.T}]: t_star is 1-indexed as in the paper "
                         f"(x_(t*) = q_sample(x0, t_star - 1) in Diffusion's 0-indexed code levels).")
    return int(t_star)


def ddim_timesteps(t_start: int, steps: int) -> list[int]:
    """K = ``steps`` code levels, evenly spaced, descending from ``t_start`` to 0 (just [t_start] if K = 1)."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= t_start + 1:
        raise ValueError(f"steps must be an int in [1, {t_start + 1}] (one network evaluation per step, "
                         f"at most one per level from t = {t_start} down to 0), got {steps!r}.")
    return [int(round(v)) for v in np.linspace(t_start, 0, int(steps))]


def ddim_sigma(diffusion: Diffusion, t: int, t_prev: int, eta: float) -> float:
    """sigma_t(eta) = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev)  (Song et al. 2021, eq. 16).

    ``t_prev = -1`` means the clean data (abar = 1). For t_prev = t - 1 and eta = 1 this is the DDPM
    posterior standard deviation sqrt(tilde beta_t).
    """
    abar64 = diffusion.alphas_cumprod_f64
    abar, abar_prev = float(abar64[t]), (1.0 if t_prev < 0 else float(abar64[t_prev]))
    return eta * float(np.sqrt((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)))


def ddim_step(diffusion: Diffusion, model: Model, x_t: torch.Tensor, t: int, t_prev: int, *,
              eta: float = 0.0, noise: torch.Tensor | None = None, clip_denoised: bool = False) -> torch.Tensor:
    """x_{t_prev} = sqrt(abar_prev) hat x_0 + sqrt(1 - abar_prev - sigma^2) hat eps + sigma z  (Song et al. 2021, eq. 12).

    Code levels; ``t_prev = -1`` returns hat x_0. ``noise`` is z (drawn only when sigma > 0).
    """
    tb = _t_batch(diffusion, t, x_t)
    pred_x0, pred_eps = diffusion.split_output(model(x_t, tb), x_t, tb)
    if clip_denoised:
        pred_x0 = pred_x0.clamp(-1, 1)
        pred_eps = diffusion.eps_from_x0(x_t, tb, pred_x0)
    abar_prev = 1.0 if t_prev < 0 else float(diffusion.alphas_cumprod_f64[t_prev])
    sigma = ddim_sigma(diffusion, t, t_prev, eta)
    x_prev = abar_prev ** 0.5 * pred_x0 + max(1.0 - abar_prev - sigma ** 2, 0.0) ** 0.5 * pred_eps
    if sigma > 0:
        if noise is None:
            noise = torch.randn_like(x_t)
        x_prev = x_prev + sigma * noise
    return x_prev


@grad_through_images
def ddim_denoise(diffusion: Diffusion, model: Model, x_t: torch.Tensor, t: int, *, steps: int | None = None,
                 eta: float = 0.0, clip_denoised: bool = False, generator: torch.Generator | None = None,
                 progress: bool = False) -> tuple[torch.Tensor, int]:
    """DDIM from code level ``t`` back to x_0 in K = ``steps`` evaluations (default: all t + 1 levels)."""
    t = _check_level(diffusion, t)
    if eta < 0:
        raise ValueError(f"eta must be >= 0 (0 = deterministic DDIM, 1 = DDPM variance), got {eta}.")
    taus = ddim_timesteps(t, t + 1 if steps is None else steps)
    x = x_t
    for i in tqdm(range(len(taus)), disable=not progress, desc="DDIM"):
        t_prev = taus[i + 1] if i + 1 < len(taus) else -1
        noise = randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) if eta > 0 else None
        x = ddim_step(diffusion, model, x, taus[i], t_prev, eta=eta, noise=noise, clip_denoised=clip_denoised)
    return x, len(taus)


@grad_through_images
def ddpm_denoise(diffusion: Diffusion, model: Model, x_t: torch.Tensor, t: int, *,
                 variance: Variance = "fixed_small", clip_denoised: bool = False,
                 generator: torch.Generator | None = None, progress: bool = False) -> tuple[torch.Tensor, int]:
    """Ancestral sampling from code level ``t`` down to x_0, t + 1 evaluations  (Ho et al. 2020, Algorithm 2).

    x_{s-1} = mu_theta(x_s, s) + sigma_s z for every level s = t..0, with no noise on the last step.
    """
    t = _check_level(diffusion, t)
    x = x_t
    for s in tqdm(range(t, -1, -1), disable=not progress, desc="DDPM"):
        out = diffusion.p_mean_variance(model, x, _t_batch(diffusion, s, x), variance=variance, clip_denoised=clip_denoised)
        if s > 0:
            z = randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = out.mean + torch.exp(0.5 * out.log_variance) * z
        else:
            x = out.mean
    return x, t + 1


def ddpm_sample(diffusion: Diffusion, model: Model, shape: Sequence[int], *, device: torch.device | str = "cpu",
                variance: Variance = "fixed_small", clip_denoised: bool = False,
                generator: torch.Generator | None = None, progress: bool = False) -> tuple[torch.Tensor, int]:
    """Generate from x_T ~ N(0, I) with all T ancestral steps; returns (x_0 (shape), nfe = T)."""
    x_T = randn(shape, generator=generator, device=device)
    return ddpm_denoise(diffusion, model, x_T, diffusion.T - 1, variance=variance,
                        clip_denoised=clip_denoised, generator=generator, progress=progress)


def ddim_sample(diffusion: Diffusion, model: Model, shape: Sequence[int], *, steps: int = 50, eta: float = 0.0,
                device: torch.device | str = "cpu", clip_denoised: bool = False,
                generator: torch.Generator | None = None, progress: bool = False) -> tuple[torch.Tensor, int]:
    """Generate from x_T ~ N(0, I) with K = ``steps`` DDIM steps; returns (x_0 (shape), nfe = K)."""
    x_T = randn(shape, generator=generator, device=device)
    return ddim_denoise(diffusion, model, x_T, diffusion.T - 1, steps=steps, eta=eta,
                        clip_denoised=clip_denoised, generator=generator, progress=progress)


@grad_through_images
def reconstruct(diffusion: Diffusion, model: Model, x0: torch.Tensor, t_star: int, *, steps: int | None = None,
                sampler: SamplerName = "ddim", eta: float = 0.0, variance: Variance = "fixed_small",
                clip_denoised: bool = False, noise: torch.Tensor | None = None,
                generator: torch.Generator | None = None, progress: bool = False) -> tuple[torch.Tensor, int]:
    """Noise x_0 to level t*, then denoise back to hat x_0: the reconstruction behind the anomaly score.

    t_star: 1-indexed paper level in [1, T]; x_{t*} = diffusion.q_sample(x0, t_star - 1, noise).
    steps:  K network evaluations for the way back (default t*: every level).
    sampler="ddim": DDIM with ``eta`` on K evenly spaced levels (eta = 0: deterministic given the noise).
    sampler="ddpm": ancestral sampling; with K = t* it uses p(x_{t-1}|x_t) with ``variance`` at every
      level, with K < t* the chain is respaced to K levels (Nichol & Dhariwal 2021, sec. 4), which is
      exactly DDIM with eta = 1 on those levels (fixed_small variance only).
    Returns (hat x_0 with x0's shape, nfe per example = K).
    """
    t_star = check_t_star(diffusion, t_star)
    if sampler not in ("ddim", "ddpm"):
        raise ValueError(f"Unknown sampler {sampler!r}; valid: 'ddim', 'ddpm'.")
    if noise is None:
        noise = randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    x_t = diffusion.q_sample(x0, t_star - 1, noise)
    K = t_star if steps is None else steps
    ddim_timesteps(t_star - 1, K)  # validates steps in [1, t*]
    if sampler == "ddim":
        return ddim_denoise(diffusion, model, x_t, t_star - 1, steps=K, eta=eta, clip_denoised=clip_denoised,
                            generator=generator, progress=progress)
    if eta != 0.0:
        raise ValueError("eta applies to sampler='ddim' only; sampler='ddpm' is ancestral (like eta = 1).")
    if K == t_star:
        return ddpm_denoise(diffusion, model, x_t, t_star - 1, variance=variance, clip_denoised=clip_denoised,
                            generator=generator, progress=progress)
    if variance != "fixed_small":
        raise ValueError("A respaced DDPM (steps < t_star) supports variance='fixed_small' only; "
                         "use steps=None for fixed_large.")
    return ddim_denoise(diffusion, model, x_t, t_star - 1, steps=K, eta=1.0, clip_denoised=clip_denoised,
                        generator=generator, progress=progress)


@torch.no_grad()
def ddim_invert(diffusion: Diffusion, model: Model, x0: torch.Tensor, t_star: int | None = None, *,
                steps: int | None = None, fixed_point_iters: int = 0,
                progress: bool = False) -> tuple[torch.Tensor, int]:
    """Run the deterministic DDIM ODE forwards: x_0 -> x_{t*}  (Song et al. 2021, sec. 4.3 and eq. 13).

    On the K levels that ``ddim_denoise(..., t_star - 1, steps=K)`` visits, each step is
    x_next = sqrt(abar_next) hat x_0 + sqrt(1 - abar_next) hat eps, with hat x_0 = (x - sqrt(1 - abar) hat eps)
    / sqrt(abar). Plain inversion (``fixed_point_iters=0``) takes hat eps = eps_theta(x, t) at the current
    level, so DDIM-denoising the result returns x_0 only up to a first-order error in the step size.
    ``fixed_point_iters=n`` refines hat eps = eps_theta(x_next, t_next) n times: at the fixed point the
    denoising step is inverted exactly (Pan et al. 2023, "Effective real image editing with accelerated
    iterative diffusion inversion"). t_star: 1-indexed, default T. Returns (x_{t*}, nfe = K (1 + n)).
    """
    t_star = diffusion.T if t_star is None else check_t_star(diffusion, t_star)
    if isinstance(fixed_point_iters, bool) or not isinstance(fixed_point_iters, int) or fixed_point_iters < 0:
        raise ValueError(f"fixed_point_iters must be an int >= 0, got {fixed_point_iters!r}.")
    taus = ddim_timesteps(t_star - 1, t_star if steps is None else steps)[::-1]  # ascending
    abar = diffusion.alphas_cumprod_f64
    x = x0
    for i in tqdm(range(len(taus)), disable=not progress, desc="DDIM inversion"):
        a_cur = 1.0 if i == 0 else float(abar[taus[i - 1]])       # x_0 (clean) before the first step
        a_next = float(abar[taus[i]])
        t_eval = taus[max(i - 1, 0)]  # the current level (for the clean x_0: the lowest level)
        tb = _t_batch(diffusion, t_eval, x)
        _, eps = diffusion.split_output(model(x, tb), x, tb)
        for _ in range(fixed_point_iters + 1):
            x_next = a_next ** 0.5 * (x - (1 - a_cur) ** 0.5 * eps) / a_cur ** 0.5 + (1 - a_next) ** 0.5 * eps
            if _ < fixed_point_iters:
                tb = _t_batch(diffusion, taus[i], x)
                _, eps = diffusion.split_output(model(x_next, tb), x_next, tb)
        x = x_next
    return x, len(taus) * (1 + fixed_point_iters)
