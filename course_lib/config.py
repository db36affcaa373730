"""Profiles, device, seeding and paths: the one switch that sizes the whole course.

`COURSE_PROFILE` = ``smoke`` | ``cpu`` | ``gpu``. Left unset it is ``gpu`` when CUDA is
available (a Colab GPU runtime, for one) and ``cpu`` otherwise. Every size in the course (images, steps, widths, test sets,
seeds) comes from the :class:`Profile` returned by :func:`profile`.
"""
from __future__ import annotations

import hashlib
import numbers
import os
import random
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch

ProfileName = Literal["smoke", "cpu", "gpu"]


@dataclass(frozen=True)
class Profile:
    """All the sizes that change between a CI run, a laptop and a GPU."""

    name: ProfileName
    # --- data -------------------------------------------------------------------------
    digits_size: int          # side of the resized sklearn digits (and MNIST-like tasks), px
    photo_size: int           # side of the colour-photo crops (CIFAR-like task), px
    texture_size: int         # side of the texture patches (MVTec-like task), px
    n_train: int              # at most this many normal training images per task
    n_test: int               # about this many test images per task (half normal, half anomalous)
    # --- diffusion ----------------------------------------------------------------------
    timesteps: int            # T, the length of the forward chain
    # --- training -----------------------------------------------------------------------
    train_steps: int          # optimizer steps for one diffusion model
    batch_size: int           # images per optimizer step
    lr: float                 # AdamW peak learning rate
    unet_preset: str          # name of a preset in course_lib.nets.unet
    dit_preset: str           # name of a preset in course_lib.nets.dit (nets.make_denoiser builds either)
    # --- scoring ------------------------------------------------------------------------
    t_stars: tuple[int, ...]  # noise levels t* the reconstruction score averages over
    ddim_steps: int           # K, denoising steps from t* back to 0
    n_noise: int              # reconstruction score: noise draws averaged per image
    noise_timesteps: tuple[int, ...]  # noise-score timesteps (1-indexed); small t: sharp defects, large: smooth
    noise_pairs: int          # noise score: antithetic noise pairs (eps, -eps) per timestep (NFE = 2 x pairs x timesteps)
    noise_coarse_sigma: float  # noise score: blur of the pair's even part where SNR_t < 1, px (scoring.py)
    map_sigma: float          # Gaussian smoothing of anomaly maps, in pixels
    map_calibrate: bool       # standardize each level's map per pixel against normal images (anomaly_maps.py)
    # --- evaluation ---------------------------------------------------------------------
    seeds: tuple[int, ...]    # seeds the benchmark repeats every cell over
    bf16: bool                # bf16 autocast on CUDA
    compile: bool             # torch.compile the denoiser on CUDA

    def __post_init__(self):
        T = self.timesteps
        levels = lambda v: _ints_in(v, 1, T)  # noqa: E731
        rules = [
            ("name", self.name in ("smoke", "cpu", "gpu"), "smoke, cpu or gpu"),
            *((f, _is_int(getattr(self, f)) and getattr(self, f) >= 4, "an int >= 4 (pixels)")
              for f in ("digits_size", "photo_size", "texture_size")),
            *((f, _is_int(getattr(self, f)) and getattr(self, f) >= 2, "an int >= 2")
              for f in ("n_train", "n_test", "timesteps")),
            *((f, _is_int(getattr(self, f)) and getattr(self, f) >= 1, "an int >= 1")
              for f in ("train_steps", "batch_size", "ddim_steps", "n_noise", "noise_pairs")),
            ("lr", isinstance(self.lr, numbers.Real) and not isinstance(self.lr, bool) and self.lr > 0, "a number > 0"),
            ("unet_preset", isinstance(self.unet_preset, str) and self.unet_preset.startswith("unet-"),
             "a U-Net preset name, 'unet-...'"),
            ("dit_preset", isinstance(self.dit_preset, str) and self.dit_preset.startswith("dit-"),
             "a DiT preset name, 'dit-...'"),
            ("t_stars", levels(self.t_stars), f"a non-empty tuple of ints in [1, {T}] (1-indexed)"),
            ("noise_timesteps", levels(self.noise_timesteps), f"a non-empty tuple of ints in [1, {T}] (1-indexed)"),
            ("noise_coarse_sigma", self.noise_coarse_sigma >= 0, ">= 0 (px)"),
            ("map_sigma", self.map_sigma >= 0, ">= 0 (px)"),
            ("seeds", _ints_in(self.seeds, 0, None), "a non-empty tuple of ints >= 0"),
            *((f, isinstance(getattr(self, f), bool), "True or False") for f in ("map_calibrate", "bf16", "compile")),
        ]
        problems = [f"{f}={getattr(self, f)!r} must be {rule}" for f, ok, rule in rules if not ok]
        if problems:
            raise ValueError(f"Profile {self.name!r}: " + "; ".join(problems) + ".")

    def fingerprint(self) -> str:
        """Ten hex digits of every field, in order: what a cached benchmark cell was computed under."""
        return hashlib.sha1(repr(self).encode()).hexdigest()[:10]


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _ints_in(values, low: int, high: int | None) -> bool:
    """True for a non-empty tuple of ints in [low, high] (no upper bound when high is None)."""
    return (isinstance(values, tuple) and len(values) > 0
            and all(_is_int(v) and v >= low and (high is None or v <= high) for v in values))


