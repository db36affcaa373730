"""Gaussian diffusion: schedules, the forward process q, the posterior, the reverse process p.

Notation follows Ho et al. 2020 ("Denoising Diffusion Probabilistic Models", DDPM),
Nichol & Dhariwal 2021 ("Improved Denoising Diffusion Probabilistic Models") and
Salimans & Ho 2022 ("Progressive Distillation", the v-parameterisation).
Schedules are computed in float64 and stored in float32 (abar also in float64, for the samplers).
Samplers live in :mod:`course_lib.sampling`, the variational bound in :mod:`course_lib.losses`.

Timestep convention: code timesteps are **0-indexed**, t = 0 .. T-1. Code ``t`` is paper ``t + 1``:
``betas[0]`` is the paper's beta_1, ``q_sample(x0, t)`` draws the paper's x_{t+1}, and
``alphas_cumprod[t]`` is the paper's \\bar\\alpha_{t+1}. The clean data x_0 has no code timestep.
"""
from __future__ import annotations

import math
import numbers
from typing import Callable, Literal, NamedTuple

import torch
import torch.nn.functional as F

from . import memo

ScheduleName = Literal["linear", "cosine"]
# What the network outputs (Ho et al. 2020 use eps; x0 is the "direct" target; v from Salimans & Ho 2022).
Prediction = Literal[
    "eps",  # the noise eps that was added:            x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps
    "x0",   # the clean input x_0 itself
    "v",    # the velocity v = sqrt(abar) eps - sqrt(1 - abar) x_0
]
# Variance of p(x_{t-1} | x_t) when it is not learned (Ho et al. 2020, sec. 3.2).
Variance = Literal[
    "fixed_small",  # sigma_t^2 = tilde beta_t, the posterior variance: optimal when x_0 is a point
    "fixed_large",  # sigma_t^2 = beta_t (tilde beta_2 at t = 1): optimal when x_0 ~ N(0, I)
]
Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # model(x_t (B, ...), t (B,) long) -> (B, ...)

SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("eps", "x0", "v")
VARIANCES = ("fixed_small", "fixed_large")


def make_betas(name: ScheduleName, T: int) -> torch.Tensor:
    """beta_1..beta_T in float64, shape (T,).

    linear: beta_t from 1e-4 to 0.02 scaled to T steps (Ho et al. 2020, sec. 4).
    cosine: alpha_bar(t) = f(t)/f(0), f(t) = cos^2(((t/T + s)/(1 + s)) * pi/2), s = 0.008,
            beta_t = 1 - alpha_bar(t)/alpha_bar(t-1) clipped at 0.999 (Nichol & Dhariwal 2021, eq. 17).
    """
    if isinstance(T, bool) or not isinstance(T, int) or T < 2:
        raise ValueError(f"T (number of diffusion steps) must be an integer >= 2, got {T!r}.")
    if name == "linear":
        scale = 1000 / T
        return torch.linspace(scale * 1e-4, scale * 0.02, T, dtype=torch.float64).clamp(max=0.999)
    if name == "cosine":
        s = 0.008
        steps = torch.arange(T + 1, dtype=torch.float64) / T
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        alpha_bar = f / f[0]
        return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
    raise ValueError(f"Unknown schedule {name!r}; valid schedules: {', '.join(map(repr, SCHEDULES))}.")


def extract(coef: torch.Tensor, t: torch.Tensor, x_shape: torch.Size) -> torch.Tensor:
    """Gather coef[t] for a batch of timesteps and reshape to (B, 1, 1, ...) to broadcast over x."""
    out = memo.on_device(coef, t.device)[t]                      # (B,)
    return out.reshape(t.shape[0], *([1] * (len(x_shape) - 1)))  # (B, 1, ..., 1)


