"""The variational bound of a DDPM: Gaussian KL, the decoder likelihood, the prior term, bits/dim.

-log p(x_0) <= L = L_T + sum_{t>1} L_{t-1} + L_0     (Ho et al. 2020, eq. 5), with
  L_T     = KL(q(x_T | x_0) || N(0, I))                       the prior term (no parameters),
  L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t))  Gaussian vs Gaussian, closed form,
  L_0     = -log p_theta(x_0 | x_1)                           the decoder, discretized to 8 bits.
The pure functions mirror improved-diffusion's ``losses.py`` (Nichol & Dhariwal 2021); the exact CDF
is used instead of the tanh approximation. Code timesteps are 0-indexed (see :mod:`course_lib.diffusion`):
code t = 0 is the decoder term L_0, code t >= 1 is the KL term L_t.
"""
from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
from tqdm.auto import tqdm

from .diffusion import Diffusion, Model, Variance

Decoder = Literal[
    "discretized",  # 8-bit images in [-1, 1]: probability mass of the pixel's bin (bits/dim of the data)
    "gaussian",     # continuous data (toy 2-D): log-density, so "bits/dim" can be negative
]
LOG2 = math.log(2.0)


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over all but the batch axis: (B, ...) -> (B,)."""
    return x.reshape(x.shape[0], -1).mean(dim=1)


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor,
              mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) in nats, elementwise (inputs broadcast).

    KL = 1/2 [ log(s2^2/s1^2) + (s1^2 + (m1 - m2)^2) / s2^2 - 1 ]   (e.g. Kingma & Welling 2014, app. B).
    """
    tensors = [a for a in (mean1, logvar1, mean2, logvar2) if isinstance(a, torch.Tensor)]
    if not tensors:
        raise TypeError("normal_kl needs at least one torch.Tensor argument.")
    mean1, logvar1, mean2, logvar2 = (torch.as_tensor(a, dtype=tensors[0].dtype, device=tensors[0].device)
                                      for a in (mean1, logvar1, mean2, logvar2))
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1.0)


def standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """Phi(x) = (1 + erf(x / sqrt 2)) / 2."""
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def discretized_gaussian_log_likelihood(x: torch.Tensor, *, means: torch.Tensor, log_scales: torch.Tensor,
                                        bins: int = 256) -> torch.Tensor:
    """log P(x) for x on the grid of ``bins`` values in [-1, 1], under N(means, exp(log_scales)^2)
    integrated over the pixel's bin  (Ho et al. 2020, eq. 13). Elementwise, in nats, shape of x.

    Bin k is centred on c_k = -1 + 2k/(bins-1) and spans c_k +- 1/(bins-1); the first and last bins
    extend to -inf and +inf, so the probabilities of all bins sum to one.
    """
    if x.shape != means.shape:
        raise ValueError(f"x shape {tuple(x.shape)} must match means shape {tuple(means.shape)}.")
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}.")
    half = 1.0 / (bins - 1)
    centred = x - means
    inv_std = torch.exp(-log_scales)
    cdf_plus = standard_normal_cdf(inv_std * (centred + half))
    cdf_min = standard_normal_cdf(inv_std * (centred - half))
    tiny = torch.finfo(x.dtype).tiny
    log_cdf_plus = torch.log(cdf_plus.clamp(min=tiny))            # bin (-inf, c_0 + half]
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=tiny))  # bin [c_last - half, inf)
    log_probs = torch.where(
        x < -1.0 + half, log_cdf_plus,
        torch.where(x > 1.0 - half, log_one_minus_cdf_min,
                    torch.log((cdf_plus - cdf_min).clamp(min=tiny))))
    return log_probs


def gaussian_log_likelihood(x: torch.Tensor, *, means: torch.Tensor, log_scales: torch.Tensor) -> torch.Tensor:
    """log N(x; means, exp(log_scales)^2), a continuous density, elementwise in nats."""
    if x.shape != means.shape:
        raise ValueError(f"x shape {tuple(x.shape)} must match means shape {tuple(means.shape)}.")
    return -0.5 * (math.log(2 * math.pi) + 2 * log_scales + ((x - means) * torch.exp(-log_scales)) ** 2)


