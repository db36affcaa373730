"""Validation tasks share no image with each other's splits or with the test task."""
import numpy as np
import pytest
import torch

from course_lib import config, data
from course_lib.data import textures
from course_lib.data import validation
from course_lib.data.validation import VAL_ROWS, TRAIN_ROWS


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


@pytest.mark.parametrize("name, category", [("digits", "3"), ("textures", "grass"), ("digits-c", "all"),
                                            ("digits-c", "fog"), ("photos", "coffee"), ("photos-64", "rocket")])
def test_validation_images_are_disjoint_from_its_training_images_and_from_the_test_task(name, category):
    prof = config.profile("smoke")
    val = data.load_task(name, category, seed=0, profile=prof, split="validation")
    test = data.load_task(name, category, seed=0, profile=prof)
    assert val.split == "validation" and test.split == "test" and "validation" in repr(val)
    assert set(val.labels.tolist()) == {0, 1} and val.extent == test.extent and val.image_shape == test.image_shape
    assert not _rows(val.images) & _rows(test.images)      # no validation image is a test image
    assert not _rows(val.train) & _rows(test.images)       # nor is a validation model's training image
    assert not _rows(val.train) & _rows(val.images)
    assert {k for k, y in zip(val.kinds, val.labels.tolist()) if y == 0} <= {"normal"} or not val.kinds
    if name in ("digits", "digits-c"):                     # digits: all from the test task's training pool
        pool = _rows(data.offline.digit_pools(prof.digits_size, 0)[0])
        clean = val.images[val.labels == 0]
        assert _rows(val.train) <= pool and _rows(clean) <= pool
    if name == "digits-c":                                 # the corruptions are real and of the asked kind
        assert not _rows(val.images[val.labels == 1]) & _rows(data.offline.digit_pools(prof.digits_size, 0)[0])
        assert set(val.kinds) - {"normal"} == (set(data.CORRUPTIONS) if category == "all" else {category})


def test_photo_validation_crops_come_from_the_training_blocks_only(monkeypatch):
    """A photo whose channels are its row and column: every crop says which block it came from."""
    h, w = 300, 451                                        # 3 x 4 blocks of 100 px
    rows, cols = np.mgrid[:h, :w]
    coords = torch.tensor(np.stack([rows / h, cols / w, 0 * rows]) * 2 - 1, dtype=torch.float32)
    monkeypatch.setattr(validation, "load_photo", lambda name: coords)
    val = validation._photos("coffee", 0, config.profile("smoke"), 16, "photos")

    def blocks(x):
        r = ((x[:, 0].mean(dim=(1, 2)) + 1) / 2 * h // 100).long()
        q = ((x[:, 1].mean(dim=(1, 2)) + 1) / 2 * w // 100).long()
        return set(zip(r.tolist(), q.tolist()))
    white = [(t // 100, left // 100) for t, left, _ in data.offline.checkerboard_blocks(h, w)["train"]]
    held_out = set(white[2::3])
    assert blocks(val.images) == held_out                  # validation: every third training block, all used
    assert blocks(val.train) == set(white) - held_out      # training: the other training blocks
    assert not (blocks(val.images) | blocks(val.train)) & set((t // 100, left // 100) for t, left, _ in
                                                           data.offline.checkerboard_blocks(h, w)["test"])


def test_mvtec_validation_holds_out_normals_with_synthetic_defects(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    base = tmp_path / "mvtec_anomaly_detection" / "bottle"
    for split, kind, n in (("train", "good", 10), ("test", "good", 2), ("test", "crack", 2)):
        (base / split / kind).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(60, 200, (32, 32, 3), dtype=np.uint8)).save(base / split / kind / f"{i:03d}.png")
    (base / "ground_truth" / "crack").mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.full((32, 32), 255, np.uint8)).save(base / "ground_truth" / "crack" / f"{i:03d}_mask.png")
    prof = config.profile("smoke")
    test = data.load_task("mvtec", "bottle", profile=prof, root=tmp_path)
    val = data.load_task("mvtec", "bottle", profile=prof, root=tmp_path, split="validation")
    assert (len(val.train), len(val.images)) == (6, 4) and val.labels.tolist().count(1) == 2
    assert _rows(val.train) | _rows(val.images[val.labels == 0]) <= _rows(test.train) # held-out normals ...
    assert not _rows(val.train) & _rows(val.images) and not _rows(val.images) & _rows(test.images)
    anomalous = val.labels == 1
    assert val.masks[anomalous].flatten(1).any(1).all() and not val.masks[~anomalous].any()
    assert set(val.kinds) - {"normal"} <= set(data.DEFECTS)


def test_validation_split_refuses_what_it_cannot_build():
    prof = config.profile("smoke")
    with pytest.raises(ValueError, match="one-class protocol only"):
        data.load_task("digits", split="validation", protocol="leave-one-class-out", profile=prof)
    with pytest.raises(ValueError, match="valid: brick, grass, gravel"):
        data.load_task("textures", "wood", split="validation", profile=prof)
    with pytest.raises(ValueError, match=r"split must be 'test' or 'validation' \(which labelled images\), got 'val'"):
        data.load_task("textures", split="val", profile=prof)
