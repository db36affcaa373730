"""Real datasets from torchvision and the MNIST-C release: ``cifar10``, ``mnist``, ``mnist-c``.

Each reads from ``root`` (``$COURSE_DATA``, default ./data). ``load_task(..., download=True)`` (the
default on Colab) first runs :func:`course_lib.data.download.download`, which announces the size and
licence, checks the MD5 and resumes an interrupted download. A missing dataset raises
FileNotFoundError naming the expected path and how to get the data. Train images come from the
official train split (normal classes only), test images from the official test split; both are
subsampled to the profile's ``n_train`` / ``n_test`` with ``default_rng(seed)``.

``validation=True`` (``load_task(..., split="validation")``) builds the same protocol from the official
train split alone, which the test images never touch: it is split in two halves, stratified by class
(for MNIST-C by digit), the normal training images come from one and the labelled validation images
(normal and anomalous) from the other.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..config import Profile
from .corruptions import CORRUPTIONS
from .protocols import (check_protocol, equal_shares, kinds_from_classes, normal_classes, resize, select_by_class,
                        split_halves, take, to_unit_range)
from .task import AnomalyTask

CIFAR10_CLASSES: tuple[str, ...] = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                    "horse", "ship", "truck")
MNIST_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_C_URL = "https://zenodo.org/record/3239543"  # mnist_c.zip, Mu & Gilmer 2019
MNIST_C_CORRUPTIONS: tuple[str, ...] = CORRUPTIONS  # the 15 folders next to identity/
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")


def _missing(dataset: str, path: Path, how: str) -> FileNotFoundError:
    return FileNotFoundError(f"{dataset} not found: expected {path}. {how} "
                             "Set COURSE_DATA (or pass root=...) if your data lives elsewhere; "
                             "see data/README.md.")


class DatasetIncomplete(FileNotFoundError):
    """A real dataset is on disk but not usable as it is: files missing, a failed checksum, wrong arrays."""


def _torchvision(cls, root: Path, train: bool, download: bool, dataset: str):
    try:
        return cls(str(root), train=train, download=download)
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
        raise DatasetIncomplete(f"{dataset} under {root} is incomplete or corrupted ({e}). Delete it and "
                                "load again with download=True.") from e


def validation_halves(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The validation split's two disjoint halves of the official train split (indices, stratified by
    label): the normal training images come from the first, the validation images from the second."""
    return split_halves(np.asarray(labels), np.random.default_rng([seed, 50]))


def _class_task(dataset: str, names: tuple[str, ...], category: str, protocol: str, seed: int,
                profile: Profile, pools: tuple, size: int, validation: bool) -> AnomalyTask:
    """One-class / leave-one-class-out over uint8 pools (x_tr (N,H,W[,C]), y_tr, x_te, y_te); with
    `validation`, over the two halves of the train pool instead."""
    x_tr, y_tr, x_te, y_te = pools
    fit, held = (validation_halves(y_tr, seed) if validation
                 else (np.arange(len(y_tr)), None))
    if validation:                        # the validation images: the train pool's other half
        x_te, y_te, test_pool = x_tr, y_tr[held], held
    else:
        test_pool = np.arange(len(y_te))
    k = names.index(category)
    rng = np.random.default_rng([seed, 5])
    tr, te, labels = select_by_class(y_tr[fit], y_te, normal_classes(protocol, k, len(names)),
                                     profile.n_train, profile.n_test, rng)
    tr, te_rows = fit[tr], test_pool[te]

    def prep(x: np.ndarray) -> torch.Tensor:  # uint8 (n, H, W[, C]) -> (n, C, size, size) in [-1, 1]
        t = to_unit_range(x, 255.0)
        t = t[:, None] if t.ndim == 3 else t.permute(0, 3, 1, 2)
        return resize(t, size)

    role = "normal" if protocol == "one-class" else "the anomaly"
    return AnomalyTask(
        name=f"{dataset}/{category}" + ("" if protocol == "one-class" else "-out")
             + (" (validation)" if validation else ""),
        description=f"{dataset} at {size}px; class '{category}' is {role} ({protocol} protocol)"
                    + ("; validation images from the official train split." if validation else "."),
        train=prep(x_tr[tr]), images=prep(x_te[te_rows]), labels=torch.as_tensor(labels),
        kinds=kinds_from_classes(labels, y_te[te], names), split="validation" if validation else "test")


