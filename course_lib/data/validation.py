"""Validation tasks: a task built from a dataset's *training* data alone, for choosing settings.

A setting (a denoiser preset, its training steps, a score's timesteps) must be chosen without looking
at the test images whose AUROC is reported. ``validation_task(name, category)`` splits what the test
task trains on into a smaller training set and a labelled validation set, sharing nothing with each
other or with the test images:

- ``textures``: the test crops come from the right 40 % of the photograph. Here the training crops come
  from the top 60 % of the left part and the validation crops from its bottom 40 % (no pixel shared),
  with defects drawn by a generator of their own.
- ``digits``: the test digits are one half of sklearn's digits. Here the other half (the training pool)
  is split again into halves: normal training digits from one, validation digits from the other.

Validation models train on fewer images than the benchmark's, so validation AUROC is for comparing
settings, not for reporting.
"""
from __future__ import annotations

import numpy as np
import torch

from ..config import Profile
from .offline import DIGIT_CLASSES, digit_pools
from .protocols import equal_shares, select_by_class, split_halves
from .task import AnomalyTask
from .textures import DEFECTS, TEXTURE_CLASSES, add_defect, load_texture, texture_crops

VALIDATION_TASKS: tuple[str, ...] = ("textures", "digits")
TRAIN_ROWS, VAL_ROWS = (0.0, 0.6), (0.6, 1.0)   # bands of the photograph's left part, textures


def validation_task(name: str, category: str, *, seed: int, profile: Profile) -> AnomalyTask:
    """A task whose train and test images both come from the training side of `name`'s data."""
    if name == "textures":
        return _textures(category, seed, profile)
    if name == "digits":
        return _digits(str(category), seed, profile)
    raise ValueError(f"validation_task: no validation split for {name!r} yet; available: "
                     f"{', '.join(VALIDATION_TASKS)}.")


def _textures(category: str, seed: int, profile: Profile) -> AnomalyTask:
    if category not in TEXTURE_CLASSES:
        raise ValueError(f"Unknown textures category {category!r}; valid: {', '.join(TEXTURE_CLASSES)}.")
    size, photo = profile.texture_size, load_texture(category)
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
    return AnomalyTask(name=f"textures/{category} (validation)",
                       description=f"{size}px crops of the {category} photo's training side: train from its top, "
                                   "validation from its bottom, with defects of their own.",
                       train=train, test=val[perm], labels=labels, masks=masks[perm],
                       kinds=[kinds[i] for i in perm.tolist()], extent="local")


def _digits(category: str, seed: int, profile: Profile) -> AnomalyTask:
    if category not in DIGIT_CLASSES:
        raise ValueError(f"Unknown digits category {category!r}; valid: {', '.join(DIGIT_CLASSES)}.")
    x_pool, y_pool, _, _ = digit_pools(profile.digits_size, seed)     # the test task's training pool only
    fit_idx, val_idx = split_halves(y_pool, np.random.default_rng([seed, 40]))
    rng = np.random.default_rng([seed, 41])
    tr, te, labels = select_by_class(y_pool[fit_idx], y_pool[val_idx], [DIGIT_CLASSES.index(category)],
                                     profile.n_train, profile.n_test, rng)
    return AnomalyTask(name=f"digits/{category} (validation)",
                       description=f"sklearn digits of the training pool; digit {category} is normal.",
                       train=x_pool[torch.as_tensor(fit_idx[tr])], test=x_pool[torch.as_tensor(val_idx[te])],
                       labels=torch.as_tensor(labels))
