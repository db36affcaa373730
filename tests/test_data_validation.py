"""Validation tasks share no image with each other's splits or with the test task."""
import numpy as np
import pytest
import torch

from course_lib import config, data
from course_lib.data import textures
from course_lib.data.validation import VAL_ROWS, TRAIN_ROWS, validation_task


def test_texture_crops_stay_inside_their_band(monkeypatch):
    # a photo whose pixel value is its row: with no lighting change and no resizing, a crop's values are
    # exactly the rows it covers
    monkeypatch.setattr(textures, "CONTRAST", (1.0, 1.0))
    monkeypatch.setattr(textures, "BRIGHTNESS", 0.0)
    h = 512
    photo = (torch.arange(h, dtype=torch.float32)[:, None].expand(h, h) / h)[None]
    rng = np.random.default_rng(0)
    top = textures.texture_crops(photo, "train", 200, textures.SOURCE_CROP, rng, rows=TRAIN_ROWS)
    bottom = textures.texture_crops(photo, "train", 200, textures.SOURCE_CROP, rng, rows=VAL_ROWS)
    cut = int(TRAIN_ROWS[1] * h)                           # the bands meet at this row
    assert round(float(top.max()) * h) == cut - 1 and round(float(bottom.min()) * h) == cut
    assert float(top.min()) == 0.0 and float(bottom.max()) * h == pytest.approx(h - 1)   # both bands are used
    with pytest.raises(ValueError, match="no room"):
        textures.texture_crops(photo, "train", 1, textures.SOURCE_CROP, rng, rows=(0.5, 0.6))


def _rows(x: torch.Tensor) -> set:
    return {tuple(v) for v in x.flatten(1).numpy().round(5).tolist()}


@pytest.mark.parametrize("name, category", [("digits", "3"), ("textures", "grass")])
def test_validation_images_are_disjoint_from_its_training_images_and_from_the_test_task(name, category):
    prof = config.profile("smoke")
    val = validation_task(name, category, seed=0, profile=prof)
    test = data.load_task(name, category, seed=0, profile=prof)
    assert set(val.labels.tolist()) == {0, 1} and val.extent == test.extent
    assert not _rows(val.test) & _rows(test.test)          # no validation image is a test image
    assert not _rows(val.train) & _rows(test.test)         # nor is a validation model's training image
    assert not _rows(val.train) & _rows(val.test)
    if name == "digits":                                   # digits: all from the test task's training pool
        pool = _rows(data.offline.digit_pools(prof.digits_size, 0)[0])
        assert _rows(val.train) <= pool and _rows(val.test) <= pool


def test_validation_task_refuses_unknown_names():
    prof = config.profile("smoke")
    with pytest.raises(ValueError, match="available: textures, digits"):
        validation_task("photos", "0", seed=0, profile=prof)
    with pytest.raises(ValueError, match="valid: brick, grass, gravel"):
        validation_task("textures", "wood", seed=0, profile=prof)
