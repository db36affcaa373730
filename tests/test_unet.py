"""The DDPM U-Net and the sinusoidal timestep embedding: shapes, hand-computed values, structure."""
import math

import pytest
import torch
from torch import nn

from course_lib.nets import UNet, UNetConfig, timestep_embedding, unet_config
from course_lib.nets.unet import PRESETS

SIZES = [(1, 16), (3, 16), (1, 32), (3, 32), (1, 64), (3, 64)]


pytestmark = pytest.mark.usefixtures("one_thread")


def _randomize_output(model: UNet) -> UNet:
    """Give the zero-initialised convs random weights, so that outputs depend on inputs."""
    torch.manual_seed(1)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Conv1d)) and not module.weight.any():
            nn.init.normal_(module.weight, std=0.05)
    return model


# ----- timestep embedding ---------------------------------------------------------------------------
def test_timestep_embedding_hand_computed():
    # dim 4 -> half 2, frequencies 10000^(-0/2) = 1 and 10000^(-1/2) = 0.01; layout [cos, cos, sin, sin]
    emb = timestep_embedding(torch.tensor([0, 1, 500]), 4)
    expected = torch.tensor([[1.0, 1.0, 0.0, 0.0],
                             [math.cos(1), math.cos(0.01), math.sin(1), math.sin(0.01)],
                             [math.cos(500), math.cos(5.0), math.sin(500), math.sin(5.0)]])
    assert emb.shape == (3, 4) and emb.dtype == torch.float32
    torch.testing.assert_close(emb, expected, atol=1e-4, rtol=0)


def test_timestep_embedding_odd_dim_and_float_t():
    emb = timestep_embedding(torch.tensor([2.5]), 5)   # half 2 -> 4 values and a zero column
    expected = [math.cos(2.5), math.cos(0.025), math.sin(2.5), math.sin(0.025), 0.0]
    torch.testing.assert_close(emb[0], torch.tensor(expected), atol=1e-5, rtol=0)


def test_timestep_embedding_differs_across_t():
    emb = timestep_embedding(torch.arange(1000), 32).double()
    dist = torch.cdist(emb, emb) + torch.eye(1000, dtype=torch.float64) * 1e9
    assert dist.min() > 1e-3                       # every pair of timesteps is told apart
    assert torch.allclose(emb.norm(dim=1), torch.full((1000,), 4.0, dtype=torch.float64))  # sqrt(16 (cos^2+sin^2))


# ----- shapes and presets -----------------------------------------------------------------------------
@pytest.mark.parametrize("preset", ["unet-tiny", "unet-small"])
@pytest.mark.parametrize("channels,size", SIZES)
def test_shapes_real_forward(preset, channels, size):
    model = UNet(unet_config(preset, in_channels=channels, image_size=size))
    x = torch.randn(2, channels, size, size)
    out = model(x, torch.tensor([0, 999]))
    assert out.shape == x.shape
    assert not out.any(), "the final conv is zero-initialised, so eps_theta = 0 at initialisation"


@pytest.mark.parametrize("channels,size", SIZES + [(3, 128), (3, 256)])
def test_shapes_unet_base_on_meta_device(channels, size):
    with torch.device("meta"):                    # shapes only: no memory, no arithmetic
        model = UNet(unet_config("unet-base", in_channels=channels, image_size=size))
        out = model(torch.empty(2, channels, size, size), torch.tensor([3, 7]))
    assert out.shape == (2, channels, size, size)


def test_tiny_runs_at_256_px():
    model = UNet(unet_config("unet-tiny", in_channels=3, image_size=256))
    assert model(torch.randn(1, 3, 256, 256), torch.tensor([10.5])).shape == (1, 3, 256, 256)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("size", [16, 32, 48, 64, 128, 256])
def test_group_norm_groups_divide_channels(preset, size):
    with torch.device("meta"):
        model = UNet(unet_config(preset, in_channels=3, image_size=size))
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert norms and all(m.num_channels % m.num_groups == 0 for m in norms)