def prior_bpd(diffusion: Diffusion, x0: torch.Tensor) -> torch.Tensor:
    """L_T = KL(q(x_T | x_0) || N(0, I)) in bits/dim, shape (B,). Needs no network."""
    t = torch.full((x0.shape[0],), diffusion.T - 1, dtype=torch.long, device=x0.device)
    mean, _, log_var = diffusion.q_mean_variance(x0, t)
    return mean_flat(normal_kl(mean, log_var, 0.0, 0.0)) / LOG2


def vlb_terms(diffusion: Diffusion, model: Model, x0: torch.Tensor, t: torch.Tensor, *,
              noise: torch.Tensor | None = None, variance: Variance = "fixed_small",
              decoder: Decoder = "discretized", clip_denoised: bool = False) -> torch.Tensor:
    """One term of the bound per example, in bits/dim, shape (B,); one network evaluation.

    Code t = 0: the decoder L_0 = -log p(x_0 | x_1). Code t >= 1: L_t = KL(q(x_t | x_{t+1}, x_0) ||
    p(x_t | x_{t+1})) in paper indexing, with x_{t+1} ~ q(. | x_0) drawn with ``noise``.
    """
    if decoder not in ("discretized", "gaussian"):
        raise ValueError(f"Unknown decoder {decoder!r}; valid: 'discretized', 'gaussian'.")
    t = diffusion.check_t(t, x0)
    x_t = diffusion.q_sample(x0, t, noise)
    true_mean, _, true_log_var = diffusion.q_posterior_mean_variance(x0, x_t, t)
    out = diffusion.p_mean_variance(model, x_t, t, variance=variance, clip_denoised=clip_denoised)
    kl = mean_flat(normal_kl(true_mean, true_log_var, out.mean, out.log_variance)) / LOG2
    log_scales = (0.5 * out.log_variance).expand_as(x0)
    if decoder == "discretized":
        nll = -discretized_gaussian_log_likelihood(x0, means=out.mean, log_scales=log_scales)
    else:
        nll = -gaussian_log_likelihood(x0, means=out.mean, log_scales=log_scales)
    nll = mean_flat(nll) / LOG2
    return torch.where(t == 0, nll, kl)


class BitsPerDim(NamedTuple):
    """The bound on -log2 p(x_0) per dimension, per example, and how it was computed."""

    total: torch.Tensor  # (B,) L_T + sum_t L_t (exact) or its unbiased estimate
    prior: torch.Tensor  # (B,) L_T
    terms: torch.Tensor  # (B, T) every term (exact) or (B, n) the sampled ones
    timesteps: torch.Tensor  # (T,) or (B, n): code timesteps of ``terms``
    nfe: int             # network evaluations per example


@torch.no_grad()
def bits_per_dim(diffusion: Diffusion, model: Model, x0: torch.Tensor, *, exact: bool = True,
                 n_timesteps: int = 10, variance: Variance = "fixed_small", decoder: Decoder = "discretized",
                 clip_denoised: bool = False, generator: torch.Generator | None = None,
                 progress: bool = False) -> BitsPerDim:
    """The whole variational bound for a batch, in bits/dim  (Ho et al. 2020, eq. 5; Nichol & Dhariwal 2021, sec. 3).

    exact=True sums all T terms (T network evaluations, fine for small T and the toy model);
    exact=False draws ``n_timesteps`` timesteps uniformly per example and returns the unbiased
    estimate L_T + T * mean(sampled terms). Each term uses one fresh noise draw.
    """
    B, T = x0.shape[0], diffusion.T
    if exact:
        ts = torch.arange(T, device=x0.device)
    else:
        if n_timesteps < 1:
            raise ValueError(f"n_timesteps must be >= 1, got {n_timesteps}.")
        ts = torch.randint(0, T, (B, n_timesteps), generator=generator,
                           device=generator.device if generator is not None else "cpu").to(x0.device)
    n = T if exact else n_timesteps
    terms = torch.empty(B, n, dtype=torch.float64, device=x0.device)
    for i in tqdm(range(n), disable=not progress, desc="VLB terms"):
        t = ts[i].expand(B) if exact else ts[:, i]
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype,
                            device=generator.device if generator is not None else x0.device).to(x0.device)
        terms[:, i] = vlb_terms(diffusion, model, x0, t, noise=noise, variance=variance,
                                decoder=decoder, clip_denoised=clip_denoised).double()
    prior = prior_bpd(diffusion, x0).double()
    total = prior + (terms.sum(1) if exact else T * terms.mean(1))
    return BitsPerDim(total, prior, terms, ts, n)
