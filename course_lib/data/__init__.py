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

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .. import config
from ..config import Profile
from .corruptions import CORRUPTIONS, corrupt  # noqa: F401
from .folders import MVTEC_CATEGORIES, build_mini_imagenet, build_mvtec
from .own_images import load_own_task  # noqa: F401
from .offline import DIGIT_CLASSES, PHOTO_CLASSES, build_digits, build_digits_c, build_photos
from .protocols import PROTOCOLS  # noqa: F401
from .real import CIFAR10_CLASSES, MNIST_C_CORRUPTIONS, MNIST_CLASSES, build_cifar10, build_mnist, build_mnist_c
from .task import AnomalyTask, as_images, check_images
from .textures import DEFECTS, TEXTURE_CLASSES, add_defect, build_textures  # noqa: F401
from .validation import VALIDATION_TASKS, validation_task, with_synthetic_defects

__all__ = ["AnomalyTask", "as_images", "check_images", "load_task", "TASKS", "TaskInfo", "task_categories",
           "offline_tasks", "CORRUPTIONS", "corrupt", "DEFECTS", "add_defect", "PROTOCOLS", "load_own_task"]


@dataclass(frozen=True)
class TaskInfo:
    """What :func:`load_task` can build under one name."""

    name: str                      # the dataset name passed to load_task
    offline: bool                  # True: needs no download (bundled with sklearn / scikit-image)
    categories: tuple[str, ...]    # valid `category` values (an int indexes into this tuple)
    default_category: str          # used when category is None
    description: str               # one sentence for a learner


TASKS: dict[str, TaskInfo] = {t.name: t for t in [
    TaskInfo("digits", True, DIGIT_CLASSES, "0",
             "sklearn 8x8 handwritten digits, resized; one-class over the 10 digits."),
    TaskInfo("digits-c", True, ("all",) + CORRUPTIONS, "all",
             "sklearn digits: clean = normal, MNIST-C corruptions (implemented here) = anomalies."),
    TaskInfo("textures", True, TEXTURE_CLASSES, "brick",
             "scikit-image texture photos with synthetic scratches, holes and stains, with pixel masks."),
    TaskInfo("photos", True, PHOTO_CLASSES, PHOTO_CLASSES[0],
             "crops of scikit-image colour photos at photo_size (CIFAR-like); class = source photo."),
    TaskInfo("photos-64", True, PHOTO_CLASSES, PHOTO_CLASSES[0],
             "crops of scikit-image colour photos at 64 px (Mini-ImageNet-like); class = source photo."),
    TaskInfo("cifar10", False, CIFAR10_CLASSES, CIFAR10_CLASSES[0],
             "CIFAR-10 (torchvision); one-class over the 10 classes."),
    TaskInfo("mnist", False, MNIST_CLASSES, "0",
             "MNIST (torchvision), resized to digits_size; one-class over the 10 digits."),
    TaskInfo("mnist-c", False, ("all",) + MNIST_C_CORRUPTIONS, "all",
             "MNIST-C (Mu & Gilmer 2019): clean digits normal, each corruption an anomaly type."),
    TaskInfo("mvtec", False, MVTEC_CATEGORIES, "bottle",
             "MVTec-AD: industrial images with real defects and pixel masks, official split."),
    TaskInfo("mini-imagenet", False, tuple(str(i) for i in range(10)), "0",
             "Mini-ImageNet: the first 10 classes of a split (index or wnid), one-class, >= 64 px."),
]}

_BUILDERS: dict[str, Callable[..., AnomalyTask]] = {
    "digits": build_digits,
    "digits-c": build_digits_c,
    "textures": build_textures,
    "photos": lambda category, *, profile, **kw: build_photos(
        category, profile=profile, size=profile.photo_size, task="photos", **kw),
    "photos-64": lambda category, *, profile, **kw: build_photos(
        category, profile=profile, size=64, task="photos-64", **kw),
    "cifar10": build_cifar10,
    "mnist": build_mnist,
    "mnist-c": build_mnist_c,
    "mvtec": build_mvtec,
    "mini-imagenet": build_mini_imagenet,
}
_SIGNATURE_OF = {"photos": build_photos, "photos-64": build_photos}