def test_base_preset_is_paper_scale():
    cfg = unet_config("unet-base", in_channels=3, image_size=32)
    with torch.device("meta"):
        n = sum(p.numel() for p in UNet(cfg).parameters())
    assert 30e6 < n < 50e6          # DDPM's CIFAR-10 model has 35.7M parameters (Ho et al. 2020, appendix B)
    assert cfg.attention_resolutions == (16, 8) and cfg.channel_mult == (1, 2, 2, 2)


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unet-tiny, unet-small, unet-base"):
        unet_config("unet-huge", in_channels=1, image_size=32)


# ----- bad input ---------------------------------------------------------------------------------------
def test_wrong_channels_names_both():
    model = UNet(unet_config("unet-tiny", in_channels=3, image_size=16))
    with pytest.raises(ValueError) as err:
        model(torch.randn(2, 1, 16, 16), torch.tensor([1, 2]))
    assert "in_channels=3" in str(err.value) and "(2, 1, 16, 16)" in str(err.value)


def test_wrong_size_names_both():
    model = UNet(unet_config("unet-tiny", in_channels=1, image_size=32))
    with pytest.raises(ValueError) as err:
        model(torch.randn(2, 1, 16, 16), torch.tensor([1, 2]))
    assert "image_size=32" in str(err.value) and "(2, 1, 16, 16)" in str(err.value)


def test_wrong_t_shape():
    model = UNet(unet_config("unet-tiny", in_channels=1, image_size=16))
    with pytest.raises(ValueError, match=r"t must have shape \(2,\)"):
        model(torch.randn(2, 1, 16, 16), torch.tensor([1, 2, 3]))


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="divisible by 8"):
        UNetConfig(image_size=20, channel_mult=(1, 2, 2, 2))
    with pytest.raises(ValueError, match="norm_groups=32 does not divide the width 48"):
        UNetConfig(base_channels=48, norm_groups=32)
    with pytest.raises(ValueError, match=r"attention_resolutions \[5\]"):
        UNetConfig(image_size=32, attention_resolutions=(5,))


# ----- structure: what a U-Net must do -----------------------------------------------------------------
def test_time_conditioning_changes_the_output():
    for scale_shift in (True, False):
        cfg = UNetConfig(1, 16, 16, (1, 2), 1, (8,), 0.0, 2, 8, scale_shift)
        model = _randomize_output(UNet(cfg)).eval()
        x = torch.randn(1, 1, 16, 16).expand(2, 1, 16, 16)
        out = model(x, torch.tensor([10, 900]))
        assert (out[0] - out[1]).abs().max() > 1e-4


def test_receptive_field_is_global_and_images_do_not_mix():
    model = _randomize_output(UNet(unet_config("unet-tiny", in_channels=1, image_size=16))).eval()
    x = torch.randn(2, 1, 16, 16, requires_grad=True)
    model(x, torch.tensor([5, 5]))[0, 0, 0, 0].backward()
    assert x.grad[0, 0, 15, 15].abs() > 0          # a corner pixel sees the opposite corner
    assert not x.grad[1].any()                      # and nothing of the other image (no batch mixing)


# ----- the exercise checks of notebook 05 ---------------------------------------------------------------
def test_checks_accept_right_answers_and_explain_wrong_ones():
    from course_lib.course import checks
    from course_lib.train import TrainConfig, lr_at

    assert checks.check_timestep_embedding(timestep_embedding)
    swapped = lambda t, dim: timestep_embedding(t, dim).roll(dim // 2, dims=1)  # noqa: E731
    with pytest.raises(checks.ExerciseError, match="swapped"):
        checks.check_timestep_embedding(swapped)
    assert checks.check_ema_update(lambda ema, theta, d: d * ema + (1 - d) * theta)
    with pytest.raises(checks.ExerciseError, match="swapped"):
        checks.check_ema_update(lambda ema, theta, d: (1 - d) * ema + d * theta)
    assert checks.check_warmup_lr(lambda s, lr, w: lr_at(s, TrainConfig(lr=lr, warmup=w)))
    with pytest.raises(checks.ExerciseError, match="step = 0"):
        checks.check_warmup_lr(lambda s, lr, w: lr * min(1.0, s / w) if w else lr)
