"""The Diffusion Transformer (DiT): eps_theta(x_t, t) as a Vision Transformer over image patches.

After Peebles & Xie 2023 ("Scalable Diffusion Models with Transformers", sec. 3.2), written from
scratch. The image is cut into p x p patches, each patch becomes a token (a linear map, plus a fixed
2-D sine-cosine position embedding), a stack of transformer blocks mixes the tokens, and a final layer
turns every token back into its patch of noise. The timestep enters each block either through adaptive
LayerNorm (adaLN, adaLN-Zero) or as an extra token (in-context); sec. 3.2, "DiT block design", fig. 3.
There are no class labels here (unconditional model) and no learned variance (eps only).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from .embeddings import TimestepEmbedder, check_denoiser_input, zero_init

Conditioning = Literal[
    "adaln-zero",   # the paper's choice: shift/scale/gate per block, gates zero-initialised -> identity blocks
    "adaln",        # the same shift/scale modulation, without the gates and without zero-init
    "in-context",   # t's embedding appended as an extra token; plain pre-LN blocks with affine LayerNorm
]
CONDITIONINGS: tuple[str, ...] = get_args(Conditioning)
TIME_FREQUENCY_DIM = 256   # width of t's sinusoid before its MLP, as in the DiT code release (any width)


@dataclass(frozen=True)
class DiTConfig:
    """Everything that fixes a DiT's shape. Build one with :func:`dit_config` or by hand."""

    in_channels: int = 1                    # image channels C (1 grey, 3 RGB); the output has C too
    image_size: int = 32                    # side H = W of the square input images, px
    patch_size: int = 4                     # side p of a patch; N = (H/p)^2 tokens (sec. 3.2, "Patchify")
    hidden_size: int = 192                  # token width D (192 = Ti, 384 = S, 768 = B)
    depth: int = 12                         # number of transformer blocks (12 in the paper's S and B)
    num_heads: int = 3                      # attention heads; D / num_heads = 64 in every preset
    mlp_ratio: float = 4.0                  # width of the block's MLP relative to D (ViT: 4)
    conditioning: Conditioning = "adaln-zero"   # how t enters the blocks, see Conditioning

    def __post_init__(self):
        for name in ("in_channels", "image_size", "patch_size", "hidden_size", "depth", "num_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"DiTConfig: {name} must be a positive int, got {value!r}.")
        if self.image_size % self.patch_size:
            p, lower = self.patch_size, self.image_size // self.patch_size * self.patch_size
            sizes = " or ".join(str(s) for s in (lower, lower + p) if s > 0)
            divisors = ", ".join(str(d) for d in range(1, self.image_size + 1) if self.image_size % d == 0)
            raise ValueError(f"DiTConfig: image_size={self.image_size} is not divisible by patch_size={p}, "
                             f"so the image cannot be cut into {p}x{p} patches. Resize the images to "
                             f"{sizes} px (a multiple of {p}), or use a patch_size that divides "
                             f"{self.image_size} ({divisors}).")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"DiTConfig: num_heads={self.num_heads} must divide hidden_size="
                             f"{self.hidden_size}; e.g. hidden_size = 64 * num_heads as in the presets.")
        if self.hidden_size % 4:
            raise ValueError(f"DiTConfig: hidden_size={self.hidden_size} must be divisible by 4: the 2-D "
                             "sin-cos position embedding gives a sine and a cosine to each of the 2 axes.")
        if not self.mlp_ratio > 0 or int(self.hidden_size * self.mlp_ratio) < 1:
            raise ValueError(f"DiTConfig: mlp_ratio must be > 0 (ViT uses 4.0), got {self.mlp_ratio}.")
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(f"DiTConfig: unknown conditioning {self.conditioning!r}; valid: "
                             f"{', '.join(map(repr, CONDITIONINGS))}.")

    @property
    def num_patches(self) -> int:
        """N, the number of image tokens: (image_size / patch_size)^2."""
        return (self.image_size // self.patch_size) ** 2


# Widths and heads of Peebles & Xie, table 1 (S, B) and of ViT/DeiT-Ti (Touvron et al. 2021); depth 12.
WIDTHS = {"ti": (192, 3), "s": (384, 6), "b": (768, 12)}
PAPER_DEPTH = 12
PRESETS = tuple(f"dit-{size}{p}" for size in WIDTHS for p in (2, 4, 8))


def dit_config(preset: str, *, in_channels: int, image_size: int) -> DiTConfig:
    """A named DiT size for a given image shape: 'dit-<ti|s|b><2|4|8>', optionally '-d<N>' (1 <= N <= 12).

    The letters give the width (Ti 192, S 384, B 768; 64 per head), the number the patch size, and
    '-d<N>' a shallower stack than the paper's 12 blocks, for course models: 'dit-ti4-d6'.
    """
    match = re.fullmatch(r"dit-(ti|s|b)([248])(?:-d(\d+))?", preset) if isinstance(preset, str) else None
    if match is None:
        raise ValueError(f"Unknown DiT preset {preset!r}; valid presets: {', '.join(PRESETS)}, each "
                         f"optionally with a depth suffix '-d<N>', 1 <= N <= {PAPER_DEPTH} (e.g. 'dit-ti4-d6').")
    size, patch, depth = match.group(1), int(match.group(2)), match.group(3)
    depth = PAPER_DEPTH if depth is None else int(depth)
    if not 1 <= depth <= PAPER_DEPTH:
        raise ValueError(f"DiT preset {preset!r}: the depth suffix '-d<N>' needs 1 <= N <= {PAPER_DEPTH}, "
                         f"got N={depth}; e.g. 'dit-{size}{patch}-d6', or no suffix for {PAPER_DEPTH} blocks.")
    hidden, heads = WIDTHS[size]
    return DiTConfig(in_channels, image_size, patch_size=patch, hidden_size=hidden, depth=depth,
                     num_heads=heads)


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, p*p*C), N = (H/p)*(W/p): patches in row-major order, each flattened in
    (row in patch, column in patch, channel) order."""
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // p, p, W // p, p)                   # (B, C, H/p, p, W/p, p)
    x = x.permute(0, 2, 4, 3, 5, 1)                             # (B, H/p, W/p, p, p, C)
    return x.reshape(B, (H // p) * (W // p), p * p * C)         # (B, N, p*p*C)


def unpatchify(tokens: torch.Tensor, p: int, channels: int, image_size: int) -> torch.Tensor:
    """The inverse of :func:`patchify` for square images: (B, N, p*p*C) -> (B, C, H, W)."""
    B, g = tokens.shape[0], image_size // p
    x = tokens.reshape(B, g, g, p, p, channels)                 # (B, H/p, W/p, p, p, C)
    x = x.permute(0, 5, 1, 3, 2, 4)                             # (B, C, H/p, p, W/p, p)
    return x.reshape(B, channels, image_size, image_size)       # (B, C, H, W)


def sincos_2d_position_embedding(dim: int, grid_size: int) -> torch.Tensor:
    """Fixed ViT/MAE sine-cosine position embedding of a grid_size x grid_size grid: (G*G, dim) float32.

    Token k = row * G + col. With Q = dim/4 and frequencies w_i = 10000^(-i/Q) (= 10000^(-2i/(dim/2))),
    i = 0..Q-1, the layout is that of MAE and DiT:

        emb[k, 0:Q]   = sin(col * w)      emb[k, Q:2Q]  = cos(col * w)      (first half: the column)
        emb[k, 2Q:3Q] = sin(row * w)      emb[k, 3Q:4Q] = cos(row * w)      (second half: the row)

    computed in float64 (sec. 3.2, "Patchify": "frequency-based positional embeddings").
    """
    if dim % 4 or dim < 4 or grid_size < 1:
        raise ValueError(f"sincos_2d_position_embedding: dim must be a positive multiple of 4 and "
                         f"grid_size >= 1, got dim={dim}, grid_size={grid_size}.")
    q = dim // 4
    freqs = 10000.0 ** (-torch.arange(q, dtype=torch.float64) / q)           # (Q,)
    pos = torch.arange(grid_size, dtype=torch.float64)
    row, col = torch.meshgrid(pos, pos, indexing="ij")                        # (G, G) each
    col_args = col.reshape(-1, 1) * freqs                                     # (G*G, Q)
    row_args = row.reshape(-1, 1) * freqs                                     # (G*G, Q)
    emb = torch.cat([col_args.sin(), col_args.cos(), row_args.sin(), row_args.cos()], dim=1)
    return emb.float()                                                        # (G*G, dim)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: x * (1 + scale) + shift, one (shift, scale) per sample: (B, N, D), (B, D), (B, D)."""
    return x * (1 + scale[:, None]) + shift[:, None]


