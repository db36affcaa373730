"""Offline datasets, bundled with scikit-learn and scikit-image: ``digits``, ``digits-c``, ``photos``.

- ``digits``: the 1,797 8x8 handwritten digits of scikit-learn (the UCI optical-recognition set,
  Alpaydin & Kaynak 1998), resized to ``digits_size``. Split once per seed into two disjoint halves,
  stratified by class: the train pool and the test pool, so no image is both trained on and scored.
- ``digits-c``: clean digits are normal, digits under an MNIST-C corruption (Mu & Gilmer 2019) are
  anomalies; the train set holds clean digits of every class.
- ``photos`` / ``photos-64``: crops of eight colour photographs; the class is the source photo.
  Each photo is cut into a checkerboard of square blocks: crops for training come from the "white"
  blocks, crops for testing from the "black" ones, so no pixel is shared, while both halves cover
  the whole scene. A crop is a random square (60-100 % of a block) resized to the target size.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..config import Profile
from .corruptions import CORRUPTIONS, corrupt
from .protocols import (check_protocol, equal_shares, kinds_from_classes, normal_classes, resize, sample_by_class,
                        select_by_class, split_halves, take, to_unit_range)
from .task import AnomalyTask

DIGIT_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))


# --- digits -----------------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _digits(size: int) -> tuple[torch.Tensor, np.ndarray]:
    """All sklearn digits as (1797, 1, size, size) in [-1, 1] and their labels (values 0..16 -> [-1, 1])."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = to_unit_range(d.images[:, None], 16.0)  # (1797, 1, 8, 8)
    return resize(x, size), d.target.astype(np.int64)


def digit_pools(size: int, seed: int) -> tuple[torch.Tensor, np.ndarray, torch.Tensor, np.ndarray]:
    """(train images, train labels, test images, test labels): disjoint halves, stratified by class."""
    x, y = _digits(size)
    tr, te = split_halves(y, np.random.default_rng([seed, 0]))
    return x[torch.as_tensor(tr)], y[tr], x[torch.as_tensor(te)], y[te]


def build_digits(category: str, *, protocol: str, seed: int, profile: Profile,
                 image_size: int | None = None) -> AnomalyTask:
    check_protocol(protocol, "digits")
    size = image_size or profile.digits_size
    k = DIGIT_CLASSES.index(category)
    x_tr, y_tr, x_te, y_te = digit_pools(size, seed)
    rng = np.random.default_rng([seed, 1])
    tr, te, labels = select_by_class(y_tr, y_te, normal_classes(protocol, k, 10),
                                     profile.n_train, profile.n_test, rng)
    role = "normal" if protocol == "one-class" else "the anomaly"
    return AnomalyTask(
        name=f"digits/{category}" + ("" if protocol == "one-class" else "-out"),
        description=f"sklearn handwritten digits at {size}px; digit {category} is {role} "
                    f"({protocol} protocol).",
        train=x_tr[torch.as_tensor(tr)], images=x_te[torch.as_tensor(te)], labels=torch.as_tensor(labels),
        kinds=kinds_from_classes(labels, y_te[te], DIGIT_CLASSES))


