"""Denoising networks eps_theta(x_t, t) and the pieces they share."""
from .embeddings import TimestepEmbedder, timestep_embedding  # noqa: F401
from .unet import UNet, UNetConfig, unet_config  # noqa: F401
