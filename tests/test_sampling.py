"""DDPM and DDIM samplers, reconstruct from t*, DDIM inversion: checked with the exact Gaussian predictor."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from course_lib.diffusion import Diffusion
from course_lib.sampling import (ddim_denoise, ddim_invert, ddim_sample, ddim_sigma, ddim_step, ddim_timesteps,
                                 ddpm_denoise, ddpm_sample, reconstruct)
from course_lib.course.toy import GaussianOracle

M, S = 0.3, 0.5  # data N(M, S^2) per dimension, for which GaussianOracle is the exact optimal predictor


@pytest.fixture(scope="module")
def setting():
    d = Diffusion(1000, "linear")
    return d, GaussianOracle(d, M, S)


def test_ddim_eta0_is_deterministic_and_eta1_is_not(setting):
    d, model = setting
    x0 = torch.randn(64, 3)
    noise = torch.randn(64, 3)
    a, nfe = reconstruct(d, model, x0, 60, steps=10, noise=noise, generator=torch.Generator().manual_seed(1))
    b, _ = reconstruct(d, model, x0, 60, steps=10, noise=noise, generator=torch.Generator().manual_seed(2))
    assert nfe == 10 and torch.equal(a, b)
    c, _ = reconstruct(d, model, x0, 60, steps=10, eta=1.0, noise=noise, generator=torch.Generator().manual_seed(1))
    e, _ = reconstruct(d, model, x0, 60, steps=10, eta=1.0, noise=noise, generator=torch.Generator().manual_seed(2))
    f, _ = reconstruct(d, model, x0, 60, steps=10, eta=1.0, noise=noise, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(c, e) and torch.equal(c, f)


def test_ddim_eta1_has_the_ddpm_posterior_variance_and_mean(setting):
    d, model = setting
    b = np.linspace(1e-4, 0.02, 1000)
    abar = np.cumprod(1 - b)
    x_t = torch.randn(32, 2, dtype=torch.float64)
    for t in (1, 10, 500, 999):
        post_var = b[t] * (1 - abar[t - 1]) / (1 - abar[t])  # tilde beta_t, float64 (Ho et al. eq. 7)
        assert ddim_sigma(d, t, t - 1, 1.0) ** 2 == pytest.approx(post_var, rel=1e-5)
        assert ddim_sigma(d, t, t - 1, 0.0) == 0.0
        mean_ddim = ddim_step(d, model, x_t, t, t - 1, eta=1.0, noise=torch.zeros_like(x_t))
        mean_ddpm = d.p_mean_variance(model, x_t, torch.full((32,), t)).mean
        torch.testing.assert_close(mean_ddim, mean_ddpm, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("eta", [0.25, 0.5, 0.8])
def test_ddim_sigma_is_linear_in_eta_between_any_two_levels(eta):
    """sigma_t(eta) = eta sqrt((1 - abar_s) / (1 - abar_t)) sqrt(1 - abar_t / abar_s) (Song et al. 2021, eq. 16),
    in float64 from the betas, for skips of several levels as a K-step DDIM takes them."""
    d = Diffusion(1000, "linear")
    b = np.linspace(1e-4, 0.02, 1000)
    abar = np.cumprod(1 - b)
    for t, s in ((999, 899), (500, 250), (40, 0), (10, -1)):
        abar_s = 1.0 if s < 0 else abar[s]
        expected = eta * math.sqrt((1 - abar_s) / (1 - abar[t]) * (1 - abar[t] / abar_s))
        assert ddim_sigma(d, t, s, eta) == pytest.approx(expected, rel=1e-5)


def test_ddim_inversion_then_sampling_returns_the_input(setting):
    d, model = setting
    x0 = M + S * torch.randn(256, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    def round_trip(t_star, steps, iters):
        x_t, nfe = ddim_invert(d, model, x0, t_star, steps=steps, fixed_point_iters=iters)
        back, nfe2 = ddim_denoise(d, model, x_t, t_star - 1, steps=steps)
        assert nfe == steps * (1 + iters) and nfe2 == steps
        return (back - x0).abs().max().item()
    # plain inversion: a first-order error in the step size
    errs = [round_trip(1000, k, 0) for k in (25, 100, 1000)]
    assert errs[2] < 0.02 and errs[2] < errs[1] < errs[0], errs
    # fixed-point refinement inverts each denoising step (nearly) exactly
    assert round_trip(1000, 25, 3) < 2e-3 and round_trip(400, 10, 3) < 2e-3 and round_trip(100, 10, 3) < 1e-4
    # and inversion to t* = T maps the data to (approximately) standard normal noise
    x_T, _ = ddim_invert(d, model, x0, steps=100, fixed_point_iters=2)
    assert abs(x_T.mean().item()) < 0.15 and abs(x_T.std().item() - 1) < 0.1


@pytest.mark.parametrize("how", ["ddpm", "ddim", "ddim_eta1"])
def test_samplers_reproduce_the_data_distribution(how):
    """From pure noise, the exact predictor must produce samples with the data's mean and std."""
    d = Diffusion(250, "cosine")
    model = GaussianOracle(d, M, S)
    g = torch.Generator().manual_seed(4)
    n = 4000
    if how == "ddpm":
        x, nfe = ddpm_sample(d, model, (n, 1), generator=g)
        assert nfe == 250
    else:  # K = 100 of 250 levels: a small discretisation bias remains (std ~0.485 instead of 0.5)
        x, nfe = ddim_sample(d, model, (n, 1), steps=100, eta=0.0 if how == "ddim" else 1.0, generator=g)
        assert nfe == 100
    se_m, se_s = S / math.sqrt(n), S / math.sqrt(2 * n)
    assert abs(x.mean().item() - M) < 5 * se_m, x.mean()
    assert abs(x.std().item() - S) < 5 * se_s + 0.01, x.std()


