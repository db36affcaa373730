"""The DDPM U-Net: eps_theta(x_t, t), written from scratch.

Architecture after Ho et al. 2020 ("Denoising Diffusion Probabilistic Models", appendix B) with the
changes of Nichol & Dhariwal 2021 ("Improved DDPM", sec. 3; code: openai/improved-diffusion):
a PixelCNN++-style U-Net of residual blocks (GroupNorm, SiLU, dropout) conditioned on the timestep,
self-attention at chosen resolutions, and skip connections from every block on the way down to the
matching block on the way up. The time embedding enters every residual block, either added to the
features (DDPM) or as a GroupNorm scale and shift (Improved DDPM, "scale-shift norm").
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from .embeddings import TimestepEmbedder, check_denoiser_input, zero_init


@dataclass(frozen=True)
class UNetConfig:
    """Everything that fixes a U-Net's shape. Build one with :func:`unet_config` or by hand."""

    in_channels: int = 1                          # image channels C (1 grey, 3 RGB); the output has C too
    image_size: int = 32                          # side H = W of the square input images, px
    base_channels: int = 64                       # width of the first level; level i has base * channel_mult[i]
    channel_mult: tuple[int, ...] = (1, 2, 2, 2)  # width multiplier per level; len - 1 downsamplings by 2
    num_res_blocks: int = 2                       # residual blocks per level going down (one more going up)
    attention_resolutions: tuple[int, ...] = (16,)  # feature-map sides (px) that get self-attention
    dropout: float = 0.1                          # dropout in the residual blocks (Ho et al.: 0.1 on CIFAR-10)
    num_heads: int = 4                            # self-attention heads
    norm_groups: int = 32                         # GroupNorm groups; must divide every width
    scale_shift: bool = True                      # time enters as GroupNorm scale+shift (True) or is added
    time_embed_dim: int | None = None             # width of the time embedding (its sinusoid has 1/4 of
                                                  # it); None = 4 * base_channels, as in Ho et al. 2020

    def __post_init__(self):
        if self.in_channels < 1 or self.image_size < 1 or self.base_channels < 1:
            raise ValueError(f"UNetConfig: in_channels, image_size and base_channels must be >= 1, got "
                             f"{self.in_channels}, {self.image_size}, {self.base_channels}.")
        object.__setattr__(self, "channel_mult", tuple(self.channel_mult))
        object.__setattr__(self, "attention_resolutions", tuple(self.attention_resolutions))
        factor = 2 ** (len(self.channel_mult) - 1)
        if self.image_size % factor:
            raise ValueError(f"UNetConfig: image_size={self.image_size} must be divisible by {factor} "
                             f"(2 ** (len(channel_mult) - 1), channel_mult={self.channel_mult}).")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"UNetConfig: dropout must be in [0, 1), got {self.dropout}.")
        for width in {self.base_channels * m for m in self.channel_mult} | {self.base_channels}:
            if width % self.norm_groups:
                raise ValueError(f"UNetConfig: norm_groups={self.norm_groups} does not divide the width "
                                 f"{width}; pick base_channels/channel_mult/norm_groups that divide.")
        if self.num_heads < 1 or (self.base_channels * self.channel_mult[-1]) % self.num_heads:
            raise ValueError(f"UNetConfig: num_heads={self.num_heads} must divide the width of every "
                             "attention layer.")
        if self.time_embed_dim is not None and self.time_embed_dim < 8:
            raise ValueError(f"UNetConfig: time_embed_dim must be >= 8 (or None), got {self.time_embed_dim}.")
        bad = [r for r in self.attention_resolutions if r not in self.resolutions]
        if bad:
            raise ValueError(f"UNetConfig: attention_resolutions {bad} are not feature-map sizes of this "
                             f"U-Net; the levels have sides {self.resolutions}.")

    @property
    def resolutions(self) -> tuple[int, ...]:
        """Side of the feature maps at each level: image_size, image_size/2, ..."""
        return tuple(self.image_size // 2 ** i for i in range(len(self.channel_mult)))


PRESETS = ("unet-tiny", "unet-small", "unet-base")


def unet_config(preset: str, *, in_channels: int, image_size: int) -> UNetConfig:
    """A named U-Net size for a given image shape.

    unet-tiny:  smoke tests; trains in seconds, learns little.
    unet-small: the cpu profile; a model that learns 16-64 px images in minutes on 2 CPU cores.
    unet-base:  the gpu profile; DDPM/Improved-DDPM scale (128 channels, 2 blocks per level).

    A suffix ``-w<k>`` multiplies every width by k: ``unet-small-w2`` is unet-small at twice the width
    (about 4x the parameters and the compute), for a model-size ablation.
    """
    base_name, sep, factor = preset.rpartition("-w") if isinstance(preset, str) else ("", "", "")
    if sep and base_name in PRESETS:
        if not factor.isdigit() or int(factor) < 1:
            raise ValueError(f"U-Net preset {preset!r}: the width factor after '-w' must be a whole number >= 1.")
        cfg = unet_config(base_name, in_channels=in_channels, image_size=image_size)
        return replace(cfg, base_channels=cfg.base_channels * int(factor))
    def attention_at(mult: tuple[int, ...], sides: tuple[int, ...]) -> tuple[int, ...]:
        levels = [image_size // 2 ** i for i in range(len(mult))]
        return tuple(r for r in levels if r in sides and r < image_size)

    if preset == "unet-tiny":
        base = 16 if image_size <= 16 else 8          # keep smoke runs cheap at 32-64 px too
        return UNetConfig(in_channels, image_size, base_channels=base, channel_mult=(1, 2, 2),
                          num_res_blocks=1, attention_resolutions=(), dropout=0.0, num_heads=1,
                          norm_groups=base // 2, time_embed_dim=64)
    if preset == "unet-small":
        # Sized for about 0.1-0.3 s per step of 32 images on 2 CPU cores: the first level's cost grows
        # with width * side^2, so the base width halves as the side doubles (32 at 16 px, 16 at 32 px,
        # 8 at 64 px and above); widths then double per level up to 64, down to a 4-7 px bottleneck.
        base = 32 if image_size <= 16 else 16 if image_size <= 32 else 8
        levels, side = 1, image_size
        while side >= 8 and side % 2 == 0:
            levels, side = levels + 1, side // 2
        mult = tuple(min(2 ** i, 64 // base) for i in range(levels))
        return UNetConfig(in_channels, image_size, base_channels=base, channel_mult=mult, num_res_blocks=1,
                          attention_resolutions=attention_at(mult, (8,)), dropout=0.0, num_heads=4,
                          norm_groups=min(8, base // 2), time_embed_dim=128)
    if preset == "unet-base":
        # channel_mult per size as in Improved DDPM (and ADM, Dhariwal & Nichol 2021, for 128/256 px)
        if image_size <= 32:
            mult = (1, 2, 2, 2)
        elif image_size <= 64:
            mult = (1, 2, 3, 4)
        elif image_size <= 128:
            mult = (1, 1, 2, 3, 4)
        else:
            mult = (1, 1, 2, 2, 4, 4)
        return UNetConfig(in_channels, image_size, base_channels=128, channel_mult=mult, num_res_blocks=2,
                          attention_resolutions=attention_at(mult, (16, 8)), dropout=0.1, num_heads=4,
                          norm_groups=32)
    raise ValueError(f"Unknown U-Net preset {preset!r}; valid presets: {', '.join(PRESETS)}.")


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv3x3 -> (+ time) -> GroupNorm -> SiLU -> dropout -> conv3x3, plus a skip."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, cfg: UNetConfig):
        super().__init__()
        self.scale_shift = cfg.scale_shift
        self.in_layers = nn.Sequential(nn.GroupNorm(cfg.norm_groups, in_ch), nn.SiLU(),
                                       nn.Conv2d(in_ch, out_ch, 3, padding=1))
        # time embedding -> one (scale, shift) pair per channel, or one added bias per channel
        self.emb_proj = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * out_ch if cfg.scale_shift else out_ch))
        self.out_norm = nn.GroupNorm(cfg.norm_groups, out_ch)
        # the last conv starts at zero, so the block starts as the identity (skip path only)
        self.out_layers = nn.Sequential(nn.SiLU(), nn.Dropout(cfg.dropout),
                                        zero_init(nn.Conv2d(out_ch, out_ch, 3, padding=1)))
        self.skip = nn.Identity() if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)                                  # (B, out, H, W)
        e = self.emb_proj(emb)[:, :, None, None]               # (B, 2*out or out, 1, 1)
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)                   # (B, out, 1, 1) each
            h = self.out_norm(h) * (1 + scale) + shift
        else:
            h = self.out_norm(h + e)
        return self.skip(x) + self.out_layers(h)               # (B, out, H, W)


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the H*W positions of a feature map, with a residual."""

    def __init__(self, channels: int, cfg: UNetConfig):
        super().__init__()
        if channels % cfg.num_heads:
            raise ValueError(f"num_heads={cfg.num_heads} does not divide the attention width {channels}.")
        self.num_heads = cfg.num_heads
        self.norm = nn.GroupNorm(cfg.norm_groups, channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj = zero_init(nn.Conv1d(channels, channels, 1))   # starts as the identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        # The 1x1 convolutions are linear maps of each position's features: applied as matrix products on
        # (B, N, C), N = H*W, which is faster on a CPU than a convolution and gives q, k, v with each head's
        # features adjacent in memory, as SDPA's fused kernel wants. The weights stay those of the convs.
        h = self.norm(x).reshape(B, C, H * W).transpose(1, 2)             # (B, N, C)
        qkv = F.linear(h, self.qkv.weight[:, :, 0], self.qkv.bias)         # (B, N, 3C)
        qkv = qkv.reshape(B, H * W, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]                                   # (B, heads, N, C/heads) each
        a = F.scaled_dot_product_attention(q, k, v)                        # softmax(q k^T / sqrt(d)) v
        a = a.transpose(1, 2).reshape(B, H * W, C)                         # (B, N, C)
        out = F.linear(a, self.proj.weight[:, :, 0], self.proj.bias)       # (B, N, C)
        return x + out.transpose(1, 2).reshape(B, C, H, W)


class Downsample(nn.Module):
    """Halve H and W with a stride-2 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)                                        # (B, C, H/2, W/2)


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour upsampling, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))   # (B, C, 2H, 2W)


