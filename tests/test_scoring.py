"""Anomaly scores: directions, determinism, map smoothing, and a real (short) training run."""
from dataclasses import replace

import numpy as np
import pytest
import scipy.ndimage
import torch

from course_lib.diffusion import Diffusion
from course_lib.metrics import auroc
from course_lib.anomaly_maps import (calibrate_maps, image_score_from_map, smooth_maps, ssim_map,
                                     standardize_maps)
from course_lib.scoring import noise_prediction_error, reconstruction_error

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


def _optimal_gain(d, t):
    a = float(d.alphas_cumprod.double()[t - 1])
    return a, (1 - a) ** 0.5 / (a * S ** 2 + 1 - a)


def test_antithetic_pair_keeps_the_error_about_the_image_exactly(setting):
    """For the optimal Gaussian denoiser r(eps) = (1 - c sqrt(1-abar)) eps - c sqrt(abar) x0: the odd part is
    all noise, the even part is -c sqrt(abar) x0, so one pair gives c² abar x0² per pixel, for any noise."""
    d, model, x, _ = setting
    t = 250                                              # SNR > 1: no coarse blur even if asked
    a, c = _optimal_gain(d, t)
    expected = (c ** 2 * a * x.double() ** 2)
    for seed in (0, 1):
        r = noise_prediction_error(d, model, x, (t,), seed=seed, antithetic=True, coarse_sigma=1.0)
        assert r.nfe == 2
        torch.testing.assert_close(r.maps.double(), expected, rtol=1e-4, atol=1e-7)
    # one plain draw: the even part plus the noise's part, larger on average, and it changes with the seed
    plain = [noise_prediction_error(d, model, x, (t,), seed=s).maps for s in (0, 1)]
    assert not torch.allclose(plain[0], plain[1]) and float(plain[0].mean()) > float(expected.mean())


def test_antithetic_pair_blurs_the_even_part_where_noise_dominates(setting):
    """At SNR < 1 the even part -c sqrt(abar) x0 is blurred (scipy's Gaussian filter) before squaring."""
    d, model, x, _ = setting
    t = 400
    a, c = _optimal_gain(d, t)
    assert a < 0.5                                       # SNR = abar / (1 - abar) < 1
    sigma, radius = 1.0, 3
    blurred = np.stack([scipy.ndimage.gaussian_filter(m[0], sigma, mode="mirror", truncate=radius / sigma)
                        for m in x.double().numpy()])[:, None]
    r = noise_prediction_error(d, model, x, (t,), n_noise=2, antithetic=True, coarse_sigma=sigma)
    assert r.nfe == 4
    np.testing.assert_allclose(r.maps.double().numpy(), c ** 2 * a * blurred ** 2, rtol=1e-4, atol=1e-7)


def test_antithetic_options_are_checked(setting):
    d, model, x, _ = setting
    with pytest.raises(ValueError, match="antithetic=True"):
        noise_prediction_error(d, model, x[:2], (400,), coarse_sigma=1.0)
    with pytest.raises(ValueError, match=">= 0"):
        noise_prediction_error(d, model, x[:2], (400,), antithetic=True, coarse_sigma=-1.0)


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
    with pytest.raises(ValueError, match=r"sigma = 12 px needs a kernel radius of 36 px.*use sigma < "):
        smooth_maps(torch.zeros(2, 1, 32, 32), 12)