def build_cifar10(category: str, *, protocol: str, seed: int, profile: Profile, root: Path,
                  download: bool, image_size: int | None = None, validation: bool = False) -> AnomalyTask:
    check_protocol(protocol, "cifar10")
    from torchvision.datasets import CIFAR10
    if not download and not (root / CIFAR10.base_folder).is_dir():
        raise _missing("CIFAR-10", root / CIFAR10.base_folder,
                       f"Load with download=True, or run: python -m course_lib.data.download cifar10 --root {root} "
                       f"(it downloads {CIFAR10_URL}, checks its MD5 and unpacks it).")
    tr = _torchvision(CIFAR10, root, True, download, "CIFAR-10")
    te = _torchvision(CIFAR10, root, False, download, "CIFAR-10")
    pools = (tr.data, np.asarray(tr.targets), te.data, np.asarray(te.targets))  # (N, 32, 32, 3) uint8
    return _class_task("cifar10", CIFAR10_CLASSES, category, protocol, seed, profile, pools,
                       image_size or profile.photo_size, validation)


def _mnist_pools(root: Path, download: bool) -> tuple[np.ndarray, ...]:
    """The official MNIST splits as uint8 arrays: (x_train (60000, 28, 28), y_train, x_test (10000, 28, 28), y_test)."""
    from torchvision.datasets import MNIST
    raw = root / "MNIST" / "raw"
    if not download and not all((raw / f).exists() for f in MNIST_FILES):
        raise _missing("MNIST", raw, f"Load with download=True, or run: python -m course_lib.data.download mnist "
                       f"--root {root} (it downloads the four .gz files from {MNIST_URL}, checks and unzips them).")
    tr = _torchvision(MNIST, root, True, download, "MNIST")
    te = _torchvision(MNIST, root, False, download, "MNIST")
    return tr.data.numpy(), tr.targets.numpy(), te.data.numpy(), te.targets.numpy()


def build_mnist(category: str, *, protocol: str, seed: int, profile: Profile, root: Path,
                download: bool, image_size: int | None = None, validation: bool = False) -> AnomalyTask:
    check_protocol(protocol, "mnist")
    return _class_task("mnist", MNIST_CLASSES, category, protocol, seed, profile, _mnist_pools(root, download),
                       image_size or profile.digits_size, validation)