class TimestepSequential(nn.Sequential):
    """A Sequential that hands the time embedding to the residual blocks in it."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class UNet(nn.Module):
    """eps_theta(x_t, t): predicts the noise in x_t. Input and output are (B, C, H, W)."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = cfg = config
        ch = cfg.base_channels
        emb_dim = cfg.time_embed_dim or 4 * ch                      # Ho et al.: 4x the base width
        self.time_embed = TimestepEmbedder(emb_dim // 4, emb_dim)
        self.input_conv = nn.Conv2d(cfg.in_channels, ch, 3, padding=1)

        # Down path: every block's output is kept for a skip connection; remember its width.
        self.down = nn.ModuleList()
        skip_widths = [ch]
        for level, mult in enumerate(cfg.channel_mult):
            side = cfg.image_size // 2 ** level
            for _ in range(cfg.num_res_blocks):
                layers = [ResBlock(ch, cfg.base_channels * mult, emb_dim, cfg)]
                ch = cfg.base_channels * mult
                if side in cfg.attention_resolutions:
                    layers.append(AttentionBlock(ch, cfg))
                self.down.append(TimestepSequential(*layers))
                skip_widths.append(ch)
            if level < len(cfg.channel_mult) - 1:
                self.down.append(TimestepSequential(Downsample(ch)))
                skip_widths.append(ch)

        self.middle = TimestepSequential(ResBlock(ch, ch, emb_dim, cfg), AttentionBlock(ch, cfg),
                                         ResBlock(ch, ch, emb_dim, cfg))

        # Up path: one more block per level than going down, each eating one skip connection.
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            side = cfg.image_size // 2 ** level
            for i in range(cfg.num_res_blocks + 1):
                layers = [ResBlock(ch + skip_widths.pop(), cfg.base_channels * mult, emb_dim, cfg)]
                ch = cfg.base_channels * mult
                if side in cfg.attention_resolutions:
                    layers.append(AttentionBlock(ch, cfg))
                if level > 0 and i == cfg.num_res_blocks:
                    layers.append(Upsample(ch))
                self.up.append(TimestepSequential(*layers))

        # The final conv starts at zero: eps_theta = 0 at initialisation, so the first loss is exactly
        # E||eps||^2 = 1 whatever the input, and no random large outputs disturb the first updates
        # (improved-diffusion does the same).
        self.out = nn.Sequential(nn.GroupNorm(cfg.norm_groups, ch), nn.SiLU(),
                                 zero_init(nn.Conv2d(ch, cfg.in_channels, 3, padding=1)))

    def check_input(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Refuse images of another shape than the config's, and t that is not one value per image."""
        return check_denoiser_input("UNet", x, t, in_channels=self.config.in_channels,
                                    image_size=self.config.image_size, builder="unet_config")

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = self.check_input(x, t)
        emb = self.time_embed(t)                       # (B, 4*base)
        h = self.input_conv(x)                         # (B, base, H, W)
        skips = [h]
        for block in self.down:                        # level i: (B, base*mult[i], H/2^i, W/2^i)
            h = block(h, emb)
            skips.append(h)
        h = self.middle(h, emb)                        # (B, base*mult[-1], H/2^L, W/2^L), L = levels-1
        for block in self.up:                          # concat the matching skip along channels
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)                             # (B, C, H, W)