def build_digits_c(category: str, *, protocol: str, seed: int, profile: Profile,
                   image_size: int | None = None) -> AnomalyTask:
    """Clean test digits are normal; the other half of the test set is corrupted: by `category`, or
    under "all" by every corruption in turn (equal shares). Normal and corrupted test digits are
    different images, and neither half is in the train set."""
    check_protocol(protocol, "digits-c", ("one-class",))
    size = image_size or profile.digits_size
    x_tr, _, x_te, _ = digit_pools(size, seed)
    rng = np.random.default_rng([seed, 2])
    train = x_tr[torch.as_tensor(take(rng, np.arange(len(x_tr)), profile.n_train))]
    order = rng.permutation(len(x_te))
    n_norm = n_anom = min(profile.n_test // 2, len(x_te) // 2)
    normal = x_te[torch.as_tensor(order[:n_norm])]
    to_corrupt = x_te[torch.as_tensor(order[n_norm:n_norm + n_anom])]
    names = list(CORRUPTIONS) if category == "all" else [category]
    anomalies, kind_of = corrupt_in_equal_shares(to_corrupt, names, rng, seed_base=seed * 1000)
    test = torch.cat([normal, anomalies])
    labels = np.r_[np.zeros(n_norm, np.int64), np.ones(n_anom, np.int64)]
    kinds = ["normal"] * n_norm + list(kind_of)
    perm = rng.permutation(len(test))
    return AnomalyTask(
        name=f"digits-c/{category}",
        description=f"sklearn digits at {size}px: clean digits are normal, MNIST-C corrupted digits "
                    f"({category}) are anomalies.",
        train=train, images=test[torch.as_tensor(perm)], labels=torch.as_tensor(labels[perm]),
        kinds=[str(kinds[i]) for i in perm])


def corrupt_in_equal_shares(images: torch.Tensor, names: list[str], rng: np.random.Generator, *,
                            seed_base: int) -> tuple[torch.Tensor, np.ndarray]:
    """Each image gets one of the corruptions `names`, in equal shares at random positions; corruption j
    draws its randomness from ``seed_base + j``. Returns (corrupted images, the corruption of each)."""
    kind_of = np.array(equal_shares(names, len(images), rng), dtype=object)
    out = images.clone()
    for j, name in enumerate(names):
        sel = torch.as_tensor(np.flatnonzero(kind_of == name))
        if len(sel):
            out[sel] = corrupt(name, images[sel], seed=seed_base + j)
    return out, kind_of


# --- photos -----------------------------------------------------------------------------------------
def _skimage_file(filename: str, loader: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data
        path = Path(skimage.data.data_dir) / filename
        if not path.exists():
            raise FileNotFoundError(
                f"scikit-image data file {filename!r} (skimage.data.{loader}) is missing: expected {path}. "
                "Reinstall scikit-image (pip install --force-reinstall scikit-image); the course needs "
                "no download for its offline datasets.")
        img = getattr(skimage.data, loader)()
        return img[0] if isinstance(img, tuple) else img
    return load


# name -> loader of an (H, W, 3) uint8 photograph shipped inside scikit-image
PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage_file("astronaut.png", "astronaut"),
    "chelsea": _skimage_file("chelsea.png", "chelsea"),
    "coffee": _skimage_file("coffee.png", "coffee"),
    "rocket": _skimage_file("rocket.jpg", "rocket"),
    "hubble": _skimage_file("hubble_deep_field.jpg", "hubble_deep_field"),
    "ihc": _skimage_file("ihc.png", "immunohistochemistry"),
    "retina": _skimage_file("retina.jpg", "retina"),
    "motorcycle": _skimage_file("motorcycle_left.png", "stereo_motorcycle"),
}
PHOTO_CLASSES: tuple[str, ...] = tuple(PHOTOS)


@lru_cache(maxsize=len(PHOTOS))
def load_photo(name: str) -> torch.Tensor:
    """(3, H, W) float32 in [-1, 1]."""
    img = PHOTOS[name]()[..., :3]
    return to_unit_range(img, 255.0).permute(2, 0, 1).contiguous()


def checkerboard_blocks(h: int, w: int, rows: int = 3) -> dict[str, list[tuple[int, int, int]]]:
    """Square blocks (top, left, side) of a rows x cols grid, split like a checkerboard."""
    side = h // rows
    cols = w // side
    blocks: dict[str, list[tuple[int, int, int]]] = {"train": [], "test": []}
    for i in range(rows):
        for j in range(cols):
            blocks["train" if (i + j) % 2 == 0 else "test"].append((i * side, j * side, side))
    return blocks


def random_crops(photo: torch.Tensor, blocks: list[tuple[int, int, int]], n: int, size: int,
                 rng: np.random.Generator) -> torch.Tensor:
    """n crops (n, C, size, size): a random block, a square of 60-100 % of its side inside it, resized."""
    out = torch.empty(n, photo.shape[0], size, size)
    for i in range(n):
        top, left, side = blocks[int(rng.integers(len(blocks)))]
        s = int(rng.integers(int(0.6 * side), side + 1))
        y0 = top + int(rng.integers(0, side - s + 1))
        x0 = left + int(rng.integers(0, side - s + 1))
        out[i] = resize(photo[None, :, y0:y0 + s, x0:x0 + s], size)[0]
    return out


def build_photos(category: str, *, protocol: str, seed: int, profile: Profile, size: int,
                 image_size: int | None = None, task: str = "photos") -> AnomalyTask:
    check_protocol(protocol, task)
    size = image_size or size
    k = PHOTO_CLASSES.index(category)
    rng = np.random.default_rng([seed, 3])

    def draw(cls: int, split: str, n: int) -> torch.Tensor:
        photo = load_photo(PHOTO_CLASSES[cls])
        return random_crops(photo, checkerboard_blocks(*photo.shape[1:])[split], n, size, rng)

    train, test, labels, classes = sample_by_class(draw, len(PHOTO_CLASSES), normal_classes(protocol, k, 8),
                                                   profile.n_train, profile.n_test, rng)
    role = "normal" if protocol == "one-class" else "the anomaly"
    return AnomalyTask(
        name=f"{task}/{category}" + ("" if protocol == "one-class" else "-out"),
        description=f"{size}px crops of scikit-image colour photos; crops of '{category}' are {role} "
                    f"({protocol} protocol).",
        train=train, images=test, labels=torch.as_tensor(labels),
        kinds=kinds_from_classes(labels, classes, PHOTO_CLASSES))


def build_photos_32(category: str, *, protocol: str, seed: int, profile: Profile,
                    image_size: int | None = None) -> AnomalyTask:
    """``photos``: the crops at the profile's photo_size (CIFAR-like)."""
    return build_photos(category, protocol=protocol, seed=seed, profile=profile, size=profile.photo_size,
                        image_size=image_size, task="photos")


def build_photos_64(category: str, *, protocol: str, seed: int, profile: Profile,
                    image_size: int | None = None) -> AnomalyTask:
    """``photos-64``: the same crops at 64 px (Mini-ImageNet-like)."""
    return build_photos(category, protocol=protocol, seed=seed, profile=profile, size=64,
                        image_size=image_size, task="photos-64")
