"""Nuisances, thresholds and the PGD attack of course_lib.programs.robustness, against independent references."""
import io

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter

from course_lib import config, data, metrics
from course_lib.programs import bench, robustness
from course_lib.baselines import make_baseline
from course_lib.detector import Detector
from course_lib.diffusion_detector import DiffusionDetector
from course_lib.programs.robustness import NUISANCES, perturb
from course_lib.anomaly_maps import image_score_from_map
from course_lib.scoring import ScoreConfig, noise_prediction_error


def _images(n=6, c=1, side=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(n, c, side + 3, side + 3, generator=g), 4, stride=1)
    return smooth * 1.6 - 0.8          # in [-0.8, 0.8]: room on both sides, so nothing is clamped


@pytest.mark.parametrize("nuisance", NUISANCES)
def test_perturbations_keep_shape_and_range_are_seeded_and_grow_with_severity(nuisance):
    x = _images(c=3)
    assert torch.equal(perturb(x, nuisance, 0), x)                     # severity 0 is the identity
    change = []
    for sev in range(1, 6):
        y = perturb(x, nuisance, sev, seed=3)
        assert y.shape == x.shape and y.dtype == x.dtype
        assert float(y.min()) >= -1 and float(y.max()) <= 1
        assert torch.equal(y, perturb(x, nuisance, sev, seed=3))       # deterministic for a seed
        change.append(float((y - x).abs().mean()))
    assert all(a < b for a, b in zip(change, change[1:])), change      # stronger with every severity
    assert change[0] > 0
    extreme = perturb(torch.ones(2, 1, 16, 16) * 0.99, nuisance, 5, seed=1)
    assert float(extreme.max()) <= 1                                    # clamped at the edge of the range


def test_gaussian_noise_has_its_standard_deviation_and_depends_on_the_seed():
    x = torch.zeros(64, 1, 32, 32)
    for sev, std in enumerate(robustness.SEVERITIES["gaussian_noise"], start=1):
        d = (perturb(x, "gaussian_noise", sev, seed=0) - x) / 2        # back to the [0, 1] scale
        assert float(d.std()) == pytest.approx(std, rel=0.02)
    assert not torch.equal(perturb(x, "gaussian_noise", 2, seed=0), perturb(x, "gaussian_noise", 2, seed=1))


def test_blur_matches_scipy_and_brightness_contrast_its_closed_form():
    x = _images(n=2, c=2)
    for sev, sigma in enumerate(robustness.SEVERITIES["gaussian_blur"], start=1):
        want = gaussian_filter(x.double().numpy(), sigma=(0, 0, sigma, sigma), mode="mirror", truncate=3.0)
        assert np.allclose(perturb(x, "gaussian_blur", sev).numpy(), want, atol=1e-5)
    contrast, shift = robustness.SEVERITIES["brightness_contrast"][2]
    u = (x.double() + 1) / 2                                              # [0, 1] scale
    mean = u.mean(dim=(1, 2, 3), keepdim=True)
    want = ((u - mean) * contrast + mean + shift).clamp(0, 1) * 2 - 1
    assert torch.allclose(perturb(x, "brightness_contrast", 3).double(), want, atol=1e-6)


def test_jpeg_quantisation_agrees_with_pillow_on_grey_images():
    x = _images(n=3, c=1, side=32)
    pixels = torch.round((x + 1) * 127.5).to(torch.uint8)
    for quality in (90, 50, 10):
        ours = torch.round((robustness.jpeg_quantize(x, quality) + 1) * 127.5)
        for i in range(len(x)):
            buf = io.BytesIO()
            Image.fromarray(pixels[i, 0].numpy(), mode="L").save(buf, format="JPEG", quality=quality)
            pil = torch.tensor(np.array(Image.open(buf)), dtype=torch.float64)
            diff = (ours[i, 0].double() - pil).abs()     # libjpeg's integer DCT rounds a little differently
            assert float(diff.mean()) < 0.6 and float(diff.max()) <= 6, (quality, float(diff.mean()))
            if quality <= 50:                              # far closer to Pillow's result than to the original
                assert float(diff.mean()) < 0.3 * float((pixels[i, 0].double() - pil).abs().mean())
    near = robustness.jpeg_quantize(x, 100)                # every step of the table is 1: only rounding
    assert float((near - x).abs().max()) <= 2 * 2 / 255
    odd = _images(n=1, side=13)                                           # a side that is not a multiple of 8
    assert robustness.jpeg_quantize(odd, 50).shape == odd.shape


