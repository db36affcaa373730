"""The pieces every denoiser shares (the U-Net and the DiT): the timestep embedding, zero-init and the
check of a denoiser's input.

A network has to know *how noisy* its input is. The timestep t is turned into a vector of sines and
cosines at geometrically spaced frequencies (the Transformer position encoding, Vaswani et al. 2017,
sec. 3.5, used for t by Ho et al. 2020, appendix B), then passed through a small MLP.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps: (B,) -> (B, dim), float32.

    With half = dim // 2 and frequencies f_i = max_period^(-i / half), i = 0..half-1:

        emb[:, i]        = cos(t * f_i)
        emb[:, half + i] = sin(t * f_i)

    (the cos-then-sin layout of improved-diffusion and DiT). An odd `dim` gets one zero column at the end.
    """
    if dim < 2:
        raise ValueError(f"timestep_embedding: dim must be >= 2, got {dim}.")
    t = torch.as_tensor(t)
    if t.ndim == 0:
        t = t[None]
    if t.ndim != 1:
        raise ValueError(f"timestep_embedding: t must have shape (B,), got {tuple(t.shape)}.")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device)
                      / half)                                         # (half,)
    args = t.float()[:, None] * freqs[None, :]                        # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)        # (B, 2*half)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=1)   # (B, dim)
    return emb


class TimestepEmbedder(nn.Module):
    """t -> sinusoid(t) -> Linear -> SiLU -> Linear: a learned embedding of the noise level.

    `frequency_dim` is the width of the sinusoid, `dim` the width of the output (4x the base width in
    the DDPM U-Net, the hidden size in DiT).
    """

    def __init__(self, frequency_dim: int, dim: int):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(t, self.frequency_dim))    # (B, dim)


def zero_init(module: nn.Module) -> nn.Module:
    """Set every parameter of `module` to zero and return it. A residual branch that ends in a
    zero-initialised layer adds nothing at first, so its block starts as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def check_denoiser_input(model: str, x: torch.Tensor, t: torch.Tensor, *, in_channels: int, image_size: int,
                         builder: str) -> torch.Tensor:
    """Refuse images of another shape than the model was built for, and t that is not one value per image;
    return t as a (B,) tensor (a scalar t is broadcast to every image)."""
    expected = (in_channels, image_size, image_size)
    if x.ndim != 4 or tuple(x.shape[1:]) != expected:
        raise ValueError(
            f"{model} was built for in_channels={in_channels}, image_size={image_size} (inputs of shape "
            f"(B, {', '.join(map(str, expected))})), but got x of shape {tuple(x.shape)}. Build the model with "
            f"{builder}(..., in_channels=C, image_size=H) matching your images, or resize the images.")
    t = torch.as_tensor(t, device=x.device)
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(f"{model}: t must have shape ({x.shape[0]},), one timestep per image, got {tuple(t.shape)}.")
    return t
