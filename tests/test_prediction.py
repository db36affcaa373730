"""What the network predicts (eps, x0 or v) is carried from training to the scores and into the
checkpoint's name: the noise score reads the noise the output implies (Diffusion.split_output), whatever the output is."""
import dataclasses
import hashlib
import math

import numpy as np
import pytest
import torch

from course_lib import config, data
from course_lib.denoisers import fit_denoiser
from course_lib.diffusion import Diffusion, make_betas
from course_lib.diffusion_detector import DiffusionDetector
from course_lib.nets import denoiser_config
from course_lib.scoring import noise_prediction_error
from course_lib.train import TrainConfig

T = 1000
ABAR = np.cumprod(1 - make_betas("linear", T).numpy())          # float64, from the betas


def eps_model(x_t, t):
    """Some eps-predictor: a fixed function of x_t and t."""
    return 0.3 * x_t + 0.01 * t.view(-1, 1, 1, 1).float().sqrt()


def as_prediction(kind):
    """The same network, re-expressed as an x0- or v-predictor by the closed forms (float64)."""
    def model(x_t, t):
        a = torch.from_numpy(np.sqrt(ABAR))[t].view(-1, 1, 1, 1)
        s = torch.from_numpy(np.sqrt(1 - ABAR))[t].view(-1, 1, 1, 1)
        eps = eps_model(x_t, t).double()
        x0 = (x_t.double() - s * eps) / a                         # x_t = a x_0 + s eps
        return (x0 if kind == "x0" else a * eps - s * x0).float()  # v = a eps - s x_0 (Salimans & Ho 2022)
    return model


@pytest.mark.parametrize("kind", ["x0", "v"])
@pytest.mark.parametrize("antithetic", [False, True])
def test_the_noise_score_reads_the_noise_that_any_output_implies(kind, antithetic):
    x0 = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    timesteps = (10, 300, 900)
    ours = noise_prediction_error(Diffusion(T, prediction=kind), as_prediction(kind), x0, timesteps, n_noise=2,
                                  antithetic=antithetic)
    reference = noise_prediction_error(Diffusion(T), eps_model, x0, timesteps, n_noise=2, antithetic=antithetic)
    torch.testing.assert_close(ours.level_maps, reference.level_maps, rtol=2e-4, atol=1e-5)
    # read as if it were eps, the same output scores differently: the parameterisation matters
    wrong = noise_prediction_error(Diffusion(T), as_prediction(kind), x0, timesteps, n_noise=2, antithetic=antithetic)
    assert not torch.allclose(wrong.scores, reference.scores, rtol=1e-2)


def test_the_checkpoint_name_says_what_the_network_predicts_and_eps_names_are_unchanged(tmp_path, monkeypatch,
                                                                                       one_thread):
    monkeypatch.setenv("COURSE_CHECKPOINTS", str(tmp_path))
    prof = config.profile("smoke", train_steps=4)
    images = data.load_task("digits", "0", profile=prof).train[:16]
    _, eps = fit_denoiser(images, prof, diffusion=Diffusion(prof.timesteps), device="cpu", progress=False)
    _, v = fit_denoiser(images, prof, diffusion=Diffusion(prof.timesteps, prediction="v"), device="cpu",
                        progress=False)
    # the eps name, recomputed from the formula the committed models were named by
    net_cfg = denoiser_config(prof.unet_preset, in_channels=1, image_size=16)
    tc = dataclasses.replace(TrainConfig.from_profile(prof, seed=0), checkpoint_every=0)
    key = repr((net_cfg, tc, prof.timesteps, "linear")).encode()
    digest = hashlib.sha1(images.numpy().tobytes() + key).hexdigest()[:12]
    assert eps["path"].name == f"{prof.unet_preset}-smoke-1x16-{digest}.pt"
    assert v["path"].name.endswith("-v.pt") and v["path"] != eps["path"] and not v["loaded"]


def test_a_detector_trains_scores_saves_and_loads_with_its_prediction(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("COURSE_CHECKPOINTS", str(tmp_path))
    prof = config.profile("smoke", train_steps=10)
    task = data.load_task("digits", "0", profile=prof)
    det = DiffusionDetector("noise", prof=prof, prediction="x0", device="cpu", progress=False).fit(task.train)
    assert det.diffusion_.prediction == "x0" and det.train_info_["path"].name.endswith("-x0.pt")
    back = DiffusionDetector.load(det.save(tmp_path / "saved"), device="cpu")
    assert back.diffusion_.prediction == "x0"
    np.testing.assert_allclose(back.decision_function(task.images), det.decision_function(task.images), rtol=1e-6)
    assert math.isfinite(float(det.threshold_))
    with pytest.raises(ValueError, match=r"prediction='noise' must be one of eps, x0, v"):
        DiffusionDetector("noise", prediction="noise")