def test_bad_nuisances_and_settings_get_clear_errors():
    x = _images()
    with pytest.raises(ValueError, match="Unknown nuisance 'fog'"):
        perturb(x, "fog", 1)
    with pytest.raises(ValueError, match=r"severity must be an integer in \[0, 5\]"):
        perturb(x, "jpeg", 6)
    with pytest.raises(ValueError, match="must lie in"):
        perturb(x * 3, "jpeg", 1)
    with pytest.raises(ValueError, match="quality"):
        robustness.jpeg_quantize(x, 0)
    with pytest.raises(ValueError, match="at least 2 finite scores"):
        robustness.clean_threshold([1.0])
    with pytest.raises(ValueError, match="eps must be"):
        robustness.pgd_attack(lambda z: z.sum((1, 2, 3)), x, -0.1)
    with pytest.raises(ValueError, match="score_fn must return"):
        robustness.pgd_attack(lambda z: torch.zeros(len(z)), x, 0.1)


def test_threshold_and_false_alarm_rate_follow_numpy():
    s = np.random.default_rng(0).normal(size=1000)
    thr = robustness.clean_threshold(s, 95)
    assert thr == np.percentile(s, 95)
    assert robustness.false_alarm_rate(s, thr) == pytest.approx(0.05, abs=0.001)
    assert robustness.false_alarm_rate(s + 100, thr) == 1.0


def test_pgd_reaches_the_corner_of_the_ball_for_a_linear_score_and_stays_inside():
    x = _images(n=4)
    w = torch.randn(x[0].shape, generator=torch.Generator().manual_seed(1))
    eps = 4 / 255
    adv = robustness.pgd_attack(lambda z: (z * w).flatten(1).sum(1), x, eps, steps=3)
    # the score w.x is lowest in the ball at x - 2 eps sign(w) ([-1, 1] units); 2.5 eps / 3 per step gets there
    assert torch.allclose(adv, x - 2 * eps * w.sign(), atol=1e-6)
    assert torch.equal(robustness.pgd_attack(lambda z: z.sum((1, 2, 3)), x, 0.0), x)
    big = robustness.pgd_attack(lambda z: -(z ** 2).flatten(1).sum(1), x, 0.5, steps=4)
    assert float((big - x).abs().max()) <= 1.0 + 1e-6 and float(big.abs().max()) <= 1


def test_knn_score_fn_is_the_knn_baselines_score():
    task = data.load_task("digits", "3", profile=config.profile("smoke"))
    det = make_baseline("knn", threshold_split=0).fit(task.train)   # task.train: its reference images
    fn = robustness.knn_score_fn(det, task.train)
    assert np.allclose(fn(task.images).numpy(), det.decision_function(task.images), rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="knn"):
        robustness.knn_score_fn(make_baseline("iforest").fit(task.train), task.train)


