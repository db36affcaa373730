"""The MNIST loader on the real files (LeCun et al.'s four IDX files), where they are on disk.

`.ci/run` fetches them; elsewhere these tests are skipped with the command that gets them. The reference
is the IDX files read here with numpy alone: every image a task holds must be a byte-identical image of
the right official split with the right label.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from course_lib import config
from course_lib.data import load_task

RAW = config.data_root() / "MNIST" / "raw"
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
# the official splits' images per class (LeCun et al.), as the files must hold them
COUNTS = {"train": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
          "test": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]}
CPU = config.profile("cpu")

pytestmark = pytest.mark.skipif(
    not all((RAW / f).is_file() for pair in FILES.values() for f in pair),
    reason=f"the real MNIST files are not in {RAW}: `python -m course_lib.data.download mnist` downloads them "
           "(on a machine that reaches only PyPI, `python3 ../shared/fetch_real_mnist.py data`)")


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes: magic 0x00000803 (images, n x rows x cols) or 0x00000801 (labels, n)."""
    data = path.read_bytes()
    magic = struct.unpack(">I", data[:4])[0]
    ndim = magic & 0xFF
    assert magic >> 8 == 0x08, f"{path.name}: not an unsigned-byte IDX file"
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


@pytest.fixture(scope="module")
def official():
    """split -> (images (n, 28, 28) uint8, labels (n,)) and, per split, image bytes -> its labels."""
    splits = {s: (read_idx(RAW / a), read_idx(RAW / b)) for s, (a, b) in FILES.items()}
    lookup = {}
    for s, (x, y) in splits.items():
        table: dict[bytes, set] = {}
        for img, lab in zip(x, y):
            table.setdefault(img.tobytes(), set()).add(int(lab))
        lookup[s] = table
    return splits, lookup


def as_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] (n, 1, 28, 28) -> the uint8 (n, 28, 28) the files hold."""
    return np.rint((images[:, 0].double().numpy() + 1) * 127.5).astype(np.uint8)


def labels_of(images: torch.Tensor, table: dict) -> list[set]:
    found = [table.get(x.tobytes()) for x in as_uint8(images)]
    assert all(f is not None for f in found), "an image that is not in the official split"
    return found


def test_the_files_hold_the_official_splits(official):
    splits, _ = official
    for s, (x, y) in splits.items():
        assert x.shape == (sum(COUNTS[s]), 28, 28) and y.shape == (sum(COUNTS[s]),)
        assert np.bincount(y, minlength=10).tolist() == COUNTS[s]


@pytest.mark.parametrize("k", ["2", "8"])
def test_a_one_class_task_holds_real_training_digits_of_its_class_and_labelled_test_digits(official, k):
    _, lookup = official
    task = load_task("mnist", k, profile=CPU, image_size=28)
    assert task.train.shape == (CPU.n_train, 1, 28, 28) and len(task.images) == CPU.n_test
    assert all(found == {int(k)} for found in labels_of(task.train, lookup["train"]))
    assert len({x.tobytes() for x in as_uint8(task.train)}) == len(task.train)          # no digit twice
    test_labels = labels_of(task.images, lookup["test"])
    assert all((lab == 0) == (found == {int(k)}) for lab, found in zip(task.labels.tolist(), test_labels))
    assert 0 < int(task.labels.sum()) < len(task.labels)
    assert set(task.kinds) == {"normal"} | {str(c) for c in range(10) if str(c) != k}


def test_the_validation_task_comes_from_the_training_file_alone(official):
    _, lookup = official
    val = load_task("mnist", "5", profile=CPU, image_size=28, split="validation")
    assert val.split == "validation" and val.name == "mnist/5 (validation)"
    train_bytes = {x.tobytes() for x in as_uint8(val.train)}
    assert all(found == {5} for found in labels_of(val.train, lookup["train"]))
    val_labels = labels_of(val.images, lookup["train"])             # labelled images: the training file too
    assert all((lab == 0) == (found == {5}) for lab, found in zip(val.labels.tolist(), val_labels))
    assert not train_bytes & {x.tobytes() for x in as_uint8(val.images)}   # its two halves do not overlap


def test_the_default_size_is_the_profiles_and_the_same_digits_are_chosen(official):
    small = load_task("mnist", "8", profile=CPU)
    full = load_task("mnist", "8", profile=CPU, image_size=28)
    assert small.image_shape == (1, CPU.digits_size, CPU.digits_size)
    assert torch.equal(small.labels, full.labels) and small.kinds == full.kinds
    shrunk = torch.nn.functional.interpolate(full.train[:8], size=CPU.digits_size, mode="area")
    assert (shrunk - small.train[:8]).abs().mean() < 0.1          # the same digits, resized


def test_mnist_corrupted_holds_real_test_digits_clean_and_corrupted(official):
    _, lookup = official
    task = load_task("mnist-corrupted", "all", profile=CPU, image_size=28)
    assert all(found for found in labels_of(task.train, lookup["train"]))           # clean training digits
    normal, anomalous = task.images[task.labels == 0], task.images[task.labels == 1]
    labels_of(normal, lookup["test"])                                                # clean test digits
    assert not any(x.tobytes() in lookup["test"] for x in as_uint8(anomalous))       # every anomaly corrupted
    assert len(normal) == len(anomalous) == CPU.n_test // 2