def xavier_linear(d_in: int, d_out: int) -> nn.Linear:
    """A Linear with xavier-uniform weights and zero bias: DiT's init of every Linear (ViT's init)."""
    layer = nn.Linear(d_in, d_out)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class Attention(nn.Module):
    """Multi-head self-attention over the tokens: softmax(q k^T / sqrt(d)) v per head, then a projection."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = xavier_linear(dim, 3 * dim)
        self.proj = xavier_linear(dim, dim)

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v of shape (B, heads, N, D/heads) each."""
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, D // self.num_heads)   # (B, N, 3, heads, d)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)                                       # (B, heads, N, d) each
        return q, k, v

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The attention weights softmax(q k^T / sqrt(d)), computed explicitly: (B, heads, N, N)."""
        q, k, _ = self.heads(x)
        return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        a = F.scaled_dot_product_attention(*self.heads(x))           # (B, heads, N, d)
        return self.proj(a.transpose(1, 2).reshape(B, N, D))          # (B, N, D)


class DiTBlock(nn.Module):
    """A transformer block conditioned on c = embed(t) in one of three ways (sec. 3.2, fig. 3)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        D, self.conditioning = cfg.hidden_size, cfg.conditioning
        affine = cfg.conditioning == "in-context"        # adaLN regresses the LayerNorm's scale and shift
        self.norm1 = nn.LayerNorm(D, elementwise_affine=affine, eps=1e-6)
        self.attn = Attention(D, cfg.num_heads)
        self.norm2 = nn.LayerNorm(D, elementwise_affine=affine, eps=1e-6)
        hidden = int(D * cfg.mlp_ratio)
        self.mlp = nn.Sequential(xavier_linear(D, hidden), nn.GELU(approximate="tanh"), xavier_linear(hidden, D))
        if cfg.conditioning == "adaln-zero":
            # Zero-init: every gate (and shift/scale) starts at 0, so each block starts as the identity
            # and the whole stack adds nothing until training opens the gates (sec. 3.2, "adaLN-Zero").
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), zero_init(nn.Linear(D, 6 * D)))
        elif cfg.conditioning == "adaln":
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), xavier_linear(D, 4 * D))

    def attention_input(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """What this block's attention sees: norm1(x), modulated by (shift_msa, scale_msa) under adaLN."""
        if self.conditioning == "in-context":
            return self.norm1(x)
        chunks = 6 if self.conditioning == "adaln-zero" else 4
        shift_msa, scale_msa = self.adaLN_modulation(c).chunk(chunks, dim=1)[:2]
        return modulate(self.norm1(x), shift_msa, scale_msa)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if self.conditioning == "in-context":                # t is a token of x already
            x = x + self.attn(self.norm1(x))                 # (B, N+1, D)
            return x + self.mlp(self.norm2(x))               # (B, N+1, D)
        if self.conditioning == "adaln":
            shift_msa, scale_msa, shift_mlp, scale_mlp = self.adaLN_modulation(c).chunk(4, dim=1)  # (B, D)
            x = x + self.attn(modulate(self.norm1(x), shift_msa, scale_msa))                       # (B, N, D)
            return x + self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))                     # (B, N, D)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa[:, None] * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))      # (B, N, D)
        return x + gate_mlp[:, None] * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))    # (B, N, D)