def test_scores_build_a_graph_only_when_the_images_ask_for_one(tmp_path, monkeypatch, one_thread):
    from course_lib.diffusion import Diffusion
    from course_lib.nets import make_denoiser
    model, diff, x = make_denoiser("unet-tiny", in_channels=1, image_size=16), Diffusion(1000), _images(n=2)
    with torch.no_grad():                # a fresh U-Net's output layer is zero: give every weight a value
        for w in model.parameters():
            w.normal_(0, 0.1, generator=torch.Generator().manual_seed(w.numel()))
    plain = noise_prediction_error(diff, model, x, (10, 300), antithetic=True, coarse_sigma=0.75)
    assert plain.level_maps.grad_fn is None                              # the weights require grad, but no graph
    xg = x.clone().requires_grad_(True)
    r = noise_prediction_error(diff, model, xg, (10, 300), antithetic=True, coarse_sigma=0.75)
    assert torch.allclose(r.level_maps, plain.level_maps)
    (g,) = torch.autograd.grad(r.scores.sum(), xg)
    assert float(g.abs().sum()) > 0


@pytest.fixture(scope="module")
def tiny_digits_detectors(tmp_path_factory, one_thread):
    """A smoke U-Net trained briefly on one digit, as a noise and a reconstruction detector."""
    import os
    os.environ["COURSE_CHECKPOINTS"] = str(tmp_path_factory.mktemp("ckpt"))
    prof = config.profile("smoke", train_steps=60)
    task = data.load_task("digits", "0", profile=prof)
    dets = {s: DiffusionDetector(ScoreConfig.for_task(prof, s, task.extent), prof=prof, progress=False).fit(task.train)
            for s in ("noise", "reconstruction")}
    yield task, dets
    os.environ.pop("COURSE_CHECKPOINTS")


def test_differentiable_scores_are_decision_function_and_pgd_lowers_them(tiny_digits_detectors):
    task, dets = tiny_digits_detectors
    anomalies = task.images[task.labels == 1][:8]
    for det in dets.values():
        s = det.differentiable_scores(anomalies.clone().requires_grad_(True))
        assert s.requires_grad
        assert np.allclose(s.detach().numpy(), det.decision_function(anomalies), rtol=1e-4, atol=1e-5)
        adv = robustness.pgd_attack(det.differentiable_scores, anomalies, 8 / 255, steps=3)
        assert float((adv - anomalies).abs().max()) <= 2 * 8 / 255 + 1e-6
        before, after = det.decision_function(anomalies), det.decision_function(adv)
        assert after.mean() < before.mean() and (after < before).mean() >= 0.75, (before, after)
    with pytest.raises(ValueError, match="expected a float tensor of shape"):
        dets["noise"].differentiable_scores(torch.zeros(2, 3, 16, 16))


def test_attacking_a_few_images_at_a_time_attacks_the_same_scores(tiny_digits_detectors):
    """adversarial_curves attacks a few images at a time to bound memory. The noise score of an image is
    its own (its noise pattern is shared by the batch), so a smaller batch attacks the same function;
    the reconstruction score draws its noise per position in the batch, so there a smaller batch attacks
    other draws of the same score. Either way the attack lowers the scores alike."""
    task, dets = tiny_digits_detectors
    anomalies = task.images[task.labels == 1][:6]
    noise = dets["noise"]
    alone = torch.cat([noise.differentiable_scores(anomalies[i:i + 1]) for i in range(6)])
    torch.testing.assert_close(alone, noise.differentiable_scores(anomalies), rtol=1e-4, atol=1e-5)
    for det in dets.values():
        whole = robustness.pgd_attack(det.differentiable_scores, anomalies, 8 / 255, steps=2, batch_size=6)
        split = robustness.pgd_attack(det.differentiable_scores, anomalies, 8 / 255, steps=2, batch_size=4)
        before, a, b = (det.decision_function(x).mean() for x in (anomalies, whole, split))
        assert a < before and b < before and abs(a - b) < 0.5 * (before - a), (before, a, b)



