"""Gaussian diffusion: schedules, the forward process q, the posterior, the reverse process p, samplers.

Notation follows Ho et al. 2020 ("Denoising Diffusion Probabilistic Models", DDPM) and
Nichol & Dhariwal 2021 ("Improved DDPM"). Schedules are computed in float64, stored in float32.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

ScheduleName = Literal["linear", "cosine"]


def make_betas(name: ScheduleName, T: int) -> torch.Tensor:
    """beta_1..beta_T in float64.

    linear: beta_t from 1e-4 to 0.02 scaled to T steps (Ho et al. 2020, sec. 4).
    cosine: alpha_bar(t) = f(t)/f(0), f(t) = cos^2(((t/T + s)/(1 + s)) * pi/2), s = 0.008,
            beta_t = 1 - alpha_bar(t)/alpha_bar(t-1) clipped at 0.999 (Nichol & Dhariwal 2021, eq. 17).
    """
    if not isinstance(T, int) or T < 2:
        raise ValueError(f"T (number of diffusion steps) must be an integer >= 2, got {T!r}.")
    if name == "linear":
        scale = 1000 / T
        return torch.linspace(scale * 1e-4, scale * 0.02, T, dtype=torch.float64)
    if name == "cosine":
        s = 0.008
        steps = torch.arange(T + 1, dtype=torch.float64) / T
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        alpha_bar = f / f[0]
        return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
    raise ValueError(f"Unknown schedule {name!r}; valid schedules: 'linear', 'cosine'.")


def extract(coef: torch.Tensor, t: torch.Tensor, x_shape: torch.Size) -> torch.Tensor:
    """Gather coef[t] for a batch of timesteps and reshape to (B, 1, 1, ...) to broadcast over x."""
    out = coef.to(t.device)[t]
    return out.reshape(t.shape[0], *([1] * (len(x_shape) - 1)))


class Diffusion:
    """The fixed (non-learned) part of a DDPM: a noise schedule and the maths built on it.

    Timesteps are 0-indexed: t = 0 is the first noising step (beta_1 in the paper), t = T-1 the last.
    """

    def __init__(self, T: int = 1000, schedule: ScheduleName = "linear"):
        betas = make_betas(schedule, T)                       # float64
        alphas = 1.0 - betas
        alphas_cumprod = torch.cumprod(alphas, 0)            # \bar\alpha_t
        alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
        self.T, self.schedule = T, schedule
        f32 = lambda v: v.to(torch.float32)  # noqa: E731
        self.betas = f32(betas)
        self.alphas = f32(alphas)
        self.alphas_cumprod = f32(alphas_cumprod)
        self.alphas_cumprod_prev = f32(alphas_cumprod_prev)
        self.sqrt_alphas_cumprod = f32(alphas_cumprod.sqrt())
        self.sqrt_one_minus_alphas_cumprod = f32((1 - alphas_cumprod).sqrt())
        self.snr = f32(alphas_cumprod / (1 - alphas_cumprod))  # SNR(t) = abar / (1 - abar)
        # q(x_{t-1} | x_t, x_0) = N(coef1 x_0 + coef2 x_t, posterior_variance)  (Ho et al. 2020, eq. 6-7)
        posterior_variance = betas * (1 - alphas_cumprod_prev) / (1 - alphas_cumprod)
        self.posterior_variance = f32(posterior_variance)
        # log-variance clipped: the variance is 0 at t = 0, so use the t = 1 value there
        self.posterior_log_variance_clipped = f32(
            torch.log(torch.cat([posterior_variance[1:2], posterior_variance[1:]])))
        self.posterior_mean_coef1 = f32(betas * alphas_cumprod_prev.sqrt() / (1 - alphas_cumprod))
        self.posterior_mean_coef2 = f32((1 - alphas_cumprod_prev) * alphas.sqrt() / (1 - alphas_cumprod))

    def check_t(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Refuse timesteps outside [0, T-1] or a batch-size mismatch, with a clear message."""
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must have shape ({x.shape[0]},) to match x of shape {tuple(x.shape)}, "
                             f"got {tuple(t.shape)}.")
        if t.dtype.is_floating_point:
            raise TypeError(f"t must be an integer tensor of timesteps, got dtype {t.dtype}.")
        if int(t.min()) < 0 or int(t.max()) >= self.T:
            raise ValueError(f"timesteps must lie in [0, {self.T - 1}], got range "
                             f"[{int(t.min())}, {int(t.max())}].")
        return t.long()

    # ----- forward process ------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Sample q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)   (Ho et al. 2020, eq. 4)."""
        t = self.check_t(t, x0)
        if noise is None:
            noise = torch.randn_like(x0)
        elif noise.shape != x0.shape:
            raise ValueError(f"noise shape {tuple(noise.shape)} must match x0 shape {tuple(x0.shape)}.")
        return (extract(self.sqrt_alphas_cumprod, t, x0.shape) * x0
                + extract(self.sqrt_one_minus_alphas_cumprod, t, x0.shape) * noise)

    # ----- training ---------------------------------------------------------------------
    def loss_simple(self, model, x0: torch.Tensor, t: torch.Tensor | None = None,
                    noise: torch.Tensor | None = None) -> torch.Tensor:
        """L_simple = E_{t, eps} || eps - eps_theta(x_t, t) ||^2   (Ho et al. 2020, eq. 14), a scalar."""
        if t is None:
            t = torch.randint(0, self.T, (x0.shape[0],), device=x0.device)
        if noise is None:
            noise = torch.randn_like(x0)
        x_t = self.q_sample(x0, t, noise)
        return F.mse_loss(model(x_t, t).float(), noise.float())
