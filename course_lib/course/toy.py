"""A complete DDPM in two dimensions: toy data, a small MLP denoiser, a training loop, and an exact oracle.

Notebook 04 trains it in seconds on CPU. ``GaussianOracle`` is the exact optimal noise predictor for
Gaussian data, used by the tests and by notebook 03 to show why L_simple works.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from course_lib.diffusion import Diffusion

ToyName = Literal["moons", "spiral"]


def toy_data(name: ToyName, n: int, *, noise: float = 0.05, seed: int = 0) -> torch.Tensor:
    """n points (n, 2) float32 of a 2-D toy distribution, scaled to roughly unit variance per axis.

    moons: sklearn's two interleaving half circles; spiral: two arms of a two-turn Archimedean spiral.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    rng = np.random.default_rng(seed)
    if name == "moons":
        from sklearn.datasets import make_moons
        x, _ = make_moons(n, noise=noise, random_state=seed)
        x = (x - np.array([0.5, 0.25])) / np.array([0.87, 0.5])  # centre, roughly unit variance
    elif name == "spiral":
        r = np.sqrt(rng.uniform(0.05, 1.0, n))                    # uniform along the arc length
        theta = 4 * math.pi * r
        x = np.stack([r * np.cos(theta), r * np.sin(theta)], 1) * 1.7
        x = x * np.where(rng.random(n) < 0.5, -1.0, 1.0)[:, None]  # two arms, point-symmetric
        x = x + noise * rng.standard_normal(x.shape)
    else:
        raise ValueError(f"Unknown toy data {name!r}; valid: 'moons', 'spiral'.")
    return torch.as_tensor(x, dtype=torch.float32)


class TimeMLP(nn.Module):
    """eps_theta(x_t, t) for 2-D points: an MLP on [x_t, sinusoidal embedding of t]  (Ho et al. 2020, app. B)."""

    def __init__(self, T: int, dim: int = 2, width: int = 128, depth: int = 3, t_dim: int = 32):
        super().__init__()
        self.T, self.t_dim = T, t_dim
        layers: list[nn.Module] = [nn.Linear(dim + t_dim, width), nn.SiLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.SiLU()]
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)

    def embed(self, t: torch.Tensor) -> torch.Tensor:
        """Transformer-style sinusoidal embedding of t (B,) -> (B, t_dim) (Vaswani et al. 2017)."""
        half = self.t_dim // 2
        freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device) / half)  # (half,)
        angles = (t.float() * (1000.0 / self.T))[:, None] * freqs[None]                  # (B, half)
        return torch.cat([angles.sin(), angles.cos()], dim=1)                              # (B, t_dim)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if x_t.ndim != 2 or t.shape != (x_t.shape[0],):
            raise ValueError(f"TimeMLP expects x_t (B, D) and t (B,), got {tuple(x_t.shape)} and {tuple(t.shape)}.")
        h = torch.cat([x_t, self.embed(t).to(x_t.dtype)], dim=1)  # (B, D + t_dim)
        return self.net(h)                                         # (B, D)


@contextmanager
def one_thread():
    """Run tiny CPU workloads on one intra-op thread: a 2-D MLP gains nothing from more, and on a
    busy machine spinning threads slow it down many times over."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def train_toy(model: nn.Module, diffusion: Diffusion, data: torch.Tensor, *, steps: int, batch_size: int = 256,
              lr: float = 2e-3, seed: int = 0, progress: bool = False) -> list[float]:
    """Minimise L_simple with Adam (cosine-decayed lr; one CPU thread); returns the loss of every step.

    The model and ``data`` (N, D) must be on the same device; batches are drawn with a seeded generator.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}.")
    with one_thread():
        return _train(model, diffusion, data, steps, batch_size, lr, seed, progress)


def _train(model, diffusion, data, steps, batch_size, lr, seed, progress) -> list[float]:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr / 20)
    losses = []
    model.train()
    for _ in tqdm(range(steps), disable=not progress, desc="train"):
        idx = torch.randint(0, len(data), (batch_size,), generator=g)
        x0 = data[idx]
        t = torch.randint(0, diffusion.T, (batch_size,), generator=g).to(data.device)
        noise = torch.randn(x0.shape, generator=g).to(data.device)
        loss = diffusion.loss_simple(model, x0, t, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return losses


def distance_to_data(points: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
    """Euclidean distance from each point (N, D) to its nearest neighbour in data (M, D): (N,)."""
    return torch.cdist(points.double(), data.double()).min(dim=1).values


class GaussianOracle:
    """The exact optimal predictor E[eps | x_t, t] for data x_0 ~ N(mean, std^2 I).

    x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps is Gaussian with mean sqrt(abar) m and variance
    abar s^2 + 1 - abar, and Cov(eps, x_t) = sqrt(1 - abar), so
    E[eps | x_t] = sqrt(1 - abar) / (abar s^2 + 1 - abar) (x_t - sqrt(abar) m), linear in x_t.
    It answers in the diffusion's parameterisation (eps, x0 or v), computed in float64.
    """

    def __init__(self, diffusion: Diffusion, mean: float = 0.0, std: float = 1.0):
        if std <= 0:
            raise ValueError(f"std must be > 0, got {std}.")
        self.diffusion, self.mean, self.std = diffusion, float(mean), float(std)

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        d = self.diffusion
        t = d.check_t(t, x_t)
        abar = d.alphas_cumprod.double().to(x_t.device)[t].reshape(-1, *([1] * (x_t.ndim - 1)))
        x = x_t.double()
        eps = (1 - abar).sqrt() / (abar * self.std ** 2 + 1 - abar) * (x - abar.sqrt() * self.mean)
        x0 = (x - (1 - abar).sqrt() * eps) / abar.sqrt()
        out = {"eps": eps, "x0": x0, "v": abar.sqrt() * eps - (1 - abar).sqrt() * x0}[d.prediction]
        return out.to(x_t.dtype)