PROFILES: dict[str, Profile] = {
    # CI and nbval: every code path on tiny sizes; the numbers mean nothing.
    "smoke": Profile(
        name="smoke", digits_size=16, photo_size=16, texture_size=32, n_train=64, n_test=40,
        timesteps=1000, train_steps=30, batch_size=16, lr=2e-3,
        unet_preset="unet-tiny", dit_preset="dit-ti4-d2",
        t_stars=(250,), ddim_steps=3, n_noise=1, noise_timesteps=(10, 300), noise_pairs=1,
        noise_coarse_sigma=0.75,
        map_sigma=1.0, map_calibrate=True, seeds=(0,), bf16=False, compile=False,
    ),
    # A learner on a laptop: minutes per notebook on offline data, and the models really learn.
    "cpu": Profile(
        name="cpu", digits_size=16, photo_size=32, texture_size=32, n_train=400, n_test=200,
        timesteps=1000, train_steps=800, batch_size=32, lr=1e-3,
        unet_preset="unet-small",
        dit_preset="dit-ti4-d6",     # DiT-Ti/4 at half the paper's depth, about the U-Net's training time
        t_stars=(100, 250), ddim_steps=10, n_noise=2,
        # two small t (SNR >> 1: sharp defects) and two large (SNR < 1: smooth defects), one antithetic
        # pair each: 8 NFE (how they were chosen: results/ablations-textures*.md, notebook 07)
        noise_timesteps=(10, 25, 300, 400), noise_pairs=1, noise_coarse_sigma=0.75,
        map_sigma=2.0, map_calibrate=True, seeds=(0, 1, 2), bf16=False, compile=False,
    ),
    # The paper's scale on real datasets: a Colab T4 up to an H200.
    "gpu": Profile(
        name="gpu", digits_size=32, photo_size=32, texture_size=128, n_train=5000, n_test=2000,
        timesteps=1000, train_steps=20000, batch_size=128, lr=2e-4,
        unet_preset="unet-base",
        dit_preset="dit-s4",         # DiT-S/4: 1024 tokens at the 128 px textures (patch 2 would give 4096)
        t_stars=(100, 250, 400), ddim_steps=25, n_noise=4,
        # both ends of the noise, as in cpu, the large t moved up: a larger side needs more noise to hide
        # coarse content; the blur is sized for the 128 px textures (4x the cpu side). Not yet run on a GPU.
        noise_timesteps=(10, 25, 500, 700), map_sigma=2.0, map_calibrate=True,
        noise_pairs=1, noise_coarse_sigma=3.0,
        seeds=(0, 1, 2, 3, 4), bf16=True, compile=False,
    ),
}


