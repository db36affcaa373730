"""Synthetic defects and the textures task: masks mark exactly the changed pixels, defects have the
promised size, train and test crops come from disjoint parts of the photograph."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib.config import profile
from course_lib.data import DEFECTS, add_defect, load_task
from course_lib.data import textures
from course_lib.data.textures import MIN_CHANGE, SOURCE_CROP, TRAIN_FRACTION, texture_crops


@pytest.fixture(scope="module")
def patches() -> torch.Tensor:
    """12 real 64 px brick / grass / gravel patches."""
    rng = np.random.default_rng(0)
    return torch.cat([texture_crops(textures.load_texture(n), "test", 4, 64, rng) for n in textures.TEXTURES])


@pytest.mark.parametrize("kind", DEFECTS)
def test_mask_is_exactly_the_changed_pixels(patches, kind):
    rng = np.random.default_rng(1)
    for x in patches:
        y, mask = add_defect(x, kind, rng)
        assert y.shape == x.shape and mask.shape == (1, 64, 64) and mask.dtype == torch.bool
        assert y.min() >= -1 and y.max() <= 1
        diff = (y - x).abs()
        assert torch.equal(mask, diff > 1e-6)                  # changed <=> marked
        assert diff[mask].min() >= MIN_CHANGE - 1e-6            # ... by a visible amount
        assert mask.sum() >= 20                                  # and not a sub-pixel speck


def test_defect_sizes(patches):
    rng = np.random.default_rng(2)
    for x in patches:
        _, hole = add_defect(x, "hole", rng)
        rows, cols = np.nonzero(hole[0].numpy())
        extent = max(np.ptp(rows), np.ptp(cols)) + 1
        assert 0.08 * 64 <= extent <= 0.35 * 64                  # 10-25 % of the side, irregular outline
        _, scratch = add_defect(x, "scratch", rng)
        rows, cols = np.nonzero(scratch[0].numpy())
        assert np.hypot(np.ptp(rows), np.ptp(cols)) >= 0.2 * 64   # a long ...
        assert scratch.sum() <= 0.1 * 64 * 64                      # ... thin line
        _, stain = add_defect(x, "stain", rng)
        assert 0.01 * 64 * 64 <= stain.sum() <= 0.12 * 64 * 64


def test_defects_are_deterministic_and_reject_unknown(patches):
    a = add_defect(patches[0], "scratch", np.random.default_rng(5))
    b = add_defect(patches[0], "scratch", np.random.default_rng(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="valid: scratch, hole, stain"):
        add_defect(patches[0], "crack", np.random.default_rng(0))


def test_train_and_test_crops_come_from_disjoint_columns(monkeypatch):
    monkeypatch.setattr(textures, "CONTRAST", (1.0, 1.0))   # no lighting change: values stay coordinates
    monkeypatch.setattr(textures, "BRIGHTNESS", 0.0)
    w = 512
    column = torch.linspace(-1, 1, w).expand(1, w, w).clone()   # pixel value codes its column
    cut_value = float(column[0, 0, int(TRAIN_FRACTION * w)])
    rng = np.random.default_rng(0)
    train = texture_crops(column, "train", 100, 32, rng)
    test = texture_crops(column, "test", 100, 32, rng)
    assert train.max() < cut_value <= test.min()
    span = (train.amax(dim=(1, 2, 3)) - train.amin(dim=(1, 2, 3))) / 2 * (w - 1)
    assert torch.allclose(span, torch.full_like(span, SOURCE_CROP * 31 / 32), atol=3)  # a 128 px square


def test_textures_task():
    p = profile("smoke", n_test=60)
    task = load_task("textures", "gravel", profile=p)
    assert task.name == "textures/gravel" and task.image_shape == (1, p.texture_size, p.texture_size)
    assert task.extent == "local"                            # defects cover part of a normal surface
    normal = task.labels == 0
    assert int(normal.sum()) == 30 and not task.masks[normal].any()
    assert all(m.any() for m in task.masks[~normal])
    kinds = np.array(task.kinds)
    assert set(kinds[normal.numpy()]) == {"normal"} and set(kinds[~normal.numpy()]) == set(DEFECTS)
    other = load_task("textures", "brick", profile=p)
    assert not torch.equal(task.masks, other.masks)          # defects differ between categories
