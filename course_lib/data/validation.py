"""Validation tasks: a task built from a dataset's *training* data alone, for choosing settings.

A setting (a denoiser preset, its training steps, a score's timesteps) must be chosen without looking
at the test images whose AUROC is reported. ``load_task(name, category, split="validation")`` splits
what the test task trains on into a smaller training set and a labelled validation set, sharing
nothing with each other or with the test images (as in cross-validation, a setting chosen here is then
used by a model trained on the whole training set):

- ``textures``: the test crops come from the right 40 % of the photograph. Here the training crops come
  from the top 60 % of the left part and the validation crops from its bottom 40 % (no pixel shared),
  with defects drawn by a generator of their own.
- ``digits``: the test digits are one half of sklearn's digits. Here the other half (the training pool)
  is split again into halves: normal training digits from one, validation digits from the other.
- ``digits-c``: the same halves of the training pool; half of the validation digits stay clean, the
  other half get the corruptions, drawn with seeds the test task never uses.
- ``photos`` / ``photos-64``: the test crops come from the "black" blocks of each photo's checkerboard.
  Here every third "white" block is a validation block and the rest are training blocks.
- ``cifar10``, ``mnist``, ``mnist-c``, ``mini-imagenet``: the official train split (for Mini-ImageNet, the
  test task's training half) in two halves, stratified by class: normal training images from one, the
  validation images from the other (``validation=True`` of their builders in :mod:`.real`, :mod:`.folders`).
- ``mvtec`` (no anomalies to spare: they ship in its test split only): 60 % of the normal training images train,
  the other 40 % are validation images, half of them with a synthetic defect from the ``textures``
  generator (:func:`course_lib.data.textures.add_defect`).

Validation models train on fewer images than the benchmark's, so validation AUROC is for comparing
settings, not for reporting.
"""
from __future__ import annotations

import numpy as np
import torch

from ..config import Profile
from .corruptions import CORRUPTIONS
from .offline import (DIGIT_CLASSES, PHOTO_CLASSES, checkerboard_blocks, corrupt_in_equal_shares, digit_pools,
                      load_photo, random_crops)
from .protocols import equal_shares, sample_by_class, select_by_class, split_halves, take
from .task import AnomalyTask
from .textures import DEFECTS, TEXTURE_CLASSES, add_defect, load_texture, texture_crops

TRAIN_ROWS, VAL_ROWS = (0.0, 0.6), (0.6, 1.0)   # bands of the photograph's left part, textures
HELD_OUT = 0.4                                   # share of the normal training images held out (synthetic)


# The validation tasks of the offline datasets, one per dataset (the registry's `validation` field); each
# takes (category, *, seed, profile, size=None) and uses the test task's side unless `size` says otherwise.
def textures_validation(category: str, *, seed: int, profile: Profile, size: int | None = None) -> AnomalyTask:
    return _textures(category, seed, profile, size or profile.texture_size)


def digits_validation(category: str, *, seed: int, profile: Profile, size: int | None = None) -> AnomalyTask:
    return _digits(str(category), seed, profile, size or profile.digits_size)


def digits_c_validation(category: str, *, seed: int, profile: Profile, size: int | None = None) -> AnomalyTask:
    return _digits_c(str(category), seed, profile, size or profile.digits_size)


def photos_validation(category: str, *, seed: int, profile: Profile, size: int | None = None) -> AnomalyTask:
    return _photos(category, seed, profile, size or profile.photo_size, "photos")


def photos_64_validation(category: str, *, seed: int, profile: Profile, size: int | None = None) -> AnomalyTask:
    return _photos(category, seed, profile, size or 64, "photos-64")


def with_synthetic_defects(task: AnomalyTask, seed: int) -> AnomalyTask:
    """The validation task of a dataset with no anomalies to spare (MVTec-AD ships them only in its test
    split): a share :data:`HELD_OUT` of the normal training images is held out, and half of those get one
    synthetic scratch, hole or stain each (with its mask). The test images are not touched."""
    rng = np.random.default_rng([seed, 42])
    order = rng.permutation(len(task.train))
    n_val = int(round(HELD_OUT * len(order)))
    if n_val < 2 or len(order) - n_val < 1:
        raise ValueError(f"{task.name}: {len(order)} normal training images are too few to hold out a "
                         "validation set (at least 4 are needed).")
    train, val = task.train[torch.as_tensor(order[n_val:])], task.train[torch.as_tensor(order[:n_val])].clone()
    n_anom = n_val // 2
    masks = torch.zeros(n_val, 1, *val.shape[2:], dtype=torch.bool)
    kinds = ["normal"] * (n_val - n_anom) + equal_shares(DEFECTS, n_anom, rng)
    for i in range(n_val - n_anom, n_val):
        val[i], masks[i] = add_defect(val[i], kinds[i], rng)
    labels = torch.as_tensor([int(k != "normal") for k in kinds])
    return AnomalyTask(name=f"{task.name} (validation)", split="validation",
                       description=f"{task.name}: {HELD_OUT:.0%} of the normal training images held out, half of "
                                   "them with a synthetic defect.",
                       train=train, images=val, labels=labels, masks=masks, kinds=kinds, extent="local")