def profile(name: str | None = None, **overrides) -> Profile:
    """The active profile: `name`, else `$COURSE_PROFILE`, else gpu/cpu by CUDA availability.

    Keyword overrides replace single fields, e.g. ``profile("cpu", train_steps=200)``.
    """
    if name is None:
        name = os.environ.get("COURSE_PROFILE", "").strip().lower() or (
            "gpu" if torch.cuda.is_available() else "cpu")
    if name not in PROFILES:
        raise ValueError(
            f"Unknown profile {name!r}. Valid profiles: {', '.join(PROFILES)}. "
            "Set COURSE_PROFILE to one of them (or leave it unset for automatic choice).")
    chosen = PROFILES[name]
    unknown = set(overrides) - set(chosen.__dataclass_fields__)
    if unknown:
        raise ValueError(f"Unknown profile field(s) {sorted(unknown)}; "
                         f"valid fields: {', '.join(chosen.__dataclass_fields__)}")
    return replace(chosen, **overrides)


def get_device(prefer: str | None = None) -> torch.device:
    """cuda, then mps, then cpu; `prefer` (or `$COURSE_DEVICE`) forces one."""
    where = "the device" if prefer else "COURSE_DEVICE"
    prefer = prefer or os.environ.get("COURSE_DEVICE")
    if prefer:
        try:
            dev = torch.device(prefer)
        except RuntimeError:
            dev = None
        if dev is None or dev.type not in ("cpu", "cuda", "mps"):
            raise ValueError(f"{where} {prefer!r} is not one this course runs on: use cpu, cuda (or cuda:N) or mps, "
                             "or leave it unset to take the best one present.")
        available = {"cpu": True, "cuda": torch.cuda.is_available(),
                     "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()}
        if not available[dev.type]:
            raise ValueError(f"{where} {prefer!r} asks for {dev.type}, but torch sees no {dev.type} device here: "
                             "use cpu, or leave it unset.")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


FAST_PATHS_ENV = "COURSE_FAST_PATHS"


def fast_paths(device: torch.device) -> bool:
    """Whether training and scoring take the accelerator's paths (channels_last, and bf16 autocast where the
    profile asks for it): on CUDA; elsewhere only when ``$COURSE_FAST_PATHS=1``, which the gpu-profile test
    sets to run those very lines on the CPU."""
    return device.type == "cuda" or os.environ.get(FAST_PATHS_ENV) == "1"


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def data_root() -> Path:
    """Where real datasets live: `$COURSE_DATA`; else the course's ``data/`` folder (the one holding its
    README.md) in the current directory or its parent, so that a clone's root and its ``notebooks/`` agree;
    else ``./data``."""
    if os.environ.get("COURSE_DATA"):
        return Path(os.environ["COURSE_DATA"]).expanduser()
    here = Path.cwd()
    for folder in (here, here.parent):
        if (folder / "data" / "README.md").is_file():
            return folder / "data"
    return Path("data")


def cache_root() -> Path:
    """The user cache, outside any clone of the repository: `$COURSE_CACHE`, else ``~/.cache/course_lib``.
    Trained models and finished benchmark cells live here, so a run resumes across clones and a fresh
    checkout does not throw hours of training away."""
    return Path(os.environ.get("COURSE_CACHE") or Path.home() / ".cache" / "course_lib").expanduser()


def checkpoint_dir() -> Path:
    """Where trained models are kept between notebooks, scripts and clones: `$COURSE_CHECKPOINTS`, else
    ``checkpoints/`` in the user cache (:func:`cache_root`)."""
    return Path(os.environ.get("COURSE_CHECKPOINTS") or cache_root() / "checkpoints").expanduser()


def on_colab() -> bool:
    """True inside Google Colab, where the course defaults to the real datasets that download themselves."""
    return "google.colab" in sys.modules