class FinalLayer(nn.Module):
    """adaLN-modulated LayerNorm, then a linear map of each token to its p*p*C patch values (sec. 3.2,
    "Transformer decoder"). Zero-initialised, so a fresh DiT of any conditioning outputs exactly 0."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        D = cfg.hidden_size
        self.norm = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        # shift = scale = 0 at first, as in the DiT code release: the layer starts as a plain LayerNorm
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), zero_init(nn.Linear(D, 2 * D)))
        # "We initialize the final linear layer with zeros" (sec. 4): eps_theta = 0 at initialisation
        self.linear = zero_init(nn.Linear(D, cfg.patch_size ** 2 * cfg.in_channels))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)        # (B, D) each
        return self.linear(modulate(self.norm(x), shift, scale))       # (B, N, p*p*C)


class DiT(nn.Module):
    """eps_theta(x_t, t): predicts the noise in x_t. Input and output are (B, C, H, W)."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = cfg = config
        D, p = cfg.hidden_size, cfg.patch_size
        # Patch embedding: a stride-p conv = one Linear applied to every patch; xavier on its (D, C*p*p) view.
        self.patch_embed = nn.Conv2d(cfg.in_channels, D, kernel_size=p, stride=p)
        nn.init.xavier_uniform_(self.patch_embed.weight.view(D, -1))
        nn.init.zeros_(self.patch_embed.bias)
        pos = sincos_2d_position_embedding(D, cfg.image_size // p)[None]              # (1, N, D)
        self.register_buffer("pos_embed", pos, persistent=False)                      # fixed, recomputed
        self.t_embedder = TimestepEmbedder(TIME_FREQUENCY_DIM, D)                     # (B,) -> (B, D)
        for layer in (self.t_embedder.mlp[0], self.t_embedder.mlp[2]):                # DiT: normal(0.02)
            nn.init.normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)
        self.blocks = nn.ModuleList(DiTBlock(cfg) for _ in range(cfg.depth))
        self.final_layer = FinalLayer(cfg)

    def check_input(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Refuse images of another shape than the config's, and t that is not one value per image."""
        return check_denoiser_input("DiT", x, t, in_channels=self.config.in_channels,
                                    image_size=self.config.image_size, builder="dit_config")

    def embed(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The input tokens of the first block and the conditioning vector c = embed(t)."""
        t = self.check_input(x, t)
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed      # (B, N, D)
        c = self.t_embedder(t)                                                          # (B, D)
        if self.config.conditioning == "in-context":
            tokens = torch.cat([tokens, c[:, None]], dim=1)                             # (B, N+1, D)
        return tokens, c

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        h, c = self.embed(x, t)                         # (B, N, D) or (B, N+1, D); (B, D)
        for block in self.blocks:
            h = block(h, c)                             # same shape
        h = h[:, :cfg.num_patches]                      # (B, N, D): drop the in-context t token
        h = self.final_layer(h, c)                      # (B, N, p*p*C)
        return unpatchify(h, cfg.patch_size, cfg.in_channels, cfg.image_size)   # (B, C, H, W)

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Softmax attention weights of every block: (depth, B, heads, N, N); [l, b, h, i] is where the
        image token i looks in block l. For in-context conditioning the t token's row and column are
        dropped (not renormalised), so a row sums to 1 minus the weight that patch puts on t."""
        h, c = self.embed(x, t)
        maps = []
        for block in self.blocks:
            maps.append(block.attn.weights(block.attention_input(h, c)))    # (B, heads, N', N')
            h = block(h, c)
        N = self.config.num_patches
        return torch.stack(maps)[..., :N, :N]                               # (depth, B, heads, N, N)
