"""The 2-D toy DDPM pieces and the Gaussian oracle, against independent references."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from course_lib.diffusion import Diffusion
from course_lib.sampling import ddpm_sample
from course_lib.course.toy import GaussianOracle, TimeMLP, distance_to_data, toy_data, train_toy


@pytest.mark.parametrize("name", ["moons", "spiral"])
def test_toy_data_shape_scale_and_determinism(name):
    x = toy_data(name, 500, seed=3)
    assert x.shape == (500, 2) and x.dtype == torch.float32
    assert torch.equal(x, toy_data(name, 500, seed=3)) and not torch.equal(x, toy_data(name, 500, seed=4))
    assert 0.5 < x.std(0).min() and x.std(0).max() < 1.5 and x.mean(0).abs().max() < 0.3


def test_gaussian_oracle_is_the_regression_of_eps_on_x_t():
    """E[eps | x_t] is linear for Gaussian data: a least-squares fit on simulated pairs recovers it."""
    d = Diffusion(100, "linear")
    m, s, n = 0.4, 0.3, 200_000
    g = torch.Generator().manual_seed(0)
    x0 = m + s * torch.randn(n, 1, generator=g, dtype=torch.float64)
    eps = torch.randn(n, 1, generator=g, dtype=torch.float64)
    oracle = GaussianOracle(d, m, s)
    for t in (3, 40, 90):
        x_t = d.q_sample(x0, t, eps)
        A = torch.cat([x_t, torch.ones_like(x_t)], 1)
        coef = torch.linalg.lstsq(A, eps).solution.squeeze(1)
        probe = m + s * torch.tensor([[-1.0], [0.0], [1.0]], dtype=torch.float64)  # within the data
        torch.testing.assert_close(oracle(probe, t).squeeze(1), coef[0] * probe.squeeze(1) + coef[1],
                                   atol=0.01, rtol=0)


def test_distance_to_data_matches_sklearn():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 2)), rng.normal(size=(80, 2))
    ref = NearestNeighbors(n_neighbors=1).fit(b).kneighbors(a)[0][:, 0]
    np.testing.assert_allclose(distance_to_data(torch.tensor(a), torch.tensor(b)).numpy(), ref, rtol=1e-10)


def test_toy_ddpm_learns_in_a_few_hundred_steps():
    torch.manual_seed(0)
    d = Diffusion(100, "linear")
    data, ref = toy_data("moons", 2000, seed=0), toy_data("moons", 3000, seed=1)
    model = TimeMLP(100)
    losses = train_toy(model, d, data, steps=400, lr=2e-2, seed=0)
    assert np.mean(losses[-50:]) < 0.6 * np.mean(losses[:10])
    x, nfe = ddpm_sample(d, model, (1000, 2), generator=torch.Generator().manual_seed(0))
    noise_dist = distance_to_data(torch.randn(1000, 2, generator=torch.Generator().manual_seed(1)), ref)
    assert nfe == 100 and distance_to_data(x, ref).median() < 0.5 * noise_dist.median()


def test_bad_input_gets_clear_errors():
    with pytest.raises(ValueError, match="Unknown toy"):
        toy_data("circles", 10)
    with pytest.raises(ValueError, match="t \\(B,\\)"):
        TimeMLP(10)(torch.zeros(3, 2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="std"):
        GaussianOracle(Diffusion(10), 0.0, 0.0)
