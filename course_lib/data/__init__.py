"""Datasets as anomaly-detection tasks: ``load_task(name, category)`` returns an :class:`AnomalyTask`.

Offline (bundled with scikit-learn / scikit-image, built in seconds): ``digits``, ``digits-c``,
``textures``, ``photos``, ``photos-64``. Real (see data/README.md for where they go): ``cifar10``,
``mnist``, ``mnist-c``, ``mvtec``, ``mini-imagenet``.

Protocols (see :mod:`course_lib.data.protocols`): ``one-class`` (the category is normal) and
``leave-one-class-out`` (the category is the anomaly; the task name gets a ``-out`` suffix).
``digits-c``, ``mnist-c``, ``textures`` and ``mvtec`` have their own fixed split: only the default
``protocol="one-class"`` (train on normals) is accepted for them.
"""
from __future__ import annotations

from pathlib import Path

from .. import config
from ..config import Profile
from .corruptions import CORRUPTIONS, corrupt  # noqa: F401
from .folders import MVTEC_CATEGORIES  # noqa: F401
from .offline import DIGIT_CLASSES, PHOTO_CLASSES  # noqa: F401
from .own_images import load_own_task  # noqa: F401
from .protocols import PROTOCOLS  # noqa: F401
from .registry import (TASKS, Dataset, dataset, grid_categories, offline_tasks, task_categories,  # noqa: F401
                       task_profile)
from .task import AnomalyTask, as_images, check_images  # noqa: F401
from .real import CIFAR10_CLASSES, MNIST_C_CORRUPTIONS, MNIST_CLASSES  # noqa: F401
from .textures import DEFECTS, TEXTURE_CLASSES, add_defect  # noqa: F401
from .validation import with_synthetic_defects

__all__ = ["AnomalyTask", "as_images", "check_images", "load_task", "TASKS", "Dataset", "dataset",
           "task_categories", "grid_categories", "offline_tasks", "task_profile", "CORRUPTIONS", "corrupt", "DEFECTS",
           "add_defect", "PROTOCOLS", "load_own_task", "DIGIT_CLASSES", "PHOTO_CLASSES", "TEXTURE_CLASSES",
           "CIFAR10_CLASSES", "MNIST_CLASSES", "MNIST_C_CORRUPTIONS", "MVTEC_CATEGORIES"]


def _resolve_category(info: Dataset, category: str | int | None) -> str:
    if category is None:
        return info.default_category
    if info.any_category and isinstance(category, (int, str)) and not isinstance(category, bool):
        return str(category)  # the builder checks it (mini-imagenet: an index or a wnid, against its CSV)
    if isinstance(category, bool) or not isinstance(category, (int, str)):
        raise TypeError(f"{info.name}: category must be a str or an int index, got {type(category).__name__}.")
    if isinstance(category, int):
        if not 0 <= category < len(info.categories):
            raise ValueError(f"{info.name}: category index {category} out of range 0..{len(info.categories) - 1}; "
                             f"valid categories: {', '.join(info.categories)}.")
        return info.categories[category]
    if category not in info.categories:
        raise ValueError(f"{info.name}: unknown category {category!r}; valid: {', '.join(info.categories)}.")
    return category


def load_task(name: str, category: str | int | None = None, *, protocol: str = "one-class", seed: int = 0,
              profile: Profile | None = None, root: str | Path | None = None, download: bool | None = None,
              split: str = "test", **options) -> AnomalyTask:
    """Build the anomaly-detection task `name` / `category` (see :data:`TASKS`).

    protocol: "one-class" (category = the normal class) or "leave-one-class-out" (category = the anomaly).
    seed: every random choice (splits, subsets, crops, corruptions, defects) comes from it.
    profile: sizes (digits_size, photo_size, texture_size, n_train, n_test); default config.profile().
    root, download: for real datasets; root defaults to $COURSE_DATA (./data). ``download=True`` first
    fetches a missing dataset that can download itself (``Dataset.downloads_itself``; its size and licence
    are printed before it starts, the MD5 is checked; see :mod:`.download`); the default, None, means True
    on Colab and False elsewhere.
    split: "test" (the images whose AUROC is reported) or "validation" (a smaller training set and
    labelled images, both from the training data alone, for choosing settings; :mod:`.validation`).
    options: ``image_size=`` (all tasks) overrides the profile's side; mini-imagenet also takes
    ``source_split=`` (the split CSV its classes come from: "train" | "val" | "test") and ``n_classes=`` (10).
    """
    info = dataset(name)
    cat = _resolve_category(info, category)
    profile = profile or config.profile()
    unknown = set(options) - set(info.options)
    if unknown:
        raise TypeError(f"load_task({name!r}): unknown option(s) {sorted(unknown)}; "
                        f"valid: {list(info.options) or 'none'}.")
    size = options.get("image_size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ValueError(f"load_task({name!r}): image_size must be a positive int (pixels per side), "
                         f"got {size!r}.")
    if split not in ("test", "validation"):
        hint = (" (Mini-ImageNet's split CSV is chosen with source_split='train' | 'val' | 'test')"
                if name == "mini-imagenet" else "")
        raise ValueError(f"load_task({name!r}): split must be 'test' or 'validation' (which labelled images), "
                         f"got {split!r}{hint}.")
    if split == "validation":
        if protocol != "one-class":
            raise ValueError(f"load_task({name!r}): the validation split is built for the one-class protocol only.")
        if callable(info.validation):
            return info.validation(cat, seed=int(seed), profile=profile, size=size)
    kw = dict(protocol=protocol, seed=int(seed), profile=profile, **options)
    if not info.offline:
        root = Path(root).expanduser() if root is not None else config.data_root()
        if download is None:
            download = config.on_colab() and info.downloads_itself
        if download and info.downloads_itself:
            from .download import download as fetch_dataset
            fetch_dataset(name, root=root)   # announces size and licence; nothing to do when complete
            download = False
        kw.update(root=root, download=bool(download))
    if split == "validation" and info.validation == "class-split":   # its builder splits its own train data
        return info.build(cat, validation=True, **kw)
    task = info.build(cat, **kw)
    return with_synthetic_defects(task, int(seed)) if split == "validation" else task
