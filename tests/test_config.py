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
        with pytest.raises(RuntimeError, match="no CUDA"):
            config.get_device("cuda")


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
