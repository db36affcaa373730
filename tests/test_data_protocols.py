"""The task registry, the protocols and the offline tasks digits / digits-c / photos.

References are independent of course_lib: sklearn's raw digits (matched pixel for pixel at 8 px),
a float64 numpy bilinear resize, and coordinate-coded images for the crop regions.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from course_lib.config import profile
from course_lib.data import (CORRUPTIONS, TASKS, AnomalyTask, load_task, offline_tasks,
                             task_categories)
from course_lib.data import offline
from course_lib.data.protocols import resize

SMOKE = profile("smoke")


def _digit_index(images: torch.Tensor) -> np.ndarray:
    """For 8x8 images in [-1, 1]: the index of the identical sklearn digit (the set has no duplicates)."""
    raw = load_digits().images.reshape(1797, 64)  # values 0..16
    keys = {tuple(r): i for i, r in enumerate(raw.astype(np.int64))}
    as_raw = np.rint((images.reshape(len(images), 64).double().numpy() + 1) / 2 * 16).astype(np.int64)
    return np.array([keys[tuple(r)] for r in as_raw])


# --- registry and errors ------------------------------------------------------------------------------
def test_registry_lists_offline_tasks_and_categories():
    assert offline_tasks() == ["digits", "digits-c", "textures", "photos", "photos-64"]
    assert task_categories("digits") == [str(d) for d in range(10)]
    assert task_categories("digits-c") == ["all", *CORRUPTIONS] and len(CORRUPTIONS) >= 10
    assert len(task_categories("photos")) >= 6
    assert len(task_categories("mvtec")) == 15 and "metal_nut" in task_categories("mvtec")
    for info in TASKS.values():
        assert info.default_category in info.categories


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="Valid tasks: digits, digits-c, textures"):
        load_task("digitz")
    with pytest.raises(ValueError, match=r"unknown category '11'.*valid: 0, 1, 2"):
        load_task("digits", "11", profile=SMOKE)
    with pytest.raises(ValueError, match="out of range"):
        load_task("digits", 10, profile=SMOKE)
    with pytest.raises(ValueError, match="valid: 'one-class', 'leave-one-class-out'"):
        load_task("digits", 3, protocol="one_class", profile=SMOKE)
    with pytest.raises(ValueError, match="own fixed train/test split"):
        load_task("textures", "brick", protocol="leave-one-class-out", profile=SMOKE)
    with pytest.raises(ValueError, match="own fixed"):
        load_task("digits-c", protocol="leave-one-class-out", profile=SMOKE)
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['img_size'\]; valid: \['image_size'\]"):
        load_task("digits", 3, profile=SMOKE, img_size=8)


def test_missing_skimage_file_is_named(monkeypatch):
    import skimage.data
    monkeypatch.setattr(skimage.data, "data_dir", "/nonexistent/skimage-data")
    with pytest.raises(FileNotFoundError, match=r"'chelsea.png'.*/nonexistent/skimage-data/chelsea.png"):
        offline.PHOTOS["chelsea"]()


# --- resize helper against a float64 reference --------------------------------------------------------
def test_resize_upsampling_matches_numpy_bilinear():
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64) * 2 - 1
    # half-pixel centres, edge clamped: source coordinate of output pixel i is (i + 0.5) / 2 - 0.5
    src = np.clip((np.arange(16) + 0.5) / 2 - 0.5, 0, 7)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, 7)
    w = src - i0
    a = x.numpy()
    rows = a[..., i0, :] * (1 - w)[:, None] + a[..., i1, :] * w[:, None]
    ref = rows[..., i0] * (1 - w) + rows[..., i1] * w
    np.testing.assert_allclose(resize(x, 16).numpy(), ref, atol=1e-12)


# --- digits: protocols ----------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["one-class", "leave-one-class-out"])
def test_digits_protocol_labels_and_no_shared_image(protocol):
    p = profile("smoke", n_train=500, n_test=120)
    task = load_task("digits", 3, protocol=protocol, profile=p, image_size=8)
    target = load_digits().target
    tr, te = _digit_index(task.train), _digit_index(task.images)
    assert len(set(tr) & set(te)) == 0                      # train and test never share an image
    assert len(set(te)) == len(te) and len(set(tr)) == len(tr)
    is_three = target[te] == 3
    if protocol == "one-class":
        assert (target[tr] == 3).all()
        np.testing.assert_array_equal(task.labels.numpy(), ~is_three)
        assert task.name == "digits/3"
    else:
        assert (target[tr] != 3).all() and len(set(target[tr])) == 9
        np.testing.assert_array_equal(task.labels.numpy(), is_three)
        assert task.name == "digits/3-out"
    # balanced test set, kinds name the true class of each anomaly
    assert int(task.labels.sum()) == len(task.labels) - int(task.labels.sum())
    expected = ["normal" if lab == 0 else str(c) for lab, c in zip(task.labels.tolist(), target[te])]
    assert task.kinds == expected


def test_digits_values_and_sizes():
    task = load_task("digits", "7", profile=SMOKE)
    assert task.image_shape == (1, SMOKE.digits_size, SMOKE.digits_size)
    assert task.train.dtype == torch.float32 and task.train.min() >= -1 and task.train.max() <= 1
    assert len(task.train) == SMOKE.n_train and len(task.images) == SMOKE.n_test
    # the background of a digit is 0 in sklearn -> -1 here
    assert (task.train[:, :, 0, 0] == -1).float().mean() > 0.9


# --- digits-c --------------------------------------------------------------------------------------------
def test_digits_c_clean_normals_and_corrupted_anomalies():
    p = profile("smoke", n_train=300, n_test=120)
    task = load_task("digits-c", "all", profile=p, image_size=8)
    ref = load_digits().images.reshape(1797, 64)
    as_raw = np.rint((task.images.reshape(len(task.images), 64).numpy() + 1) / 2 * 16)
    is_clean = (np.abs(as_raw[:, None] - ref[None]).sum(-1) == 0).any(1)
    np.testing.assert_array_equal(is_clean, task.labels.numpy() == 0)     # anomalies are all changed
    kinds = np.array(task.kinds)
    assert set(kinds[task.labels.numpy() == 1]) == set(CORRUPTIONS)
    counts = [int((kinds == c).sum()) for c in CORRUPTIONS]
    assert max(counts) - min(counts) <= 1                                  # equal shares
    assert set(_digit_index(task.train)).isdisjoint(_digit_index(task.images[task.labels == 0]))
    one = load_task("digits-c", "rotate", profile=SMOKE)
    assert set(one.kinds) == {"normal", "rotate"} and one.name == "digits-c/rotate"


# --- photos: crops from disjoint blocks ------------------------------------------------------------------
def test_photo_blocks_are_a_disjoint_checkerboard():
    blocks = offline.checkerboard_blocks(300, 451)
    cells = {(t, l) for split in blocks.values() for t, l, _ in split}
    assert len(cells) == len(blocks["train"]) + len(blocks["test"]) == 12  # 3 rows x 4 columns of 100 px
    for split, parity in (("train", 0), ("test", 1)):
        assert all(((t // s) + (l // s)) % 2 == parity for t, l, s in blocks[split])


def test_photo_crops_stay_inside_their_split():
    h, w = 300, 451
    rows, cols = np.mgrid[:h, :w]
    # channel 0 = row, 1 = column, coded into [-1, 1] (the range images live in)
    coords = torch.tensor(np.stack([rows / h, cols / w]) * 2 - 1, dtype=torch.float64)
    blocks = offline.checkerboard_blocks(h, w)
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        crops = offline.random_crops(coords, blocks[split], 50, 8, rng)   # (50, 2, 8, 8) of coordinates
        for c in (crops.double() + 1) / 2 * torch.tensor([h, w], dtype=torch.float64)[:, None, None]:
            r, q = c[0].mean().item(), c[1].mean().item()
            side = h // 3
            assert ((int(r // side) + int(q // side)) % 2 == 0) == (split == "train")
            assert c[0].max() - c[0].min() >= 0.6 * side * 0.8  # a crop spans >= 60 % of a block (less the pixel ends)
            r0, q0 = int(r // side) * side, int(q // side) * side              # ... and stays inside it
            assert c[0].min() >= r0 and c[0].max() <= r0 + side and c[1].min() >= q0 and c[1].max() <= q0 + side


@pytest.mark.parametrize("protocol", ["one-class", "leave-one-class-out"])
def test_photos_protocol_kinds(protocol):
    task = load_task("photos", "coffee", protocol=protocol, profile=SMOKE)
    anomalous_kinds = {k for k, lab in zip(task.kinds, task.labels.tolist()) if lab == 1}
    if protocol == "one-class":
        assert "coffee" not in anomalous_kinds and len(anomalous_kinds) >= 3
    else:
        assert anomalous_kinds == {"coffee"}
    assert task.image_shape == (3, SMOKE.photo_size, SMOKE.photo_size)
    assert load_task("photos-64", 0, profile=SMOKE).image_shape == (3, 64, 64)


# --- determinism of every offline task ------------------------------------------------------------------
@pytest.mark.parametrize("name", ["digits", "digits-c", "textures", "photos", "photos-64"])
def test_offline_tasks_are_deterministic_per_seed(name):
    a, b = load_task(name, profile=SMOKE, seed=1), load_task(name, profile=SMOKE, seed=1)
    c = load_task(name, profile=SMOKE, seed=2)
    assert isinstance(a, AnomalyTask)
    assert torch.equal(a.train, b.train) and torch.equal(a.images, b.images) and a.kinds == b.kinds
    assert torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)
    assert a.kinds and len(a.kinds) == len(a.images)


def test_extent_says_how_much_of_an_anomaly_is_anomalous():
    # whole-image anomalies (another digit, a corrupted digit, another photo class) ...
    assert {load_task(n, profile=SMOKE).extent for n in ("digits", "digits-c", "photos")} == {"global"}
    # ... and defects on part of a normal surface
    task = load_task("textures", profile=SMOKE)
    assert task.extent == "local"
    with pytest.raises(ValueError, match="extent must be 'global'.*or 'local'.*got 'partial'"):
        AnomalyTask(name="t", description="", train=task.train, images=task.images, labels=task.labels,
                    extent="partial")


def test_a_task_needs_both_classes_and_binary_labels():
    task = load_task("digits", "0", profile=profile("smoke"))
    kw = dict(name="t", description="", train=task.train, images=task.images)
    with pytest.raises(ValueError, match=r"labels must be 0 \(normal\) or 1 \(anomaly\); found \[0, 2\]"):
        AnomalyTask(**kw, labels=2 * task.labels)
    with pytest.raises(ValueError, match="need both normal .* it has only label 0"):
        AnomalyTask(**kw, labels=0 * task.labels)


@pytest.mark.parametrize("bad", [0, -3, 16.0, "32", True])
def test_image_size_must_be_a_positive_int(bad):
    with pytest.raises(ValueError, match="image_size must be a positive int"):
        load_task("digits", "0", profile=profile("smoke"), image_size=bad)
