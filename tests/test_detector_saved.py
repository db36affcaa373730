"""A fitted DiffusionDetector is a value: its settings are frozen at fit, it pickles, and it saves and loads
in a safe format (JSON + plain tensors) that scores identically in a fresh process."""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from course_lib import config, data
from course_lib.diffusion_detector import DiffusionDetector
from course_lib.scoring import ScoreConfig


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, one_thread):
    """A noise detector fitted, under COURSE_PROFILE=smoke, on a few textures; and images to score."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COURSE_CHECKPOINTS", str(tmp_path_factory.mktemp("ckpt")))
        mp.setenv("COURSE_PROFILE", "smoke")
        task = data.load_task("textures", "grass", profile=config.profile("smoke"))
        det = DiffusionDetector("noise", extent=task.extent, progress=False, device="cpu").fit(task.train[:24])
    return det, task.images[:6]


def test_settings_are_frozen_at_fit_and_do_not_follow_the_environment(fitted, monkeypatch):
    det, images = fitted
    before = det.decision_function(images)
    assert det.profile_.name == "smoke" and det.settings_.t_stars == config.profile("smoke").noise_timesteps
    monkeypatch.setenv("COURSE_PROFILE", "cpu")          # the cpu profile's timesteps differ from smoke's
    assert config.profile("cpu").noise_timesteps != det.settings_.t_stars
    assert det.settings is det.settings_ and det.profile is det.profile_
    np.testing.assert_array_equal(det.decision_function(images), before)
    assert det.preset_ == config.profile("smoke").unet_preset and det.name == "ddpm-unet/noise"


def test_an_unfitted_detector_still_reads_the_active_profile(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "cpu")
    det = DiffusionDetector("noise")
    assert det.settings.t_stars == config.profile("cpu").noise_timesteps
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    assert det.settings.t_stars == config.profile("smoke").noise_timesteps


def test_a_fitted_detector_pickles_and_scores_the_same(fitted):
    det, images = fitted
    back = pickle.loads(pickle.dumps(det))
    np.testing.assert_array_equal(back.decision_function(images), det.decision_function(images))
    assert back.threshold_ == det.threshold_ and back.settings_ == det.settings_


def test_save_and_load_in_a_fresh_process_scores_identically(fitted, tmp_path):
    det, images = fitted
    det.save(tmp_path / "saved")
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == ["detector.json", "tensors.pt"]
    settings = json.loads((tmp_path / "saved" / "detector.json").read_text())
    assert settings["score_config"]["t_stars"] == list(det.settings_.t_stars) and settings["profile"]["name"] == "smoke"
    torch.save(images, tmp_path / "images.pt")
    code = ("import sys, numpy as np, torch\n"
            "from course_lib import DiffusionDetector\n"
            "det = DiffusionDetector.load(sys.argv[1], device='cpu')\n"
            "x = torch.load(sys.argv[2], weights_only=True)\n"
            "np.save(sys.argv[3], det.decision_function(x)); print(det.threshold_, det.name)\n")
    env = {**os.environ, "COURSE_PROFILE": "cpu", "OMP_NUM_THREADS": "1"}   # another profile in the environment
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "saved"), str(tmp_path / "images.pt"),
                          str(tmp_path / "scores.npy")], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    np.testing.assert_allclose(np.load(tmp_path / "scores.npy"), det.decision_function(images), rtol=1e-6)
    threshold, name = out.stdout.split()
    assert float(threshold) == det.threshold_ and name == det.name
    loaded = DiffusionDetector.load(tmp_path / "saved", device="cpu")
    np.testing.assert_array_equal(loaded.predict(images), det.predict(images))
    np.testing.assert_array_equal(loaded.decision_scores_, det.decision_scores_)
    torch.testing.assert_close(loaded.anomaly_maps(images), det.anomaly_maps(images))


def test_load_refuses_what_is_not_a_saved_detector_in_one_line(fitted, tmp_path):
    det, _ = fitted
    with pytest.raises(FileNotFoundError, match=r"not a saved detector: detector.json, tensors.pt missing"):
        DiffusionDetector.load(tmp_path)
    folder = det.save(tmp_path / "saved")
    (folder / "detector.json").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match=r"format 'something else', this course_lib reads"):
        DiffusionDetector.load(folder)
    det.save(folder)
    (folder / "detector.json").write_text("{not json")
    with pytest.raises(ValueError, match="damaged"):
        DiffusionDetector.load(folder)


def test_load_runs_no_code_from_the_tensors_file(fitted, tmp_path):
    det, _ = fitted
    folder = det.save(tmp_path / "saved")

    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))
    with open(folder / "tensors.pt", "wb") as f:
        pickle.dump({"model": Boom()}, f)
    with pytest.raises(ValueError, match=r"tensors.pt is damaged or not plain tensors"):
        DiffusionDetector.load(folder)
    assert not (tmp_path / "ran").exists()


def test_save_needs_a_fitted_detector_and_a_folder(fitted, tmp_path):
    with pytest.raises(RuntimeError, match="call fit"):
        DiffusionDetector("noise").save(tmp_path / "x")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file; give a folder"):
        fitted[0].save(tmp_path / "file")


def test_a_scoreconfig_detector_saves_its_own_settings(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("COURSE_CHECKPOINTS", str(tmp_path / "ckpt"))
    prof = config.profile("smoke", train_steps=4)
    images = data.load_task("digits", "0", profile=prof).images[:12]
    sc = ScoreConfig(score="noise", t_stars=(5, 200), n_noise=1, sigma=0.0, batch_size=4)
    det = DiffusionDetector(sc, prof=prof, progress=False, device="cpu").fit(images)
    back = DiffusionDetector.load(det.save(tmp_path / "custom"), device="cpu")
    assert back.settings_ == sc and back.calibration_ is None and back.profile_ == prof
    np.testing.assert_allclose(back.decision_function(images), det.decision_function(images), rtol=1e-6)


def test_decision_scores_cover_the_training_images_up_to_the_calibration_cap(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("COURSE_CHECKPOINTS", str(tmp_path))
    prof = config.profile("smoke", train_steps=4)
    images = data.load_task("digits", "0", profile=prof).train[:30]
    every = DiffusionDetector("noise", prof=prof, device="cpu", progress=False, threshold_split=0).fit(images)
    assert len(every.decision_scores_) == 30                         # all of them, under the cap (512)
    monkeypatch.setattr(DiffusionDetector, "CALIBRATION_IMAGES", 8)  # the documented cap, made small
    capped = DiffusionDetector("noise", prof=prof, device="cpu", progress=False, threshold_split=0).fit(images)
    assert len(capped.decision_scores_) == 8
    np.testing.assert_allclose(capped.decision_scores_, capped.decision_function(images[:8]), rtol=1e-6)


def test_a_saved_detector_with_a_missing_or_foreign_field_is_refused_in_one_line(fitted, tmp_path):
    det, _ = fitted
    folder = det.save(tmp_path / "saved")
    settings = json.loads((folder / "detector.json").read_text())
    del settings["params"]["prediction"]
    (folder / "detector.json").write_text(json.dumps(settings))
    with pytest.raises(ValueError, match=r"not a detector this course_lib can load \(field 'prediction'\).*again"):
        DiffusionDetector.load(folder)
    det.save(folder)
    settings = json.loads((folder / "detector.json").read_text())
    settings["params"]["preset"] = "unet-small"                      # weights of another network
    (folder / "detector.json").write_text(json.dumps(settings))
    with pytest.raises(ValueError, match="not a detector this course_lib can load"):
        DiffusionDetector.load(folder)