def build_mnist_corrupted(category: str, *, protocol: str, seed: int, profile: Profile, root: Path,
                          download: bool, image_size: int | None = None, validation: bool = False) -> AnomalyTask:
    """Real MNIST digits with the course's own MNIST-C corruptions (:mod:`.corruptions`), as ``digits-c``
    makes them for sklearn's digits; not the published MNIST-C arrays (``mnist-c``). Train: clean training
    digits of every class. Test: half clean test digits, half corrupted ones (by `category`, or in equal
    shares under "all"); no digit is both. With `validation`, both halves of the official training split
    instead: training digits from one, validation digits, clean or corrupted, from the other."""
    from .offline import corrupt_in_equal_shares
    check_protocol(protocol, "mnist-corrupted", ("one-class",))
    size = image_size or profile.digits_size
    x_tr, y_tr, x_te, _ = _mnist_pools(root, download)
    fit, held = validation_halves(y_tr, seed) if validation else (np.arange(len(x_tr)), np.arange(len(x_te)))
    pool = x_tr if validation else x_te
    rng = np.random.default_rng([seed, 7])

    def prep(x: np.ndarray) -> torch.Tensor:   # uint8 (n, 28, 28) -> (n, 1, size, size) in [-1, 1]
        return resize(to_unit_range(x, 255.0)[:, None], size)

    train = prep(x_tr[np.sort(take(rng, fit, profile.n_train))])
    order = held[rng.permutation(len(held))]
    n_norm = n_anom = min(profile.n_test // 2, len(order) // 2)
    names = list(CORRUPTIONS) if category == "all" else [category]
    anomalies, kind_of = corrupt_in_equal_shares(prep(pool[np.sort(order[n_norm:n_norm + n_anom])]), names, rng,
                                                 seed_base=seed * 1000)
    test = torch.cat([prep(pool[np.sort(order[:n_norm])]), anomalies])
    labels = np.r_[np.zeros(n_norm, np.int64), np.ones(n_anom, np.int64)]
    kinds = ["normal"] * n_norm + [str(k) for k in kind_of]
    perm = rng.permutation(len(test))
    return AnomalyTask(
        name=f"mnist-corrupted/{category}" + (" (validation)" if validation else ""),
        description=f"real MNIST at {size}px: clean digits are normal, digits with the course's own MNIST-C "
                    f"corruptions ({category}) are anomalies"
                    + ("; validation digits from the official train split." if validation else "."),
        train=train, images=test[torch.as_tensor(perm)], labels=torch.as_tensor(labels[perm]),
        kinds=[kinds[i] for i in perm], split="validation" if validation else "test")


def _mnist_c_arrays(root: Path, corruption: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    folder = root / "mnist_c" / corruption
    files = (folder / f"{split}_images.npy", folder / f"{split}_labels.npy")
    for f in files:
        if not f.exists():
            raise _missing("MNIST-C", f, f"Run: python -m course_lib.data.download mnist-c --root {root} (it "
                           f"downloads mnist_c.zip from {MNIST_C_URL}, checks its MD5 and unpacks "
                           f"{root / 'mnist_c'}/<corruption>/{{train,test}}_{{images,labels}}.npy).")
    images, labels = np.load(files[0], mmap_mode="r"), np.load(files[1], mmap_mode="r")
    # the published arrays: uint8 images (n, 28, 28, 1) and one label per image
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (28, 28, 1) or labels.shape != (len(images),):
        raise DatasetIncomplete(
            f"MNIST-C: {files[0]} holds {images.dtype} images of shape {images.shape} with labels of shape "
            f"{labels.shape}; the published arrays are uint8 (n, 28, 28, 1) with (n,) labels. Delete "
            f"{folder.parent} and run: python -m course_lib.data.download mnist-c --root {root}")
    return images, labels


def build_mnist_c(category: str, *, protocol: str, seed: int, profile: Profile, root: Path,
                  download: bool, image_size: int | None = None, validation: bool = False) -> AnomalyTask:
    """Clean digits (the ``identity`` folder) are normal; each corruption is an anomaly type
    (Mu & Gilmer 2019). Train: clean train digits of all classes. Test: half clean test digits, half
    corrupted test digits (equal shares per corruption under "all"); a test digit never appears both
    clean and corrupted. With `validation`, both come from the train arrays (each corruption's
    ``train_images.npy`` holds the same digits in the same order as ``identity``'s): training digits
    from one half, validation digits, clean or corrupted, from the other."""
    check_protocol(protocol, "mnist-c", ("one-class",))
    size = image_size or profile.digits_size
    names = list(MNIST_C_CORRUPTIONS) if category == "all" else [category]
    x_tr, y_tr = _mnist_c_arrays(root, "identity", "train")
    test_split = "train" if validation else "test"
    x_te = x_tr if validation else _mnist_c_arrays(root, "identity", "test")[0]
    corrupted = {n: _mnist_c_arrays(root, n, test_split)[0] for n in names}
    fit, held = validation_halves(y_tr, seed) if validation else (np.arange(len(x_tr)), np.arange(len(x_te)))
    rng = np.random.default_rng([seed, 6])

    def prep(x: np.ndarray) -> torch.Tensor:  # uint8 (n, 28, 28, 1) -> (n, 1, size, size)
        return resize(to_unit_range(np.asarray(x), 255.0).reshape(len(x), 28, 28, -1).permute(0, 3, 1, 2),
                      size)

    train = prep(x_tr[np.sort(take(rng, fit, profile.n_train))])
    order = held[rng.permutation(len(held))]
    n_norm = n_anom = min(profile.n_test // 2, len(order) // 2)
    kind_of = np.array(equal_shares(names, n_anom, rng), dtype=object)
    anom_idx = order[n_norm:n_norm + n_anom]
    parts, kinds = [prep(x_te[np.sort(order[:n_norm])])], ["normal"] * n_norm
    for name in names:
        idx = np.sort(anom_idx[kind_of == name])
        if len(idx):
            parts.append(prep(corrupted[name][idx]))
            kinds += [name] * len(idx)
    test = torch.cat(parts)
    labels = np.r_[np.zeros(n_norm, np.int64), np.ones(len(test) - n_norm, np.int64)]
    perm = rng.permutation(len(test))
    return AnomalyTask(
        name=f"mnist-c/{category}" + (" (validation)" if validation else ""),
        description=f"MNIST-C at {size}px: clean digits are normal, corrupted digits ({category}) are anomalies"
                    + ("; validation digits from the train arrays." if validation else "."),
        train=train, images=test[torch.as_tensor(perm)], labels=torch.as_tensor(labels[perm]),
        kinds=[kinds[i] for i in perm], split="validation" if validation else "test")
