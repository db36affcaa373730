"""Anomaly scores: directions, determinism, map smoothing, and a real (short) training run."""
import numpy as np
import pytest
import scipy.ndimage
import torch

from course_lib.diffusion import Diffusion
from course_lib.metrics import auroc
from course_lib.scoring import (image_score_from_map, noise_prediction_error, reconstruction_error,
                                smooth_maps)

S = 0.3  # the normal data: every pixel i.i.d. N(0, S^2)


class GaussianOptimalEps(torch.nn.Module):
    """The exact E[eps | x_t] for data ~ N(0, S^2 I): x_t ~ N(0, (abar S^2 + 1 - abar) I), so
    E[eps | x_t] = sqrt(1 - abar) x_t / (abar S^2 + 1 - abar). The best possible denoiser, no training."""

    def __init__(self, diffusion):
        super().__init__()
        self.abar = diffusion.alphas_cumprod.double()

    def forward(self, x, t):
        a = self.abar[t].view(-1, 1, 1, 1).to(x)
        return (1 - a).sqrt() * x / (a * S ** 2 + 1 - a)


@pytest.fixture(scope="module")
def setting():
    d = Diffusion(1000, "linear")
    g = torch.Generator().manual_seed(0)
    normal = S * torch.randn(40, 1, 8, 8, generator=g)
    anomal = 3 * S * torch.randn(40, 1, 8, 8, generator=g)  # same mean, three times the spread
    x = torch.cat([normal, anomal]).clamp(-1, 1)
    labels = np.r_[np.zeros(40), np.ones(40)]
    return d, GaussianOptimalEps(d), x, labels


def test_noise_prediction_error_is_higher_for_anomalies(setting):
    d, model, x, labels = setting
    r = noise_prediction_error(d, model, x, (50, 250), n_noise=2)
    assert r.scores.shape == (80,) and r.maps.shape == (80, 1, 8, 8) and r.nfe == 4
    assert auroc(labels, r.scores) > 0.95


def test_noise_prediction_error_matches_monte_carlo_expectation(setting):
    """E||eps - c x_t||^2 per pixel = (1 - c sqrt(1-abar))^2 + c^2 abar x0^2, with c the optimal gain."""
    d, model, _, _ = setting
    x0 = torch.full((1, 1, 8, 8), 0.5)
    t = 250
    a = float(d.alphas_cumprod.double()[t - 1])
    c = (1 - a) ** 0.5 / (a * S ** 2 + 1 - a)
    expected = (1 - c * (1 - a) ** 0.5) ** 2 + c ** 2 * a * 0.25
    r = noise_prediction_error(d, model, x0.expand(1, 1, 8, 8), (t,), n_noise=400)
    assert float(r.scores[0]) == pytest.approx(expected, rel=0.05)


def test_scores_are_deterministic_and_batch_independent(setting):
    d, model, x, _ = setting
    a = noise_prediction_error(d, model, x, (100,), seed=3).scores
    b = noise_prediction_error(d, model, x, (100,), seed=3).scores
    c = noise_prediction_error(d, model, x, (100,), seed=4).scores
    part = noise_prediction_error(d, model, x[10:20], (100,), seed=3).scores
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.testing.assert_close(part, a[10:20])


def test_reconstruction_error_is_higher_for_anomalies(setting):
    d, model, x, labels = setting
    r = reconstruction_error(d, model, x, (250,), steps=5, n_noise=1, seed=0)
    assert r.nfe == 5
    assert auroc(labels, r.scores) > 0.9
    again = reconstruction_error(d, model, x, (250,), steps=5, n_noise=1, seed=0)
    assert torch.equal(r.scores, again.scores)


def test_reconstruction_refuses_t_star_out_of_range(setting):
    d, model, x, _ = setting
    for bad in (0, 1001):
        with pytest.raises(ValueError, match=r"\[1, 1000\]"):
            reconstruction_error(d, model, x[:2], (bad,), steps=2)
    with pytest.raises(ValueError, match=r"\[1, 1000\]"):
        noise_prediction_error(d, model, x[:2], (0,))


