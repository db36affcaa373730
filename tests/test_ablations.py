"""The textures ablation runner: mirrored crops, one row per variant, per-kind AUROC, clear errors."""
import pytest
import torch

from course_lib import config, data, metrics
from course_lib.programs import ablations
from course_lib.diffusion_detector import DiffusionDetector
from course_lib.scoring import ScoreConfig
from course_lib.data.textures import DEFECTS


def test_mirrored_appends_the_three_flips():
    x = torch.arange(2 * 1 * 3 * 4, dtype=torch.float32).view(2, 1, 3, 4)
    m = ablations.mirrored(x)
    assert m.shape == (8, 1, 3, 4)
    assert torch.equal(m[:2], x)                          # the originals come first (calibration uses them)
    assert torch.equal(m[2, 0, :, 0], x[0, 0, :, -1])     # left-right: the first column is the last
    assert torch.equal(m[4, 0, 0], x[0, 0, -1])           # up-down: the first row is the last
    assert torch.equal(m[6, 0], x[0, 0].flip(0).flip(1))  # both
    for i in range(1, 4):                                  # a flip moves pixels, never changes them
        assert torch.equal(m[2 * i:2 * i + 2].flatten(1).sort(1).values, x.flatten(1).sort(1).values)


def test_ablations_write_one_row_per_variant(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("COURSE_CHECKPOINTS", str(tmp_path / "ckpt"))
    rows = ablations.main(["--profile", "smoke", "--categories", "grass", "--variants", "noise score",
                           "noise, 4 noise", "--out", str(tmp_path)])
    assert [r["variant"] for r in rows] == ["noise score (benchmark)", "noise, 4 noise pairs"]
    assert rows[1]["nfe"] == 4 * rows[0]["nfe"]
    for r in rows:
        assert {f"auroc[{k}]" for k in DEFECTS} <= set(r)
        assert all(0 <= r[k] <= 1 for k in ("auroc", "pixel_auroc", *(f"auroc[{k}]" for k in DEFECTS)))
    md = (tmp_path / "ablations-textures-validation.md").read_text()   # settings are chosen on validation data
    assert "| grass | noise, 4 noise pairs |" in md and "| stain |" in md and "**validation split**" in md
    # the rows are the validation task's: the first is the benchmark's detector fitted on its training set
    prof = config.profile("smoke")
    val = data.load_task("textures", "grass", seed=0, profile=prof, split="validation")
    det = DiffusionDetector(ScoreConfig.for_task(prof, "noise", val.extent), prof=prof, seed=0,
                            progress=False, threshold_split=0).fit(val.train)
    assert rows[0]["auroc"] == pytest.approx(metrics.auroc(val.labels, det.decision_function(val.images)), abs=1e-12)
    assert not (tmp_path / "ablations-textures.md").exists()


def test_ablations_refuse_unknown_names(tmp_path):
    with pytest.raises(SystemExit):
        ablations.main(["--profile", "smoke", "--categories", "carpet", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        ablations.main(["--profile", "smoke", "--variants", "dropout", "--out", str(tmp_path)])


class _SpyDetector:
    """Stands in for DiffusionDetector: records what run_variant hands it, scores by brightness."""
    seen: list = []

    def __init__(self, sc, *, prof, seed, progress, schedule="linear", preset=None, threshold_split=0.2):
        assert threshold_split == 0                      # an ablation trains on every image
        self.sc, self.prof, self.schedule, self.preset = sc, prof, schedule, preset
        self.nfe_per_image, self.train_info_ = 1, {"seconds": 0.0, "steps": prof.train_steps}

    def fit(self, images):
        _SpyDetector.seen.append((self, images))
        return self

    def anomaly_maps(self, images):
        return images.mean(1, keepdim=True)

    def decision_function(self, images):
        return images.flatten(1).mean(1).numpy()


@pytest.mark.parametrize("name", ["noise, mirrored", "noise, 2x training", "noise, 2x image", "noise, mid",
                                  "noise, levels (10, 25, 100", "noise, levels (10, 25, 200",
                                  "noise, raw", "noise, max", "noise, 2x image side, large", "reconstruction",
                                  "noise, 2 plain", "noise, pair without", "noise, 2 levels"])
def test_each_variant_changes_what_its_name_says(name, monkeypatch):
    from course_lib import config
    monkeypatch.setattr(ablations, "DiffusionDetector", _SpyDetector)
    _SpyDetector.seen.clear()
    prof = config.profile("smoke")
    variant = next(v for v in ablations.VARIANTS if v.name.startswith(name))
    base = next(v for v in ablations.VARIANTS if v.name.startswith("noise score"))
    for v in (base, variant):
        ablations.run_variant(v, "grass", 0, prof)
    (ref, ref_images), (det, images) = _SpyDetector.seen
    assert ref.sc.score == "noise" and ref.prof.train_steps == prof.train_steps
    assert ref_images.shape[-1] == prof.texture_size
    if name == "noise, mirrored":
        assert len(images) == 4 * len(ref_images) and torch.equal(images[:len(ref_images)], ref_images)
    elif name == "noise, 2x training":
        assert det.prof.train_steps == 2 * prof.train_steps and torch.equal(images, ref_images)
    elif name == "noise, mid":
        assert ref.sc.t_stars == prof.noise_timesteps and det.sc.t_stars == (50, 100, 150, 200)
        assert det.sc.n_noise == ref.sc.n_noise and torch.equal(images, ref_images)
    elif name.startswith("noise, levels"):       # only the large levels move
        import re
        assert det.sc.t_stars == tuple(int(v) for v in re.findall(r"\d+", variant.name)) and det.sc.t_stars[:2] == (10, 25)
        assert det.sc.n_noise == ref.sc.n_noise and torch.equal(images, ref_images)
    elif name == "noise, 2 levels":
        assert det.sc.t_stars == (10, 300) and det.sc.antithetic and det.sc.n_noise == ref.sc.n_noise
    elif name == "noise, 2 plain":   # the same NFE as one antithetic pair
        assert ref.sc.antithetic and ref.sc.n_noise == 1 and ref.sc.coarse_sigma == prof.noise_coarse_sigma
        assert not det.sc.antithetic and det.sc.n_noise == 2 and det.sc.coarse_sigma == 0
    elif name == "noise, pair without":
        assert det.sc.antithetic and det.sc.coarse_sigma == 0 and det.sc.t_stars == ref.sc.t_stars
    elif name == "noise, 2x image side, large":
        assert images.shape[-1] == 2 * prof.texture_size and det.sc.t_stars == (10, 500)
    elif name == "noise, raw":
        assert ref.sc.calibrate == prof.map_calibrate and det.sc.calibrate is False
        assert det.sc.t_stars == ref.sc.t_stars
    elif name == "noise, max":   # textures are local defects: the benchmark reduces by the peak
        assert ref.sc.reduce == "peak" and det.sc.reduce == "max" and det.sc.t_stars == ref.sc.t_stars
    elif name == "noise, 2x image":
        assert images.shape[-1] == 2 * prof.texture_size and det.sc.sigma == 2 * ref.sc.sigma
        assert det.sc.coarse_sigma == 2 * ref.sc.coarse_sigma
    else:   # the benchmark's reconstruction settings, not the noise score's timesteps
        assert det.sc.score == "reconstruction" and det.sc.t_stars == prof.t_stars


def test_level_sweep_scores_each_timestep_alone(tmp_path, monkeypatch, one_thread):
    import dataclasses
    from course_lib import config, data, metrics
    from course_lib.programs import bench
    from course_lib.diffusion_detector import DiffusionDetector
    monkeypatch.setenv("COURSE_CHECKPOINTS", str(tmp_path / "ckpt"))
    rows = ablations.main(["--profile", "smoke", "--categories", "grass", "--levels", "10", "400",
                           "--out", str(tmp_path)])
    assert [(r["category"], r["t"]) for r in rows] == [("grass", 10), ("grass", 400)]
    assert all({f"auroc[{k}]" for k in DEFECTS} <= set(r) for r in rows)
    md = (tmp_path / "levels-textures-validation.md").read_text()
    assert "**grass**" in md and "| t=10 | t=400 |" in md and "| stain |" in md and "| all defects |" in md
    # the first level of the sweep is exactly the benchmark's detector with that one timestep
    prof = config.profile("smoke")
    task = data.load_task("textures", "grass", seed=0, profile=prof, split="validation")
    sc = dataclasses.replace(ScoreConfig.for_task(prof, "noise", task.extent), t_stars=(10,))
    alone = DiffusionDetector(sc, prof=prof, seed=0, progress=False, threshold_split=0).fit(task.train)
    alone = alone.decision_function(task.images)
    assert rows[0]["auroc"] == pytest.approx(metrics.auroc(task.labels, alone), abs=1e-12)
    with pytest.raises(SystemExit):
        ablations.main(["--profile", "smoke", "--levels", "0", "--out", str(tmp_path)])


def test_timesteps_scale_to_the_same_fraction_of_a_shorter_chain():
    assert ablations.scaled_timesteps((10, 25, 300, 400), 250) == (3, 6, 75, 100)
    assert ablations.scaled_timesteps((10, 25, 300, 400), 1000) == (10, 25, 300, 400)
    assert ablations.scaled_timesteps((1,), 250) == (1,)                 # never below the first step
    names = [v.name for v in ablations.DESIGN_VARIANTS]
    assert len(set(names)) == len(names) and names[0] == "noise score (benchmark)"


def test_design_variants_change_the_chain_the_schedule_and_the_network(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("COURSE_CHECKPOINTS", str(tmp_path / "ckpt"))
    prof = config.profile("smoke", train_steps=8)
    by_name = {v.name: v for v in ablations.DESIGN_VARIANTS}
    made = []
    real_init = DiffusionDetector.__init__

    def spy(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        made.append(self)
    monkeypatch.setattr(DiffusionDetector, "__init__", spy)
    for name in ("T = 250, timesteps scaled to T", "cosine schedule", "1/4 of the training steps",
                 "2x U-Net width", "DiT instead of the U-Net"):
        row = ablations.run_variant(by_name[name], "grass", 0, prof)
        assert 0 <= row["auroc"] <= 1
    t250, cosine, short, wide, dit = made
    assert wide.denoiser_preset == prof.unet_preset + "-w2" and dit.denoiser_preset == prof.dit_preset
    assert row["train_steps"] == 8
    assert t250.diffusion_.T == 250 and t250.settings.t_stars == ablations.scaled_timesteps(prof.noise_timesteps, 250)
    assert cosine.diffusion_.schedule == "cosine" and cosine.diffusion_.T == 1000
    assert short.train_info_["steps"] == 2                                # 8 steps / 4


def test_a_width_suffix_doubles_every_unet_width():
    from course_lib.nets import denoiser_config, make_denoiser
    small = denoiser_config("unet-small", in_channels=1, image_size=32)
    wide = denoiser_config("unet-small-w2", in_channels=1, image_size=32)
    assert wide.base_channels == 2 * small.base_channels and wide.channel_mult == small.channel_mult
    n = [sum(p.numel() for p in make_denoiser(p, in_channels=1, image_size=32).parameters())
         for p in ("unet-small", "unet-small-w2")]
    assert 3.4 < n[1] / n[0] < 4.0                                      # convolutions grow with width squared
    with pytest.raises(ValueError, match="width factor"):
        denoiser_config("unet-small-wx", in_channels=1, image_size=32)