def test_attacking_the_reconstruction_recomputes_activations_with_the_same_gradient(tiny_digits_detectors):
    """Backpropagating through a reconstruction's DDIM chains would keep every network call's activations;
    differentiable_scores recomputes them in the backward pass instead. The gradient is the same and far
    fewer bytes wait for the backward pass (counted with autograd's saved-tensor hooks)."""
    task, dets = tiny_digits_detectors
    det = dets["reconstruction"]
    x = task.images[task.labels == 1][:4]

    def grad_and_saved_bytes(recompute):
        saved = []

        def pack(t):
            saved.append(t.numel() * t.element_size())
            return t

        xg = x.clone().requires_grad_(True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            maps = det._combine(det._smooth(det._raw_maps(xg, recompute=recompute)))
            s = image_score_from_map(maps, det.settings.reduce)
        (g,) = torch.autograd.grad(s.sum(), xg)
        return g, sum(saved)

    g_kept, kept = grad_and_saved_bytes(False)
    g_recomputed, recomputed = grad_and_saved_bytes(True)
    torch.testing.assert_close(g_recomputed, g_kept, rtol=1e-5, atol=1e-7)
    assert recomputed < kept / 3, (recomputed, kept)
    # and it is what the attack's scores use: the same values as decision_function
    assert np.allclose(det.differentiable_scores(x.clone().requires_grad_(True)).detach().numpy(),
                       det.decision_function(x), rtol=1e-4, atol=1e-5)

class _Recorder(Detector):
    """Scores an image by its mean and remembers every image it was shown."""
    name = "recorder"

    def __init__(self, contamination: float = 0.1):
        self.contamination = contamination
        self.seen: list[torch.Tensor] = []

    def _fit(self, images):
        self.seen.append(images)

    def _decision(self, images):
        self.seen.append(images)
        return images.flatten(1).mean(1).numpy()


def test_thresholds_come_from_validation_normals_and_never_from_test_images(monkeypatch):
    made = []
    monkeypatch.setitem(bench.METHODS, "recorder", bench.Method(
        "recorder", lambda prof, seed, extent: made.append(_Recorder()) or made[-1], _Recorder))
    prof = config.profile("smoke")
    study = robustness.fit_on_validation("digits", "0", ["recorder"], prof)
    val, test = study.validation, study.task
    assert val.split == "validation" and test.split == "test"
    normals = val.images[val.labels == 0]
    assert study.thresholds["recorder"] == np.percentile(normals.flatten(1).mean(1).numpy(), 95)
    seen = torch.cat([s.flatten(1) for s in made[0].seen])
    test_rows = {tuple(r.tolist()) for r in test.images.flatten(1)}
    assert not any(tuple(r.tolist()) in test_rows for r in seen)         # no test image was used
    curves = robustness.nuisance_curves(study, nuisances=("jpeg", "gaussian_noise"), severities=(0, 5))
    assert len(curves) == 4
    clean = curves[curves.severity == 0]
    want = robustness.false_alarm_rate(made[0].decision_function(test.images[test.labels == 0]),
                                       study.thresholds["recorder"])
    assert (clean.false_alarm == want).all()
    assert clean.auroc.iloc[0] == pytest.approx(metrics.auroc(test.labels, made[0].decision_function(test.images)))


def test_adversarial_curves_drive_knn_down_and_transfer_to_the_others():
    prof = config.profile("smoke")
    study = robustness.fit_on_validation("digits", "0", ["knn", "copod"], prof)
    df = robustness.adversarial_curves(study, eps=(0, 128 / 255), steps=10, max_images=10)
    knn = df[df.method == "knn"].set_index("eps").auroc
    assert set(df[df.method == "knn"].source) == {"white-box"}
    assert set(df[df.method == "copod"].source) == {"transfer from knn"}
    assert knn[128 / 255] < knn[0] - 0.1                                 # the attack works at a large eps
    cost = robustness.cost_accuracy(study)
    assert list(cost.method) == ["knn", "copod"] and (cost.ms_per_image > 0).all() and (cost.nfe == 0).all()
    with pytest.raises(ValueError, match="not differentiable"):
        robustness.adversarial_curves(study, eps=(0,), sources=["copod"])
