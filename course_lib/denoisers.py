"""A denoiser of the profile, trained once on a task's normal images and found again by every notebook,
script and detector that asks for the same one."""
from __future__ import annotations

import dataclasses
import hashlib

import torch

from . import config
from .diffusion import Diffusion
from .nets import build_denoiser, denoiser_config
from .train import TrainConfig, train_or_load


def fit_denoiser(images: torch.Tensor, prof: config.Profile | None = None, *, seed: int = 0,
                 preset: str | None = None, diffusion: Diffusion | None = None,
                 device: torch.device | str | None = None, progress: bool = True):
    """Train (or load, if an earlier notebook or run already did) a denoiser on normal images.

    `preset` names the network (``"unet-small"``, ``"dit-ti4-d6"``, ...; default: the profile's U-Net).
    `diffusion` (default: the profile's T, linear, eps) is what the network learns to invert and to predict:
    its ``prediction`` (eps, x0 or v) is the training target and goes into the checkpoint's name.
    The checkpoint name carries the preset and hashes the images and every setting, so notebook 05's
    model is the one that notebook 06 and the benchmark find again. Returns (EMA model in eval mode, info).
    """
    prof = prof or config.profile()
    preset = preset or prof.unet_preset
    diffusion = diffusion or Diffusion(prof.timesteps, "linear")
    device = torch.device(device) if device is not None else config.get_device()
    c, h, _ = images.shape[1:]
    net_cfg = denoiser_config(preset, in_channels=c, image_size=h)
    tc = TrainConfig.from_profile(prof, seed=seed)
    # the name hashes what changes the weights (how often an interrupted run can resume does not), and
    # says what the network predicts unless it is eps (the names of eps models predate the choice)
    what = (net_cfg, dataclasses.replace(tc, checkpoint_every=0), diffusion.T, diffusion.schedule)
    predicts = "" if diffusion.prediction == "eps" else f"-{diffusion.prediction}"
    key = repr(what if not predicts else what + (diffusion.prediction,)).encode()
    digest = hashlib.sha1(images.detach().cpu().numpy().tobytes() + key).hexdigest()[:12]
    _, ema, info = train_or_load(f"{preset}-{prof.name}-{c}x{h}-{digest}{predicts}", lambda: _seeded(net_cfg, seed),
                                 diffusion, images, tc, device=device, progress=progress)
    return ema.eval().to(device), info


def _seeded(net_cfg, seed: int):
    """The network with its initial weights drawn from `seed` (and the global RNG left as it was), so that
    a detector's fit depends on its seed alone, not on what ran before it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_denoiser(net_cfg)