def test_image_score_from_map():
    maps = torch.zeros(2, 1, 2, 2)
    maps[0, 0, 0, 0] = 4.0
    maps[1] = 1.0
    assert image_score_from_map(maps, "mean").tolist() == [1.0, 1.0]
    assert image_score_from_map(maps, "max").tolist() == [4.0, 1.0]
    assert image_score_from_map(maps, "peak").tolist() == [3.0, 0.0]   # a flat map has no peak
    # a constant shift of the whole map (a nuisance) changes mean and max, not the peak
    assert torch.equal(image_score_from_map(maps + 2.5, "peak"), image_score_from_map(maps, "peak"))
    with pytest.raises(ValueError, match="mean.*max.*peak"):
        image_score_from_map(maps, "median")


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_map_matches_scikit_image(channels):
    from skimage.metrics import structural_similarity
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, channels, 24, 24, generator=g, dtype=torch.float64) * 2 - 1
    y = (x + 0.3 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(-1, 1)
    ours = ssim_map(x, y)
    for i in range(2):
        _, ref = structural_similarity(x[i].numpy(), y[i].numpy(), data_range=2.0, gaussian_weights=True,
                                       sigma=1.5, use_sample_covariance=False, full=True, channel_axis=0)
        r = 5   # the window radius; inside it the two paddings (reflect vs mirror) do not matter
        np.testing.assert_allclose(ours[i, :, r:-r, r:-r].numpy(), ref[:, r:-r, r:-r], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ssim_map(x, x), torch.ones_like(x))
    with pytest.raises(ValueError, match="one shape"):
        ssim_map(x, y[:, :, :20])


def test_reconstruction_ssim_error_is_one_minus_ssim_of_the_reconstruction(setting):
    from course_lib.sampling import reconstruct
    d, model, x, _ = setting
    r = reconstruction_error(d, model, x[:6], (100,), steps=2, n_noise=1, seed=4, error="ssim")
    x_hat, _ = reconstruct(d, model, x[:6], 100, steps=2, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(r.maps, 1 - ssim_map(x[:6], x_hat))     # one channel: no channel mean
    with pytest.raises(ValueError, match="mse.*ssim"):
        reconstruction_error(d, model, x, (100,), steps=2, error="l1")


def test_level_maps_average_to_the_map_and_match_single_level_calls(setting):
    d, model, x, _ = setting
    for r in (noise_prediction_error(d, model, x[:6], (50, 250), n_noise=2, seed=1),
              reconstruction_error(d, model, x[:6], (50, 250), steps=2, n_noise=2, seed=1)):
        assert r.level_maps.shape == (2, 6, 1, 8, 8)
        torch.testing.assert_close(r.level_maps.mean(0), r.maps)
    # the first level uses the first noise draws of the seed, so it equals a call with that level alone
    both = noise_prediction_error(d, model, x[:6], (50, 250), n_noise=2, seed=1)
    torch.testing.assert_close(both.level_maps[0], noise_prediction_error(d, model, x[:6], (50,), n_noise=2,
                                                                          seed=1).maps)


def test_calibrate_maps_matches_numpy_and_standardizes_normal_maps():
    g = torch.Generator().manual_seed(0)
    # two levels with very different scales, and a position-dependent spread
    spread = torch.linspace(0.5, 2.0, 16).view(1, 1, 1, 4, 4)
    normal = torch.stack([1.0 + 0.1 * spread[0] * torch.randn(500, 1, 4, 4, generator=g),
                          10.0 + 5.0 * spread[0] * torch.randn(500, 1, 4, 4, generator=g)])
    cal = calibrate_maps(normal.double())
    ref = normal.double().numpy()
    np.testing.assert_allclose(cal.mean.numpy(), ref.mean(1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(cal.std.numpy(), ref.std(1, ddof=1, keepdims=True), rtol=1e-12)
    z = standardize_maps(normal.double(), cal)
    np.testing.assert_allclose(z.mean(1).numpy(), 0, atol=1e-12)
    np.testing.assert_allclose(z.std(1).numpy(), 1, rtol=1e-12)


def test_calibrate_maps_floors_the_std():
    normal = torch.ones(2, 10, 1, 3, 3)
    normal[:, :, 0, 0, 0] += torch.linspace(-1, 1, 10)  # only one pixel varies, the others are constant
    cal = calibrate_maps(normal, floor=0.1)
    std0 = float(torch.linspace(-1, 1, 10).std())
    assert float(cal.std[0, 0, 0, 0, 0]) == pytest.approx(std0)
    assert torch.allclose(cal.std[0, 0, 0, 1:, :], torch.tensor(0.1 * std0 / 9))  # 0.1 x the mean std
    assert torch.isfinite(standardize_maps(normal + 1, cal)).all()


def test_calibration_removes_a_border_that_outshines_a_defect():
    """Raw maps: normal images err most at the border, more than a defect does in the middle, so the max
    of the raw map ranks normals first. Standardized against normal maps, the defect wins."""
    g = torch.Generator().manual_seed(0)
    border = torch.ones(1, 8, 8)
    border[:, 1:-1, 1:-1] = 0
    def maps(n):
        return 0.1 + 0.02 * torch.rand(n, 1, 8, 8, generator=g) + 0.5 * border * torch.rand(n, 1, 1, 1, generator=g)
    normal_train, normal_test, anomal = maps(200), maps(50), maps(50)
    anomal[:, :, 3:5, 3:5] += 0.2                               # the defect: a small bump inside
    x, labels = torch.cat([normal_test, anomal]), np.r_[np.zeros(50), np.ones(50)]
    assert auroc(labels, image_score_from_map(x, "max")) < 0.7
    z = standardize_maps(x[None], calibrate_maps(normal_train[None]))[0]
    assert auroc(labels, image_score_from_map(z, "max")) > 0.99


def test_calibrate_maps_refuses_bad_shapes():
    with pytest.raises(ValueError, match=r"N >= 2"):
        calibrate_maps(torch.zeros(1, 1, 1, 4, 4))
    with pytest.raises(ValueError, match=r"\(L, B, 1, H, W\)|do not match"):
        standardize_maps(torch.zeros(2, 3, 1, 4, 4), calibrate_maps(torch.rand(1, 5, 1, 4, 4)))


# ----- a real, short training run -------------------------------------------------------------
from course_lib import config, data  # noqa: E402
from course_lib.nets.unet import UNet, unet_config  # noqa: E402
from course_lib.denoisers import fit_denoiser  # noqa: E402
from course_lib.diffusion_detector import DiffusionDetector  # noqa: E402
from course_lib.scoring import ScoreConfig  # noqa: E402


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
    trained_auc = auroc(task.labels, noise_prediction_error(d, model, task.images, (25, 50), n_noise=2).scores)
    untrained = UNet(unet_config(prof.unet_preset, in_channels=1, image_size=prof.digits_size)).eval()
    untrained_auc = auroc(task.labels, noise_prediction_error(d, untrained, task.images, (25, 50), n_noise=2).scores)
    assert trained_auc > 0.75
    # The untrained U-Net's last conv is zero-initialised: it predicts eps_hat = 0 for every image, so every
    # image gets the same score ||eps||^2 and the AUROC is exactly chance.
    assert untrained_auc == pytest.approx(0.5)


def test_ssim_reconstruction_error_detects_anomalies(trained, one_thread):
    prof, task, model, _ = trained
    r = reconstruction_error(Diffusion(prof.timesteps), model, task.images, (100,), steps=3, error="ssim")
    assert auroc(task.labels, r.scores) > 0.8       # measured 0.91 (the squared error: 0.99)


def test_detector_fit_score_and_reuse(trained, tmp_path, monkeypatch, one_thread):
    prof, task, _, _ = trained
    monkeypatch.setenv("COURSE_CHECKPOINTS", str(tmp_path))
    prof = config.profile("smoke", train_steps=20)
    sc = ScoreConfig(score="reconstruction", t_stars=(50, 100), steps=3, n_noise=2, reduce="max")
    det = DiffusionDetector(sc, prof=prof, device="cpu", progress=False).fit(task.train)
    assert det.nfe_per_image == 3 * 2 * 2
    s1 = det.decision_function(task.images[:10])
    assert s1.shape == (10,) and np.isfinite(s1).all()
    maps = det.anomaly_maps(task.images[:10])
    assert maps.shape == (10, 1, 16, 16)
    np.testing.assert_allclose(s1, maps.flatten(1).amax(1).numpy(), rtol=1e-6)
    assert not det.train_info_["loaded"]
    again = DiffusionDetector(sc, prof=prof, device="cpu", progress=False).fit(task.train)
    assert again.train_info_["loaded"]                        # the checkpoint from the first fit is reused
    np.testing.assert_allclose(again.decision_function(task.images[:10]), s1)  # and scores are deterministic


def test_calibrated_detector_standardizes_against_its_training_images(trained, tmp_path, monkeypatch, one_thread):
    prof, task, _, _ = trained
    monkeypatch.setenv("COURSE_CHECKPOINTS", str(tmp_path))
    prof = config.profile("smoke", train_steps=20)
    sc = ScoreConfig(score="noise", t_stars=(50, 250), n_noise=1, sigma=1.0, reduce="max", calibrate=True)
    det = DiffusionDetector(sc, prof=prof, device="cpu", progress=False, threshold_split=0).fit(task.train)
    n = min(len(task.train), det.CALIBRATION_IMAGES)            # every training image calibrates
    assert det.calibration_.mean.shape == (2, 1, 1, 16, 16)
    z = det.anomaly_maps(task.train[:n])            # the calibration images themselves: z averages to 0
    torch.testing.assert_close(z.mean(0), torch.zeros(1, 16, 16), atol=1e-4, rtol=0)
    plain = DiffusionDetector(replace(sc, calibrate=False), prof=prof, device="cpu",
                              progress=False).fit(task.train)
    assert plain.calibration_ is None
    assert not torch.allclose(plain.anomaly_maps(task.images[:5]), det.anomaly_maps(task.images[:5]))
    np.testing.assert_allclose(det.decision_function(task.images[:10]), det.decision_function(task.images[:10]))


def test_detector_refuses_bad_input(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"t_stars=\(0,\) must be a non-empty tuple of timesteps >= 1"):
        DiffusionDetector(ScoreConfig(t_stars=(0,)), prof=config.profile("smoke"))
    with pytest.raises(ValueError, match="score='reconstruction'"):
        DiffusionDetector(ScoreConfig(score="noise", error="ssim"), prof=config.profile("smoke"))
    with pytest.raises(ValueError, match="use score='noise'"):
        DiffusionDetector(ScoreConfig(score="reconstruction", antithetic=True), prof=config.profile("smoke"))
    monkeypatch.setenv("COURSE_CHECKPOINTS", str(tmp_path))
    det = DiffusionDetector(ScoreConfig(), prof=config.profile("smoke", train_steps=2), device="cpu", progress=False,
                            threshold_split=0)
    det.fit(torch.zeros(4, 1, 16, 16))
    with pytest.raises(ValueError, match="fitted on images of shape"):
        det.decision_function(torch.zeros(2, 3, 16, 16))


def test_noise_error_averages_over_channels():
    """An oracle that knows x_0 predicts the true noise except in channel 0 of 3, where it is off by 1:
    every pixel's error is (1 + 0 + 0) / 3, the mean over channels (a sum would give 1)."""
    d = Diffusion(1000)
    x0 = torch.rand(2, 3, 8, 8) * 2 - 1

    def oracle(x_t, t):
        eps = d.eps_from_x0(x_t, t, x0)
        return eps + torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    res = noise_prediction_error(d, oracle, x0, (10, 500), n_noise=2)
    torch.testing.assert_close(res.maps, torch.full((2, 1, 8, 8), 1 / 3), rtol=1e-4, atol=1e-4)
