"""Profiles, seeding and paths."""
import pytest
import torch

from course_lib import config


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    assert config.profile().name == "smoke"
    monkeypatch.setenv("COURSE_PROFILE", " CPU ")
    assert config.profile().name == "cpu"


def test_profile_default_follows_cuda(monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    expected = "gpu" if torch.cuda.is_available() else "cpu"
    assert config.profile().name == expected


def test_unknown_profile_lists_valid_ones(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "laptop")
    with pytest.raises(ValueError, match="smoke, cpu, gpu"):
        config.profile()


def test_profile_overrides():
    p = config.profile("cpu", train_steps=7)
    assert p.train_steps == 7 and p.name == "cpu"
    with pytest.raises(ValueError, match="Unknown profile field"):
        config.profile("cpu", train_stepz=7)


def test_profiles_grow_from_smoke_to_gpu():
    s, c, g = (config.PROFILES[k] for k in ("smoke", "cpu", "gpu"))
    assert s.train_steps < c.train_steps < g.train_steps
    assert s.n_test <= c.n_test <= g.n_test
    assert all(0 < t <= p.timesteps for p in (s, c, g) for t in p.t_stars)


def test_seed_everything_reproduces():
    config.seed_everything(3)
    a = torch.randn(4)
    config.seed_everything(3)
    assert torch.equal(a, torch.randn(4))


def test_data_root_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    assert config.data_root() == tmp_path


def test_device_choice(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    assert config.get_device().type in {"cuda", "mps", "cpu"}
    assert config.get_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="the device 'cuda' asks for cuda, but torch sees no cuda device"):
            config.get_device("cuda")
        monkeypatch.setenv("COURSE_DEVICE", "cuda")
        with pytest.raises(ValueError, match="COURSE_DEVICE 'cuda' asks for cuda.*use cpu, or leave it unset"):
            config.get_device()
    for bad in ("tpu", "gpu", "cuda:x"):
        monkeypatch.setenv("COURSE_DEVICE", bad)
        with pytest.raises(ValueError, match=f"COURSE_DEVICE '{bad}' is not one this course runs on: use cpu, cuda"):
            config.get_device()


def test_setup_prints_banner(capsys, monkeypatch):
    import course_lib
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    p = course_lib.setup(seed=1)
    out = capsys.readouterr().out
    assert p.name == "smoke" and "profile: smoke" in out and "torch" in out


def test_setup_on_colab_says_where_data_goes_and_how_to_get_a_gpu(monkeypatch, capsys, tmp_path):
    import sys
    import types
    import course_lib
    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    course_lib.setup()
    assert "Colab" not in capsys.readouterr().out                 # elsewhere: nothing extra
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(config, "get_device", lambda: __import__("torch").device("cpu"))
    course_lib.setup()
    out = capsys.readouterr().out
    assert f"download into {tmp_path}" in out and "Change runtime type" in out


@pytest.mark.parametrize("override, message", [
    (dict(train_steps=0), "train_steps=0 must be an int >= 1"),
    (dict(batch_size=2.5), "batch_size=2.5 must be an int >= 1"),
    (dict(lr=-1e-3), "lr=-0.001 must be a number > 0"),
    (dict(noise_timesteps=(10, 1001)), r"noise_timesteps=\(10, 1001\) must be a non-empty tuple of ints in \[1, 1000\]"),
    (dict(t_stars=()), r"t_stars=\(\) must be a non-empty tuple"),
    (dict(seeds=(0, -1)), r"seeds=\(0, -1\) must be a non-empty tuple of ints >= 0"),
    (dict(unet_preset="resnet"), "unet_preset='resnet' must be a U-Net preset name"),
    (dict(map_calibrate=1), "map_calibrate=1 must be True or False"),
    (dict(n_train=1, map_sigma=-1.0), r"n_train=1 must be an int >= 2; map_sigma=-1.0 must be >= 0"),
])
def test_a_profile_refuses_a_bad_setting_naming_the_field(override, message):
    with pytest.raises(ValueError, match=r"Profile 'cpu': " + message):
        config.profile("cpu", **override)


def test_the_fingerprint_covers_every_field_and_is_stable():
    cpu = config.profile("cpu")
    assert cpu.fingerprint() == "6fc52f485f"          # the committed results/benchmark.csv was computed under it
    assert config.profile("cpu", train_steps=801).fingerprint() != cpu.fingerprint()
    assert len({config.profile(n).fingerprint() for n in ("smoke", "cpu", "gpu")}) == 3