def _as(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A float32 coefficient promoted to x's dtype when that is wider (float64 in, float64 out)."""
    return v.to(torch.promote_types(v.dtype, x.dtype))


class PMeanVariance(NamedTuple):
    """The reverse step p(x_{t-1} | x_t) = N(mean, variance) and what the network predicted."""

    mean: torch.Tensor          # (B, ...) mu_theta(x_t, t)
    variance: torch.Tensor      # (B, 1, ..., 1) sigma_t^2, broadcastable to x
    log_variance: torch.Tensor  # (B, 1, ..., 1) log sigma_t^2 (clipped at t = 0, see Diffusion)
    pred_x0: torch.Tensor       # (B, ...) hat x_0
    pred_eps: torch.Tensor      # (B, ...) hat eps


class Diffusion:
    """The fixed (non-learned) part of a DDPM: a noise schedule and the maths built on it.

    Timesteps are 0-indexed: t = 0 is the first noising step (beta_1 in the paper), t = T-1 the last.
    ``prediction`` says how to read the network's output (see :data:`Prediction`).
    """

    def __init__(self, T: int = 1000, schedule: ScheduleName = "linear", *, prediction: Prediction = "eps"):
        if prediction not in PREDICTIONS:
            raise ValueError(f"Unknown prediction {prediction!r}; valid: {', '.join(map(repr, PREDICTIONS))}.")
        betas = make_betas(schedule, T)                       # (T,) float64
        alphas = 1.0 - betas
        alphas_cumprod = torch.cumprod(alphas, 0)            # \bar\alpha_t
        alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
        self.T, self.schedule, self.prediction = T, schedule, prediction
        f32 = lambda v: v.to(torch.float32)  # noqa: E731
        self.alphas_cumprod_f64 = alphas_cumprod   # abar in float64, for the samplers' ratios abar_t / abar_s
        self.betas = f32(betas)
        self.alphas = f32(alphas)
        self.alphas_cumprod = f32(alphas_cumprod)
        self.alphas_cumprod_prev = f32(alphas_cumprod_prev)
        self.sqrt_alphas_cumprod = f32(alphas_cumprod.sqrt())
        self.sqrt_one_minus_alphas_cumprod = f32((1 - alphas_cumprod).sqrt())
        self.log_one_minus_alphas_cumprod = f32(torch.log1p(-alphas_cumprod))
        self.sqrt_recip_alphas_cumprod = f32(alphas_cumprod.rsqrt())
        self.sqrt_recipm1_alphas_cumprod = f32((1 / alphas_cumprod - 1).sqrt())
        self.snr = f32(alphas_cumprod / (1 - alphas_cumprod))  # SNR(t) = abar / (1 - abar)
        # q(x_{t-1} | x_t, x_0) = N(coef1 x_0 + coef2 x_t, posterior_variance)  (Ho et al. 2020, eq. 6-7)
        posterior_variance = betas * (1 - alphas_cumprod_prev) / (1 - alphas_cumprod)
        self.posterior_variance = f32(posterior_variance)
        # log-variance clipped: the variance is 0 at t = 0, so use the t = 1 value there
        self.posterior_log_variance_clipped = f32(
            torch.log(torch.cat([posterior_variance[1:2], posterior_variance[1:]])))
        self.posterior_mean_coef1 = f32(betas * alphas_cumprod_prev.sqrt() / (1 - alphas_cumprod))
        self.posterior_mean_coef2 = f32((1 - alphas_cumprod_prev) * alphas.sqrt() / (1 - alphas_cumprod))
        # fixed_large: beta_t, with tilde beta_2 in place of beta_1 so that the decoder's
        # variance is not tiny (as in Ho et al.'s code and improved-diffusion)
        large = torch.cat([posterior_variance[1:2], betas[1:]])
        self.large_variance, self.large_log_variance = f32(large), f32(torch.log(large))

    def __repr__(self) -> str:
        return f"Diffusion(T={self.T}, schedule={self.schedule!r}, prediction={self.prediction!r})"

    def check_t(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Refuse timesteps outside [0, T-1] or a batch-size mismatch, with a clear message.

        A tensor this method (or :meth:`timesteps`, :meth:`sample_t`) returned passes again without
        reading its values back, so a chain of calls on one t costs no further device syncs."""
        if (isinstance(t, torch.Tensor) and memo.is_checked(t, self.T) and t.shape == (x.shape[0],)
                and t.device == x.device):
            return t
        if isinstance(t, float) or isinstance(t, bool):
            raise TypeError(f"t must be an integer timestep (or tensor of them), got {t!r}.")
        if isinstance(t, numbers.Integral):                       # checked as a Python int: no device read
            if not 0 <= int(t) < self.T:
                raise ValueError(f"timesteps must lie in [0, {self.T - 1}] (0-indexed, code t = paper t - 1), "
                                 f"got range [{int(t)}, {int(t)}].")
            return self.timesteps(int(t), x.shape[0], x.device)
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must have shape ({x.shape[0]},) to match x of shape {tuple(x.shape)}, "
                             f"got {tuple(t.shape)}.")
        if t.dtype.is_floating_point or t.dtype == torch.bool:
            raise TypeError(f"t must be an integer tensor of timesteps, got dtype {t.dtype}.")
        if int(t.min()) < 0 or int(t.max()) >= self.T:
            raise ValueError(f"timesteps must lie in [0, {self.T - 1}] (0-indexed, code t = paper t - 1), "
                             f"got range [{int(t.min())}, {int(t.max())}].")
        return self.mark_checked(t.long())

    def mark_checked(self, t: torch.Tensor) -> torch.Tensor:
        """Record `t`, whose values are in range by construction (e.g. rows of :meth:`sample_t`), as checked."""
        return memo.mark_checked(t, self.T)

    def timesteps(self, t: int, batch: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """(batch,) long tensor of the code timestep t (0-indexed), checked here on the Python int, so
        that the methods it is passed to never read it back from the device."""
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < self.T:
            raise ValueError(f"timestep {t!r} must be an int in [0, {self.T - 1}] (0-indexed, code t = paper t - 1).")
        return self.mark_checked(torch.full((batch,), t, dtype=torch.long, device=device))

    def sample_t(self, batch: int, *, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
        """(batch,) timesteps drawn uniformly from {0, ..., T-1}, in range by construction."""
        return self.mark_checked(torch.randint(0, self.T, (batch,), generator=generator, device=device))

    @staticmethod
    def _check_like(name: str, a: torch.Tensor, x: torch.Tensor, x_name: str = "x") -> None:
        if a.shape != x.shape:
            raise ValueError(f"{name} shape {tuple(a.shape)} must match {x_name} shape {tuple(x.shape)}.")

    # ----- forward process ------------------------------------------------------------
    def q_step(self, x_prev: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """One Markov step q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)  (Ho et al. 2020, eq. 2).

        With 0-indexed t, ``x_prev`` is the sample at code level t-1 (x_0 itself when t = 0), so
        q_step(...q_step(q_step(x0, 0), 1)..., t) has the law of q_sample(x0, t).
        """
        t = self.check_t(t, x_prev)
        if noise is None:
            noise = torch.randn_like(x_prev)
        self._check_like("noise", noise, x_prev, "x_prev")
        return (extract(self.alphas.sqrt(), t, x_prev.shape) * x_prev
                + extract(self.betas.sqrt(), t, x_prev.shape) * noise)

    def q_mean_variance(self, x0: torch.Tensor, t: torch.Tensor):
        """Mean (B, ...), variance and log-variance (B, 1, ...) of q(x_t | x_0)  (Ho et al. 2020, eq. 4)."""
        t = self.check_t(t, x0)
        mean = extract(self.sqrt_alphas_cumprod, t, x0.shape) * x0
        return (mean, _as(extract(1 - self.alphas_cumprod, t, x0.shape), x0),
                _as(extract(self.log_one_minus_alphas_cumprod, t, x0.shape), x0))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Sample q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)   (Ho et al. 2020, eq. 4)."""
        t = self.check_t(t, x0)
        if noise is None:
            noise = torch.randn_like(x0)
        self._check_like("noise", noise, x0, "x0")
        return (extract(self.sqrt_alphas_cumprod, t, x0.shape) * x0
                + extract(self.sqrt_one_minus_alphas_cumprod, t, x0.shape) * noise)

    # ----- posterior q(x_{t-1} | x_t, x_0) --------------------------------------------
    def q_posterior_mean_variance(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor):
        """q(x_{t-1} | x_t, x_0) = N(tilde mu_t, tilde beta_t I)   (Ho et al. 2020, eq. 6-7).

        tilde mu_t = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x_0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t,
        tilde beta_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t.
        Returns mean (B, ...), variance (B, 1, ...), clipped log-variance (B, 1, ...).
        """
        self._check_like("x_t", x_t, x0, "x0")
        t = self.check_t(t, x_t)
        mean = (extract(self.posterior_mean_coef1, t, x_t.shape) * x0
                + extract(self.posterior_mean_coef2, t, x_t.shape) * x_t)
        return (mean, _as(extract(self.posterior_variance, t, x_t.shape), x_t),
                _as(extract(self.posterior_log_variance_clipped, t, x_t.shape), x_t))

    # ----- reading the network's output -------------------------------------------------
    def x0_from_eps(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x_0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)   (Ho et al. 2020, eq. 4 solved for x_0)."""
        t = self.check_t(t, x_t)
        return (extract(self.sqrt_recip_alphas_cumprod, t, x_t.shape) * x_t
                - extract(self.sqrt_recipm1_alphas_cumprod, t, x_t.shape) * eps)

    def eps_from_x0(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """eps = (x_t - sqrt(abar) x_0) / sqrt(1 - abar)."""
        t = self.check_t(t, x_t)
        return ((x_t - extract(self.sqrt_alphas_cumprod, t, x_t.shape) * x0)
                / extract(self.sqrt_one_minus_alphas_cumprod, t, x_t.shape))

    def split_output(self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor):
        """(hat x_0, hat eps) from the network output, according to ``self.prediction``."""
        self._check_like("model output", model_output, x_t, "x_t")
        t = self.check_t(t, x_t)
        out = model_output.to(x_t.dtype)
        if self.prediction == "eps":
            return self.x0_from_eps(x_t, t, out), out
        if self.prediction == "x0":
            return out, self.eps_from_x0(x_t, t, out)
        a, s = extract(self.sqrt_alphas_cumprod, t, x_t.shape), extract(self.sqrt_one_minus_alphas_cumprod, t, x_t.shape)
        return a * x_t - s * out, s * x_t + a * out  # v: Salimans & Ho 2022, sec. 4 and appendix D

    def target(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """What the network should output for (x_0, eps) at t: eps, x_0 or v = sqrt(abar) eps - sqrt(1-abar) x_0."""
        if self.prediction == "eps":
            return noise
        if self.prediction == "x0":
            return x0
        t = self.check_t(t, x0)
        return (extract(self.sqrt_alphas_cumprod, t, x0.shape) * noise
                - extract(self.sqrt_one_minus_alphas_cumprod, t, x0.shape) * x0)

    # ----- reverse process p(x_{t-1} | x_t) ----------------------------------------------
    def p_mean_variance(self, model: Model, x_t: torch.Tensor, t: torch.Tensor, *,
                        variance: Variance = "fixed_small", clip_denoised: bool = False,
                        model_output: torch.Tensor | None = None) -> PMeanVariance:
        """p_theta(x_{t-1} | x_t) = N(tilde mu_t(hat x_0, x_t), sigma_t^2 I)   (Ho et al. 2020, eq. 1, 11).

        The mean plugs the network's hat x_0 into the posterior mean (for eps prediction this is
        eq. 11, 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - abar_t) eps_theta)). ``clip_denoised``
        clamps hat x_0 to [-1, 1] (images only). Pass ``model_output`` to reuse an evaluation.
        """
        if variance not in VARIANCES:
            raise ValueError(f"Unknown variance {variance!r}; valid: {', '.join(map(repr, VARIANCES))}.")
        t = self.check_t(t, x_t)
        if model_output is None:
            model_output = model(x_t, t)
        pred_x0, pred_eps = self.split_output(model_output, x_t, t)
        if clip_denoised:
            pred_x0 = pred_x0.clamp(-1, 1)
            pred_eps = self.eps_from_x0(x_t, t, pred_x0)
        mean, var, log_var = self.q_posterior_mean_variance(pred_x0, x_t, t)
        if variance == "fixed_large":
            var = _as(extract(self.large_variance, t, x_t.shape), x_t)
            log_var = _as(extract(self.large_log_variance, t, x_t.shape), x_t)
        return PMeanVariance(mean, var, log_var, pred_x0, pred_eps)

    # ----- training ---------------------------------------------------------------------
    def loss_simple(self, model: Model, x0: torch.Tensor, t: torch.Tensor | None = None,
                    noise: torch.Tensor | None = None) -> torch.Tensor:
        """L_simple = E_{t, eps} || eps - eps_theta(x_t, t) ||^2   (Ho et al. 2020, eq. 14), a scalar.

        For x0- or v-prediction the target is x_0 or v instead of eps (same sampling of t and eps).
        """
        if t is None:
            t = self.sample_t(x0.shape[0], device=x0.device)
        if noise is None:
            noise = torch.randn_like(x0)
        x_t = self.q_sample(x0, t, noise)
        return F.mse_loss(model(x_t, t).float(), self.target(x0, t, noise).float())