def test_reconstruct_samplers_and_nfe(setting):
    d, model = setting
    x0 = M + S * torch.randn(500, 2, generator=torch.Generator().manual_seed(5))
    for kw, nfe_expected in [(dict(sampler="ddpm"), 100), (dict(sampler="ddpm", steps=6), 6),
                             (dict(sampler="ddpm", variance="fixed_large"), 100), (dict(steps=1), 1),
                             (dict(sampler="ddim", steps=30), 30)]:
        x_hat, nfe = reconstruct(d, model, x0, 100, generator=torch.Generator().manual_seed(0), **kw)
        assert nfe == nfe_expected and x_hat.shape == x0.shape and x_hat.dtype == x0.dtype
        # normal data comes back close: at t* = 100, Var(x_0 | x_t) = 0.077, a posterior draw
        # (ddpm) is off by twice that on average, the posterior mean (ddim) by about that
        assert (x_hat - x0).pow(2).mean().item() < 0.7 * S ** 2, kw
    # an outlier far from N(M, S^2) comes back towards the data, so its reconstruction error is larger
    far = torch.full((500, 2), 3.0)
    err_far = (reconstruct(d, model, far, 100, steps=10)[0] - far).pow(2).mean()
    err_near = (reconstruct(d, model, x0, 100, steps=10)[0] - x0).pow(2).mean()
    assert err_far > 3 * err_near


def test_model_is_called_with_long_t_of_shape_B_and_respects_the_schedule(setting):
    d, oracle = setting
    seen = []

    def model(x, t):
        seen.append((t.dtype, tuple(t.shape), int(t[0])))
        return oracle(x, t)
    x0 = torch.zeros(7, 1, 4, 4)
    reconstruct(d, model, x0, 50, steps=5)
    assert all(dt == torch.long and sh == (7,) for dt, sh, _ in seen)
    assert [s for _, _, s in seen] == ddim_timesteps(49, 5) == [49, 37, 24, 12, 0]
    seen.clear()
    ddpm_denoise(d, model, x0, 3)
    assert [s for _, _, s in seen] == [3, 2, 1, 0]


def test_bad_input_gets_clear_errors(setting):
    d, model = setting
    x0 = torch.zeros(4, 2)
    for bad in (0, 1001, -5):
        with pytest.raises(ValueError, match="1-indexed"):
            reconstruct(d, model, x0, bad)
    for bad in (2.5, True, None):
        with pytest.raises(TypeError, match="t_star"):
            reconstruct(d, model, x0, bad)
    with pytest.raises(ValueError, match="steps"):
        reconstruct(d, model, x0, 10, steps=11)
    with pytest.raises(ValueError, match="steps"):
        reconstruct(d, model, x0, 10, steps=0)
    with pytest.raises(ValueError, match="Unknown sampler"):
        reconstruct(d, model, x0, 10, sampler="euler")
    with pytest.raises(ValueError, match="eta"):
        reconstruct(d, model, x0, 10, sampler="ddpm", eta=0.5)
    with pytest.raises(ValueError, match="eta"):
        reconstruct(d, model, x0, 10, eta=-1.0)
    with pytest.raises(ValueError, match="fixed_small"):
        reconstruct(d, model, x0, 10, sampler="ddpm", steps=5, variance="fixed_large")
    with pytest.raises(ValueError, match="noise shape"):
        reconstruct(d, model, x0, 10, noise=torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"\[0, 999\]"):
        ddpm_denoise(d, model, x0, 1000)
    with pytest.raises(ValueError, match="fixed_point_iters"):
        ddim_invert(d, model, x0, 10, fixed_point_iters=-1)
    with pytest.raises(ValueError, match="1-indexed"):
        ddim_invert(d, model, x0, 0)
