"""Denoising networks eps_theta(x_t, t) and the one factory that builds any of them by preset name.

    make_denoiser("unet-small", in_channels=1, image_size=32)   # a DDPM U-Net (nets.unet)
    make_denoiser("dit-ti4-d6", in_channels=3, image_size=32)   # a Diffusion Transformer (nets.dit)

Every denoiser maps (x_t of shape (B, C, H, W), t of shape (B,)) to a noise prediction of x_t's shape,
so the diffusion core, the training loop and the scores work with any of them.
"""
from __future__ import annotations

from torch import nn

from .dit import DiT, DiTConfig, dit_config  # noqa: F401
from .dit import PRESETS as DIT_PRESETS
from .embeddings import TimestepEmbedder, timestep_embedding, zero_init  # noqa: F401
from .unet import UNet, UNetConfig, unet_config  # noqa: F401
from .unet import PRESETS as UNET_PRESETS

DENOISER_FAMILIES = ("unet", "dit")   # a preset name starts with its family: "unet-small", "dit-s4"


def denoiser_family(preset: str) -> str:
    """"unet" or "dit", from the preset's prefix; an unknown name gets an error listing the valid ones."""
    family = preset.split("-", 1)[0] if isinstance(preset, str) else None
    if family not in DENOISER_FAMILIES:
        raise ValueError(f"Unknown denoiser preset {preset!r}; valid presets: {', '.join(denoiser_presets())} "
                         "(a DiT preset may add a depth, e.g. 'dit-ti4-d6').")
    return family


def denoiser_presets() -> tuple[str, ...]:
    """Every base preset name: the U-Nets, then the DiTs."""
    return UNET_PRESETS + DIT_PRESETS


def denoiser_config(preset: str, *, in_channels: int, image_size: int):
    """The config dataclass (UNetConfig or DiTConfig) of a preset for images of C channels and side H."""
    if denoiser_family(preset) == "unet":
        return unet_config(preset, in_channels=in_channels, image_size=image_size)
    return dit_config(preset, in_channels=in_channels, image_size=image_size)


def build_denoiser(config) -> nn.Module:
    """The network of a config made by :func:`denoiser_config` (or by hand)."""
    if isinstance(config, UNetConfig):
        return UNet(config)
    if isinstance(config, DiTConfig):
        return DiT(config)
    raise TypeError(f"build_denoiser: expected a UNetConfig or DiTConfig, got {type(config).__name__}.")


def make_denoiser(preset: str, *, in_channels: int, image_size: int) -> nn.Module:
    """A freshly initialised denoiser of a preset, for images of C channels and side H."""
    return build_denoiser(denoiser_config(preset, in_channels=in_channels, image_size=image_size))
