"""The gpu profile, run before a learner runs it: every denoiser it trains, at every image shape it trains
at, takes training steps and gives both scores, through the detector a learner uses. Only the lengths are
cut (2 steps, batches of 2, one or two noise levels, one DDIM step); the networks, their sizes and the
profile's other settings are the gpu profile's.

The accelerator's paths (channels_last, bf16 autocast) run only on CUDA unless ``$COURSE_FAST_PATHS=1``,
which the second half of the cases sets: the same lines then run on the CPU, with CPU bf16 autocast.
"""
from dataclasses import replace

import numpy as np
import pytest
import torch

from course_lib import config
from course_lib import train as train_module
from course_lib.diffusion_detector import DiffusionDetector
from course_lib.scoring import ScoreConfig
from tools import devicecheck

GPU = config.profile("gpu")
SHORT = replace(GPU, train_steps=2, batch_size=2, noise_timesteps=(10, GPU.noise_timesteps[-1]),
                t_stars=GPU.t_stars[:1], ddim_steps=1, n_noise=1)


def smooth_images(n: int, channels: int, side: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(side + channels)
    coarse = torch.rand(n, channels, 4, 4, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=side, mode="bilinear", align_corners=False)


def test_the_shapes_are_every_shape_the_gpu_profile_trains_at():
    # digits and MNIST, photos and CIFAR-10, textures, MVTec-AD (RGB), photos-64 and Mini-ImageNet
    assert devicecheck.image_sizes(GPU) == [(1, 32), (3, 32), (3, 64), (1, 128), (3, 128)]


@pytest.mark.parametrize("fast", [False, True], ids=["fp32", "bf16-channels-last"])
@pytest.mark.parametrize("channels, side", devicecheck.image_sizes(GPU))
@pytest.mark.parametrize("preset", [GPU.unet_preset, GPU.dit_preset])
def test_every_gpu_denoiser_trains_and_scores_at_every_shape(preset, channels, side, fast, tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CHECKPOINTS", str(tmp_path))
    monkeypatch.setenv(config.FAST_PATHS_ENV, "1" if fast else "0")
    seen = []                                   # (input in channels_last, output dtype) of each training step

    def spy(forward, model, *rest):
        hook = model.register_forward_hook(lambda m, inp, out: seen.append(
            (inp[0].is_contiguous(memory_format=torch.channels_last), out.dtype)))
        try:
            return real_step(forward, model, *rest)
        finally:
            hook.remove()

    real_step = train_module._gradient_step
    monkeypatch.setattr(train_module, "_gradient_step", spy)
    images = smooth_images(4, channels, side)
    for score in ("noise", "reconstruction"):
        det = DiffusionDetector(ScoreConfig.for_task(SHORT, score, "local"), preset=preset, prof=SHORT,
                                progress=False, threshold_split=0).fit(images[:2])
        assert det.train_info_["steps"] == 2
        scores = det.decision_function(images[2:])           # through the maps, calibrated on the training images
        assert scores.shape == (2,) and np.isfinite(scores).all()
    assert len(seen) == 2                       # trained once (the second detector found the model)
    assert all(dtype == (torch.bfloat16 if fast else torch.float32) for _, dtype in seen)
    if channels > 1:                            # (one channel is trivially channels_last)
        assert all(last == fast for last, _ in seen)