def _textures(category: str, seed: int, profile: Profile, size: int) -> AnomalyTask:
    photo = load_texture(category)
    rng = np.random.default_rng([seed, 40, TEXTURE_CLASSES.index(category)])   # not the test task's stream
    train = texture_crops(photo, "train", profile.n_train, size, rng, rows=TRAIN_ROWS)
    n = profile.n_test // 2
    val = texture_crops(photo, "train", 2 * n, size, rng, rows=VAL_ROWS)
    masks = torch.zeros(2 * n, 1, size, size, dtype=torch.bool)
    kinds = ["normal"] * n + equal_shares(DEFECTS, n, rng)
    for i in range(n, 2 * n):
        val[i], masks[i] = add_defect(val[i], kinds[i], rng)
    perm = torch.as_tensor(rng.permutation(2 * n))
    labels = torch.as_tensor(np.r_[np.zeros(n, np.int64), np.ones(n, np.int64)])[perm]
    return AnomalyTask(name=f"textures/{category} (validation)", split="validation",
                       description=f"{size}px crops of the {category} photo's training side: train from its top, "
                                   "validation from its bottom, with defects of their own.",
                       train=train, images=val[perm], labels=labels, masks=masks[perm],
                       kinds=[kinds[i] for i in perm.tolist()], extent="local")


def _digits(category: str, seed: int, profile: Profile, size: int) -> AnomalyTask:
    x_pool, y_pool, _, _ = digit_pools(size, seed)     # the test task's training pool only
    fit_idx, val_idx = split_halves(y_pool, np.random.default_rng([seed, 40]))
    rng = np.random.default_rng([seed, 41])
    tr, te, labels = select_by_class(y_pool[fit_idx], y_pool[val_idx], [DIGIT_CLASSES.index(category)],
                                     profile.n_train, profile.n_test, rng)
    return AnomalyTask(name=f"digits/{category} (validation)", split="validation",
                       description=f"sklearn digits of the training pool; digit {category} is normal.",
                       train=x_pool[torch.as_tensor(fit_idx[tr])], images=x_pool[torch.as_tensor(val_idx[te])],
                       labels=torch.as_tensor(labels))


def _digits_c(category: str, seed: int, profile: Profile, size: int) -> AnomalyTask:
    x_pool, _, _, _ = digit_pools(size, seed)
    fit_idx, val_idx = split_halves(np.zeros(len(x_pool), np.int64), np.random.default_rng([seed, 40]))
    rng = np.random.default_rng([seed, 43])
    train = x_pool[torch.as_tensor(take(rng, fit_idx, profile.n_train))]
    order = rng.permutation(val_idx)
    n = min(profile.n_test // 2, len(order) // 2)
    normal, to_corrupt = x_pool[torch.as_tensor(order[:n])], x_pool[torch.as_tensor(order[n:2 * n])]
    names = list(CORRUPTIONS) if category == "all" else [category]
    # the test task corrupts with the seeds seed * 1000 + j; these are not among them
    anomalies, kind_of = corrupt_in_equal_shares(to_corrupt, names, rng, seed_base=seed * 1000 + 500)
    test = torch.cat([normal, anomalies])
    kinds = np.array(["normal"] * n + list(kind_of), dtype=object)
    perm = rng.permutation(2 * n)
    return AnomalyTask(name=f"digits-c/{category} (validation)", split="validation",
                       description="sklearn digits of the training pool: clean digits normal, corrupted ones "
                                   f"({category}) anomalies.",
                       train=train, images=test[torch.as_tensor(perm)],
                       labels=torch.as_tensor((kinds[perm] != "normal").astype(np.int64)),
                       kinds=[str(k) for k in kinds[perm]])


def _photos(category: str, seed: int, profile: Profile, size: int, task: str) -> AnomalyTask:
    rng = np.random.default_rng([seed, 44])

    def draw(cls: int, split: str, n: int) -> torch.Tensor:
        photo = load_photo(PHOTO_CLASSES[cls])
        white = checkerboard_blocks(*photo.shape[1:])["train"]        # the test task's training blocks
        blocks = [b for i, b in enumerate(white) if (i % 3 == 2) == (split == "test")]
        return random_crops(photo, blocks, n, size, rng)

    k = PHOTO_CLASSES.index(category)
    train, test, labels, classes = sample_by_class(draw, len(PHOTO_CLASSES), [k], profile.n_train,
                                                   profile.n_test, rng)
    return AnomalyTask(name=f"{task}/{category} (validation)", split="validation",
                       description=f"{size}px crops of the photos' training blocks: every third block validates.",
                       train=train, images=test, labels=torch.as_tensor(labels),
                       kinds=["normal" if lab == 0 else PHOTO_CLASSES[int(c)] for lab, c in zip(labels, classes)])
