"""The exercise checks of notebook 06: they pass correct answers and reject typical wrong ones."""
import math

import pytest
import torch
import torch.nn.functional as F

from course_lib.course import checks
from course_lib.course.checks import ExerciseError
from course_lib.course.checks.scoring import GaussianEpsOracle
from course_lib.anomaly_maps import smooth_maps


def noise_map(model, x0, eps, t, abar_t, *, feed_x0=False, linear=False, reduce="mean", square=True):
    a = abar_t if linear else math.sqrt(abar_t)
    b = 1 - abar_t if linear else math.sqrt(1 - abar_t)
    x_t = x0 if feed_x0 else a * x0 + b * eps
    eps_hat = model(x_t, torch.full((x0.shape[0],), t, dtype=torch.long))
    err = (eps - eps_hat).pow(2) if square else (eps - eps_hat).abs()
    return err.mean(1, keepdim=True) if reduce == "mean" else err.sum(1, keepdim=True)


def test_noise_check_accepts_a_correct_map_also_in_float32():
    assert checks.check_noise_prediction_map(noise_map)
    assert checks.check_noise_prediction_map(lambda m, x0, eps, t, a: noise_map(m, x0.float(), eps.float(), t, a))


@pytest.mark.parametrize("wrong, message", [
    (lambda *a: noise_map(*a, feed_x0=True), "clean image"),
    (lambda *a: noise_map(*a, linear=True), "square roots"),
    (lambda *a: noise_map(*a, reduce="sum"), "summed over the 3 channels"),
    (lambda *a: noise_map(*a, square=False), "not the squared error"),
    (lambda *a: noise_map(*a).flatten(1).mean(1), "expected an output of shape"),
    (lambda m, x0, eps, t, a: noise_map(m, x0, eps, t + 1, a), "differs"),
    (lambda m, x0, eps, t, a: m(math.sqrt(a) * x0 + math.sqrt(1 - a) * eps, t), "raised TypeError"),
])
def test_noise_check_rejects_typical_mistakes(wrong, message):
    with pytest.raises(ExerciseError, match=message):
        checks.check_noise_prediction_map(wrong)


def test_oracle_is_the_posterior_mean_of_the_noise():
    # Monte Carlo: for data N(mu, s^2) the oracle's expected error E||eps - E[eps|x_t]||^2 is the
    # conditional variance abar s^2 / (abar s^2 + 1 - abar); a predictor that is off by 0.2 does worse.
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
    oracle = GaussianEpsOracle(abar, mu=0.3, s=0.5)
    g = torch.Generator().manual_seed(0)
    n, t = 400_000, 299
    a = abar[t]
    x0 = 0.3 + 0.5 * torch.randn(n, 1, 1, 1, generator=g, dtype=torch.float64)
    eps = torch.randn(n, 1, 1, 1, generator=g, dtype=torch.float64)
    eps_hat = oracle(a.sqrt() * x0 + (1 - a).sqrt() * eps, torch.full((n,), t))
    mse = (eps - eps_hat).pow(2).mean().item()
    want = (a * 0.25 / (a * 0.25 + 1 - a)).item()
    assert abs(mse - want) < 4 * math.sqrt(2 / n) * want
    assert (eps - eps_hat - 0.2).pow(2).mean().item() > mse + 0.03


def blur(maps, sigma, pad="reflect", normalize=True):
    r = int(round(3 * sigma))
    x = torch.arange(-r, r + 1, dtype=maps.dtype)
    k = torch.exp(-x ** 2 / (2 * sigma ** 2))
    if normalize:
        k = k / k.sum()
    if pad == "zeros":
        out = F.conv2d(maps, k.view(1, 1, 1, -1), padding=(0, r))
        return F.conv2d(out, k.view(1, 1, -1, 1), padding=(r, 0))
    out = F.conv2d(F.pad(maps, (r, r, r, r), mode=pad), k.view(1, 1, 1, -1))
    return F.conv2d(out, k.view(1, 1, -1, 1))


def test_smoothing_check_accepts_the_library_and_a_hand_written_blur():
    assert checks.check_smooth_maps(smooth_maps)
    assert checks.check_smooth_maps(blur)


@pytest.mark.parametrize("wrong, message", [
    (lambda m, s: blur(m, s, normalize=False), "sums to 1"),
    (lambda m, s: blur(m, s, pad="zeros"), "constant map"),
    (lambda m, s: blur(m, s, pad="replicate"), "border"),
    (lambda m, s: blur(m, s ** 2), "differs from a Gaussian blur"),
    (lambda m, s: blur(m, s)[:, :, 1:], "expected an output of shape"),
])
def test_smoothing_check_rejects_typical_mistakes(wrong, message):
    with pytest.raises(ExerciseError, match=message):
        checks.check_smooth_maps(wrong)