def offline_tasks() -> list[str]:
    """Names of the datasets that need no download."""
    return [n for n, t in TASKS.items() if t.offline]


def task_categories(name: str) -> list[str]:
    """Valid categories of dataset `name` (for mini-imagenet: class indices into the chosen subset)."""
    return list(_info(name).categories)


def _info(name: str) -> TaskInfo:
    if name not in TASKS:
        raise ValueError(f"Unknown task {name!r}. Valid tasks: {', '.join(TASKS)} "
                         f"(offline: {', '.join(offline_tasks())}).")
    return TASKS[name]


def _resolve_category(info: TaskInfo, category: str | int | None) -> str:
    if category is None:
        return info.default_category
    if info.name == "mini-imagenet" and isinstance(category, (int, str)) and not isinstance(category, bool):
        return str(category)  # an index or a wnid, checked against the CSV on load
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


# the real datasets that download themselves (python -m course_lib.data.download NAME): the default on Colab
DOWNLOADABLE: tuple[str, ...] = ("cifar10", "mnist", "mnist-c")


def load_task(name: str, category: str | int | None = None, *, protocol: str = "one-class", seed: int = 0,
              profile: Profile | None = None, root: str | Path | None = None, download: bool | None = None,
              split: str = "test", **options) -> AnomalyTask:
    """Build the anomaly-detection task `name` / `category` (see :data:`TASKS`).

    protocol: "one-class" (category = the normal class) or "leave-one-class-out" (category = the anomaly).
    seed: every random choice (splits, subsets, crops, corruptions, defects) comes from it.
    profile: sizes (digits_size, photo_size, texture_size, n_train, n_test); default config.profile().
    root, download: for real datasets; root defaults to $COURSE_DATA (./data). ``download=True`` fetches
    a missing :data:`DOWNLOADABLE` dataset first (its size and licence are printed before it starts; the
    MD5 is checked; see :mod:`.download`); the default, None, means True on Colab and False elsewhere.
    split: "test" (the images whose AUROC is reported) or "validation" (a smaller training set and
    labelled images, both from the training data alone, for choosing settings; :mod:`.validation`).
    options: ``image_size=`` (all tasks) overrides the profile's side; mini-imagenet also takes
    ``source_split=`` (the split CSV its classes come from: "train" | "val" | "test") and ``n_classes=`` (10).
    """
    info = _info(name)
    cat = _resolve_category(info, category)
    profile = profile or config.profile()
    builder = _BUILDERS[name]
    accepted = set(inspect.signature(_SIGNATURE_OF.get(name, builder)).parameters)
    fixed = {"category", "protocol", "seed", "profile", "root", "download", "size", "task", "validation"}
    unknown = set(options) - (accepted - fixed)
    if unknown:
        raise TypeError(f"load_task({name!r}): unknown option(s) {sorted(unknown)}; "
                        f"valid: {sorted(accepted - fixed) or 'none'}.")
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
        if name in VALIDATION_TASKS:
            return validation_task(name, cat, seed=int(seed), profile=profile, size=size)
    kw = dict(protocol=protocol, seed=int(seed), profile=profile, **options)
    if not info.offline:
        root = Path(root).expanduser() if root is not None else config.data_root()
        if download is None:
            download = config.on_colab() and name in DOWNLOADABLE
        if download and name in DOWNLOADABLE:
            from .download import download as fetch_dataset
            fetch_dataset(name, root=root)   # announces size and licence; nothing to do when complete
            download = False
        kw.update(root=root, download=bool(download))
    if split == "validation" and name != "mvtec":   # the class datasets split their own train data
        return builder(cat, validation=True, **kw)
    task = builder(cat, **kw)
    return with_synthetic_defects(task, int(seed)) if split == "validation" else task