def test_smooth_maps_matches_scipy_gaussian_filter():
    maps = torch.rand(2, 1, 12, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ours = smooth_maps(maps, sigma=1.5)
    radius = round(3 * 1.5)
    ref = np.stack([scipy.ndimage.gaussian_filter(m[0], 1.5, mode="mirror", truncate=radius / 1.5)
                    for m in maps.numpy()])[:, None]
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-10)
    assert torch.equal(smooth_maps(maps, 0), maps)


def test_image_score_from_map():
    maps = torch.zeros(2, 1, 2, 2)
    maps[0, 0, 0, 0] = 4.0
    maps[1] = 1.0
    assert image_score_from_map(maps, "mean").tolist() == [1.0, 1.0]
    assert image_score_from_map(maps, "max").tolist() == [4.0, 1.0]
    with pytest.raises(ValueError, match="mean.*max"):
        image_score_from_map(maps, "median")


# ----- a real, short training run -------------------------------------------------------------
from course_lib import config, data  # noqa: E402
from course_lib.nets.unet import UNet, unet_config  # noqa: E402
from course_lib.scoring import DiffusionDetector, ScoreConfig, fit_denoiser  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread):
    """unet-tiny trained 200 steps on the normal digits '0' (16 px): a few seconds on one core."""
    prof = config.profile("smoke", train_steps=200, n_test=80)
    task = data.load_task("digits", 0, profile=prof)
    import os
    os.environ["COURSE_CHECKPOINTS"] = str(tmp_path_factory.mktemp("ckpt"))
    try:
        model, info = fit_denoiser(task.train, prof, device="cpu", progress=False)
    finally:
        del os.environ["COURSE_CHECKPOINTS"]
    return prof, task, model, info


def test_short_training_detects_anomalies_where_an_untrained_net_cannot(trained, one_thread):
    prof, task, model, _ = trained
    d = Diffusion(prof.timesteps)
    trained_auc = auroc(task.labels, noise_prediction_error(d, model, task.test, (25, 50), n_noise=2).scores)
    untrained = UNet(unet_config(prof.unet_preset, in_channels=1, image_size=prof.digits_size)).eval()
    untrained_auc = auroc(task.labels, noise_prediction_error(d, untrained, task.test, (25, 50), n_noise=2).scores)
    assert trained_auc > 0.75
    # The untrained U-Net's last conv is zero-initialised: it predicts eps_hat = 0 for every image, so every
    # image gets the same score ||eps||^2 and the AUROC is exactly chance.
    assert untrained_auc == pytest.approx(0.5)


def test_detector_fit_score_and_reuse(trained, tmp_path, monkeypatch, one_thread):
    prof, task, _, _ = trained
    monkeypatch.setenv("COURSE_CHECKPOINTS", str(tmp_path))
    prof = config.profile("smoke", train_steps=20)
    sc = ScoreConfig(score="reconstruction", t_stars=(50, 100), steps=3, n_noise=2, reduce="max")
    det = DiffusionDetector(sc, prof=prof, device="cpu", progress=False).fit(task.train)
    assert det.nfe_per_image == 3 * 2 * 2
    s1 = det.score(task.test[:10])
    assert s1.shape == (10,) and np.isfinite(s1).all()
    maps = det.anomaly_maps(task.test[:10])
    assert maps.shape == (10, 1, 16, 16)
    np.testing.assert_allclose(s1, maps.flatten(1).amax(1).numpy(), rtol=1e-6)
    assert not det.train_info_["loaded"]
    again = DiffusionDetector(sc, prof=prof, device="cpu", progress=False).fit(task.train)
    assert again.train_info_["loaded"]                        # the checkpoint from the first fit is reused
    np.testing.assert_allclose(again.score(task.test[:10]), s1)  # and scores are deterministic


def test_detector_refuses_bad_input(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"t\* = 0 must lie in \[1, 1000\]"):
        DiffusionDetector(ScoreConfig(t_stars=(0,)), prof=config.profile("smoke"))
    monkeypatch.setenv("COURSE_CHECKPOINTS", str(tmp_path))
    det = DiffusionDetector(ScoreConfig(), prof=config.profile("smoke", train_steps=2), device="cpu", progress=False)
    det.fit(torch.zeros(4, 1, 16, 16))
    with pytest.raises(ValueError, match="fitted on images of shape"):
        det.score(torch.zeros(2, 3, 16, 16))
