"""The detector contract (pyod / sklearn), the denoiser factory, ScoreConfig's checks, and a regression
guard: moving the U-Net behind the factory changed none of its outputs or scores."""
import numpy as np
import pytest
import torch
from sklearn.base import clone

import course_lib
from course_lib import config, data, metrics
from course_lib.baselines import BASELINES, PixelBaseline, make_baseline
from course_lib.diffusion_detector import DiffusionDetector
from course_lib.nets import UNet, denoiser_family, make_denoiser, unet_config
from course_lib.scoring import ScoreConfig


def _gaussian_images(n: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (0.25 * torch.randn(n, 1, 4, 4, generator=g) + shift).clamp(-1, 1)


# ----- the contract, on the baselines (cheap) -------------------------------------------------------
@pytest.mark.parametrize("name", ["iforest", "ocsvm"])
def test_threshold_flags_about_the_contamination_of_held_out_normals(name):
    images = _gaussian_images(1500, 0)
    det = make_baseline(name, contamination=0.1).fit(images)          # 20 % of the images set the threshold
    assert len(det.decision_scores_) == 1200
    order = torch.randperm(1500, generator=torch.Generator().manual_seed(0))
    held = images[order[:300]]                                          # the share fit set aside
    assert det.threshold_ == pytest.approx(np.percentile(det.decision_function(held), 90))
    new_normals = det.predict(_gaussian_images(1500, 1))
    assert set(np.unique(new_normals)) <= {0, 1}
    assert 0.06 <= new_normals.mean() <= 0.14, new_normals.mean()
    assert det.predict(_gaussian_images(200, 2, shift=0.6)).mean() > 0.9    # shifted images are flagged


@pytest.mark.parametrize("name", ["iforest", "ocsvm"])
def test_the_in_sample_rule_is_pyods(name):
    det = make_baseline(name, contamination=0.1, threshold_split=0).fit(_gaussian_images(1500, 0))
    assert len(det.decision_scores_) == 1500
    assert det.threshold_ == pytest.approx(np.percentile(det.decision_scores_, 90))
    assert det.labels_.mean() == pytest.approx(0.1, abs=0.01)             # by construction on the training set


def _uniform(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_an_iforest_on_noise_flags_its_contamination_of_new_normals_only_with_a_held_out_threshold():
    held_out = make_baseline("iforest", contamination=0.1).fit(_uniform(500, 0))
    in_sample = make_baseline("iforest", contamination=0.1, threshold_split=0).fit(_uniform(500, 0))
    new = _uniform(2000, 1)                                             # normals disjoint from either threshold's
    assert abs(held_out.predict(new).mean() - 0.1) <= 0.05
    assert in_sample.predict(new).mean() > 0.15                          # the trees isolate unseen points sooner


def test_a_diffusion_detector_flags_its_contamination_of_new_normal_digits(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("COURSE_CHECKPOINTS", str(tmp_path))
    prof = config.profile("smoke", n_train=600, n_test=1000)
    task = data.load_task("digits", "0", protocol="leave-one-class-out", profile=prof)   # normal: the 9 others
    normals = task.images[task.labels == 0]
    det = DiffusionDetector("noise", extent=task.extent, prof=prof, progress=False, device="cpu").fit(task.train)
    assert det.train_info_["steps"] == prof.train_steps and len(det.decision_scores_) == 480
    assert abs(det.predict(normals).mean() - det.contamination) <= 0.05


def test_normals_passed_to_fit_set_the_threshold_and_every_image_trains():
    train, normals = _gaussian_images(300, 0), _gaussian_images(200, 1)
    det = make_baseline("knn", contamination=0.05).fit(train, X_threshold=normals)
    assert len(det.decision_scores_) == 300
    assert det.threshold_ == pytest.approx(np.percentile(det.decision_function(normals), 95))
    with pytest.raises(ValueError, match=r"X_threshold must hold at least 2 images of the training images' shape"):
        make_baseline("knn").fit(train, X_threshold=_gaussian_images(5, 0)[:, :, :2])
    with pytest.raises(ValueError, match=r"10 normal images are too few to set aside threshold_split=0.1"):
        make_baseline("knn", threshold_split=0.1).fit(train[:10])
    with pytest.raises(ValueError, match=r"threshold_split=1.0 must be in \[0, 1\)"):
        make_baseline("knn", threshold_split=1.0).fit(train)


@pytest.mark.parametrize("method", ["linear", "unify"])
def test_predict_proba_is_pyods(method):
    train, images = _gaussian_images(200, 0), _gaussian_images(60, 1, shift=0.2)
    det = make_baseline("iforest", threshold_split=0).fit(train)        # the same training set as pyod's own
    ours = det.predict_proba(images, method=method)
    theirs = det.model_.predict_proba(det.scaler_.transform(images.flatten(1).double().numpy()), method=method)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
    assert ours.shape == (60, 2) and np.allclose(ours.sum(1), 1)
    with pytest.raises(ValueError, match="'linear' or 'unify'"):
        det.predict_proba(images, method="softmax")


class _FixedScores(course_lib.Detector):
    """Scores an image by its first pixel: a detector whose scores the test chooses."""
    name = "fixed"

    def __init__(self, contamination: float = 0.1, threshold_split: float = 0.0):
        self.contamination, self.threshold_split = contamination, threshold_split

    def _fit(self, images):
        pass

    def _decision(self, images):
        return images.flatten(1)[:, 0].double().numpy()


def test_a_score_equal_to_the_threshold_is_normal():
    """pyod's rule: an anomaly is a score strictly above threshold_ (labels_ and predict alike)."""
    scores = torch.linspace(-1, 1, 11)                      # 90th percentile of 11 evenly spaced = the 10th
    det = _FixedScores(contamination=0.1).fit(scores.view(11, 1, 1, 1))
    assert det.threshold_ == pytest.approx(0.8)
    assert det.labels_.tolist() == [0] * 10 + [1]           # only the score above 0.8
    assert det.predict(torch.tensor([0.8, 0.81]).view(2, 1, 1, 1)).tolist() == [0, 1]


def test_a_baseline_keeps_pyods_own_training_scores():
    """decision_scores_ are pyod's scores of its training data: for kNN each image's distance to its 5th
    nearest *other* image (pyod leaves the point itself out), not decision_function on the same images,
    where the image is its own nearest neighbour at distance 0."""
    train = _gaussian_images(60, 0)
    det = make_baseline("knn", threshold_split=0).fit(train)
    np.testing.assert_array_equal(det.decision_scores_, det.model_.decision_scores_)
    assert (det.decision_function(train) < det.decision_scores_).all()


@pytest.mark.parametrize("name", BASELINES)
def test_clone_gives_an_unfitted_copy_with_the_same_parameters(name):
    det = make_baseline(name, seed=3, contamination=0.05, threshold_split=0).fit(_gaussian_images(50, 0))
    copy = clone(det)
    assert copy.get_params() == det.get_params() == {"name": name, "seed": 3, "contamination": 0.05,
                                                     "threshold_split": 0}
    assert not hasattr(copy, "threshold_")
    copy.set_params(contamination=0.2)
    assert copy.fit(_gaussian_images(50, 0)).labels_.mean() == pytest.approx(0.2, abs=0.03)


def test_numpy_uint8_numpy_float_and_tensor_inputs_give_the_same_scores():
    x = _gaussian_images(40, 0)
    as_uint8 = ((x + 1) * 127.5).round().to(torch.uint8)           # what a user loads from PNG files
    x_q = as_uint8.float() / 127.5 - 1                               # the same images as floats in [-1, 1]
    det = make_baseline("iforest").fit(x_q)
    expected = det.decision_function(x_q)
    np.testing.assert_allclose(det.decision_function(as_uint8.numpy()), expected, rtol=1e-12)
    np.testing.assert_allclose(det.decision_function(as_uint8), expected, rtol=1e-12)
    np.testing.assert_allclose(det.decision_function(x_q.double().numpy()), expected, rtol=1e-12)
    np.testing.assert_allclose(make_baseline("iforest").fit(as_uint8.numpy()).decision_scores_,
                               det.decision_scores_, rtol=1e-12)


def test_bad_input_gets_a_clear_error():
    x = _gaussian_images(20, 0)
    with pytest.raises(RuntimeError, match="call fit"):
        make_baseline("iforest").decision_function(x)
    with pytest.raises(ValueError, match=r"contamination=0.7 must be in \(0, 0.5\]"):
        make_baseline("iforest", contamination=0.7).fit(x)
    det = make_baseline("iforest").fit(x)
    with pytest.raises(ValueError, match="channels-last"):
        det.decision_function(np.zeros((2, 4, 4, 1), dtype=np.uint8))
    with pytest.raises(TypeError, match="uint8 in \\[0, 255\\] or floating point"):
        det.decision_function(np.zeros((2, 1, 4, 4), dtype=np.int64))
    with pytest.raises(ValueError, match=r"must lie in \[-1, 1\]"):
        det.decision_function(np.full((2, 1, 4, 4), 3.0))
    with pytest.raises(ValueError, match="fitted on images of shape"):
        det.decision_function(torch.zeros(2, 1, 8, 8))


def test_main_classes_are_importable_from_the_package():
    assert course_lib.DiffusionDetector is DiffusionDetector and course_lib.PixelBaseline is PixelBaseline
    assert course_lib.ScoreConfig is ScoreConfig and callable(course_lib.load_task)
    assert issubclass(DiffusionDetector, course_lib.Detector) and issubclass(PixelBaseline, course_lib.Detector)


# ----- ScoreConfig checks itself ---------------------------------------------------------------------
@pytest.mark.parametrize("bad, message", [
    (dict(score="nosie"), "score='nosie' must be one of reconstruction, noise"),
    (dict(error="l1"), "error='l1' must be one of mse, ssim"),
    (dict(sampler="euler"), "sampler='euler' must be one of ddim, ddpm"),
    (dict(reduce="median"), "reduce='median' must be one of mean, max, peak"),
    (dict(n_noise=0), "n_noise=0 must be an int >= 1"),
    (dict(t_stars=()), r"t_stars=\(\) must be a non-empty tuple"),
    (dict(t_stars=(0, 10)), r"t_stars=\(0, 10\) must be a non-empty tuple of timesteps >= 1"),
    (dict(batch_size=0), "batch_size=0 must be an int >= 1"),
    (dict(sigma=-1.0), "sigma=-1.0 must be >= 0"),
    (dict(steps=0), "steps=0 must be an int >= 1"),
    (dict(score="noise", coarse_sigma=1.0), "set antithetic=True too"),
    (dict(score="noise", error="ssim"), "score='reconstruction'"),
    (dict(score="reconstruction", antithetic=True), "use score='noise'"),
])
def test_score_config_refuses_bad_settings(bad, message):
    with pytest.raises(ValueError, match=message):
        ScoreConfig(**bad)


def test_score_config_for_task_follows_the_profile_and_extent():
    prof = config.profile("cpu")
    noise = ScoreConfig.for_task(prof, "noise", "local")
    assert (noise.t_stars, noise.antithetic, noise.reduce) == (prof.noise_timesteps, True, "peak")
    recon = ScoreConfig.for_task(prof, "reconstruction", "global")
    assert (recon.t_stars, recon.steps, recon.n_noise, recon.reduce) == (prof.t_stars, prof.ddim_steps,
                                                                          prof.n_noise, "mean")
    assert noise.nfe_per_image == 2 * prof.noise_pairs * len(prof.noise_timesteps)
    assert recon.nfe_per_image == prof.ddim_steps * prof.n_noise * len(prof.t_stars)
    with pytest.raises(ValueError, match="Unknown score 'recon'"):
        ScoreConfig.for_task(prof, "recon", "local")


# ----- the denoiser factory ---------------------------------------------------------------------------
def test_factory_builds_the_unet_and_refuses_unknown_presets():
    torch.manual_seed(0)
    a = make_denoiser("unet-tiny", in_channels=1, image_size=16)
    torch.manual_seed(0)
    b = UNet(unet_config("unet-tiny", in_channels=1, image_size=16))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert denoiser_family("unet-small") == "unet" and denoiser_family("dit-s4") == "dit"
    with pytest.raises(ValueError, match="Unknown denoiser preset 'resnet-50'; valid presets: unet-tiny.*dit-s4"):
        make_denoiser("resnet-50", in_channels=1, image_size=16)
    with pytest.raises(ValueError, match="Unknown U-Net preset 'unet-huge'"):
        make_denoiser("unet-huge", in_channels=1, image_size=16)


# ----- golden values of the U-Net and of its scores --------------------------------------------------------
# A change that moves them changes the committed results too (the benchmark's models and cells).
UNET_OUTPUTS = {"unet-tiny": (1, 16, 28.4407687150524, 124.26986377238063),
                "unet-small": (3, 32, 194.33479470147677, 1582.982266912229)}
# The scores are the benchmark's (bench.run_cell seeds everything with the cell's seed before it fits).
UNET_SCORES = {"noise": (1.0, [0.7070670127868652, -0.10138797014951706, 0.07346928119659424]),
               "reconstruction": (0.6775, [-0.1795661896467209, 0.8868690729141235, 0.527949333190918])}


@pytest.mark.parametrize("preset", UNET_OUTPUTS)
def test_unet_outputs_are_unchanged(preset):
    channels, side, total, absolute = UNET_OUTPUTS[preset]
    torch.manual_seed(0)
    model = make_denoiser(preset, in_channels=channels, image_size=side)
    for p in model.parameters():                    # the zero-initialised output layers would hide the net
        if p.dim() > 1:
            torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(2, channels, side, side, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x, torch.tensor([3, 700])).double()
    assert float(y.sum()) == pytest.approx(total, rel=1e-5)
    assert float(y.abs().sum()) == pytest.approx(absolute, rel=1e-5)


@pytest.mark.parametrize("score", UNET_SCORES)
def test_unet_detector_scores_are_unchanged(score, tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("COURSE_CHECKPOINTS", str(tmp_path))
    prof = config.profile("smoke")
    task = data.load_task("digits", 0, seed=0, profile=prof)
    torch.manual_seed(123)          # the model's initial weights come from the detector's seed, not from here
    det = DiffusionDetector(ScoreConfig.for_task(prof, score, task.extent), prof=prof, device="cpu",
                            progress=False, threshold_split=0).fit(task.train)   # as the benchmark's cells
    auroc, first = UNET_SCORES[score]
    s = det.decision_function(task.images)
    assert metrics.auroc(task.labels, s) == pytest.approx(auroc, abs=1e-9)
    np.testing.assert_allclose(s[:3], first, rtol=0, atol=5e-4)   # float order differs with the thread count
    assert det.name == f"ddpm-unet/{'recon' if score == 'reconstruction' else 'noise'}"
    assert det.train_info_["path"].name.startswith(f"{prof.unet_preset}-smoke-1x16-")   # the preset names the file


# ----- the DiT behind the same detector ------------------------------------------------------------------
@pytest.fixture(scope="module")
def dit_detector(tmp_path_factory, one_thread):
    """The smoke profile's DiT trained 200 steps on the normal digits '0' (16 px): about 15 s on one core."""
    prof = config.profile("smoke", train_steps=200, n_train=100, n_test=160)
    task = data.load_task("digits", 0, profile=prof)
    import os
    os.environ["COURSE_CHECKPOINTS"] = str(tmp_path_factory.mktemp("ckpt"))
    try:
        det = DiffusionDetector("noise", preset=prof.dit_preset, prof=prof, device="cpu", progress=False,
                                contamination=0.1).fit(task.train)
    finally:
        del os.environ["COURSE_CHECKPOINTS"]
    return prof, task, det


def test_a_short_dit_run_detects_what_a_random_output_layer_cannot(dit_detector, one_thread):
    from course_lib.scoring import noise_prediction_error
    prof, task, det = dit_detector
    assert det.name == "dit/noise" and det.train_info_["path"].name.startswith("dit-ti4-d2-smoke-1x16-")
    assert metrics.auroc(task.labels, det.decision_function(task.images)) > 0.9     # measured 1.000
    trained = noise_prediction_error(det.diffusion_, det.model_, task.images, (25, 50), n_noise=2).scores
    assert metrics.auroc(task.labels, trained) > 0.9
    # A fresh adaLN-Zero DiT outputs 0 and would score exactly 0.5, which proves nothing; with a random,
    # non-zero output layer it scores anywhere from 0.17 to 0.81 on this task (five seeds), never above 0.9.
    for seed in range(5):
        torch.manual_seed(seed)
        untrained = make_denoiser(prof.dit_preset, in_channels=1, image_size=prof.digits_size).eval()
        for p in untrained.final_layer.parameters():
            torch.nn.init.normal_(p, std=0.02)
        random_scores = noise_prediction_error(det.diffusion_, untrained, task.images, (25, 50), n_noise=2).scores
        assert metrics.auroc(task.labels, random_scores) < 0.9


def test_diffusion_detector_threshold_clone_and_numpy_input(dit_detector, one_thread):
    prof, task, det = dit_detector
    assert len(det.decision_scores_) == len(task.train) - round(0.2 * len(task.train))   # a fifth set aside
    held_out = task.images[task.labels == 0]                        # normal digits it never trained on
    assert 0.03 <= det.predict(held_out).mean() <= 0.25             # about the contamination, 0.1
    np.testing.assert_allclose(det.decision_function(held_out[:8].numpy()), det.decision_function(held_out[:8]))
    copy = clone(det)
    assert copy.get_params() == det.get_params() and not hasattr(copy, "model_")
    assert copy.name == det.name and copy.nfe_per_image == det.nfe_per_image
