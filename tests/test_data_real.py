"""The real-dataset loaders, each on a tiny fixture written in that dataset's real on-disk format.

Every fixture image carries its class (and index) in its pixel values, so the tests can check the
protocol and the decoding (channel order, scaling, masks) without trusting the loader.
"""
from __future__ import annotations

import csv
import os
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from course_lib.config import profile
from course_lib.data import CORRUPTIONS, load_task

SMOKE = profile("smoke")  # n_train 64, n_test 40


def _unit(v) -> np.ndarray:  # uint8 value -> [-1, 1]
    return np.asarray(v, np.float64) / 255 * 2 - 1


def _value(x: torch.Tensor) -> np.ndarray:  # [-1, 1] -> uint8 value
    return np.rint((x.double().numpy() + 1) / 2 * 255).astype(int)


# --- MNIST: raw idx-ubyte files, as torchvision reads them ----------------------------------------------
def _write_idx(path, arr: np.ndarray) -> None:
    with open(path, "wb") as fh:  # magic: 0, 0, 0x08 (unsigned byte), ndim; then big-endian int32 dims
        fh.write(bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}i", *arr.shape) + arr.tobytes())


def _digit_set(n_per_class: int) -> tuple[np.ndarray, np.ndarray]:
    labels = np.repeat(np.arange(10), n_per_class).astype(np.uint8)
    images = np.full((len(labels), 28, 28), 10, np.uint8) + 20 * labels[:, None, None]
    images[:, 0, 0] = np.arange(len(labels))  # the index, to check that no image is reused
    return images, labels


@pytest.fixture()
def mnist_root(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split, n in (("train", 4), ("t10k", 3)):
        x, y = _digit_set(n)
        _write_idx(raw / f"{split}-images-idx3-ubyte", x)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", y)
    return tmp_path


@pytest.mark.parametrize("protocol", ["one-class", "leave-one-class-out"])
def test_mnist_protocol_on_idx_files(mnist_root, protocol):
    task = load_task("mnist", 3, protocol=protocol, profile=SMOKE, root=mnist_root, image_size=28)
    train_cls = (_value(task.train[:, 0, 5, 5]) - 10) // 20
    test_cls = (_value(task.images[:, 0, 5, 5]) - 10) // 20
    if protocol == "one-class":
        assert len(task.train) == 4 and (train_cls == 3).all()
        np.testing.assert_array_equal(task.labels.numpy(), test_cls != 3)
    else:
        assert len(task.train) == 36 and (train_cls != 3).all()
        np.testing.assert_array_equal(task.labels.numpy(), test_cls == 3)
    assert int(task.labels.sum()) == 3 and len(task.images) == 6      # balanced, limited by class 3
    np.testing.assert_allclose(task.train[:, 0, 5, 5].numpy(), _unit(10 + 20 * train_cls), atol=1e-6)
    assert len(set(_value(task.images[:, 0, 0, 0]))) == len(task.images) # no test image twice
    assert load_task("mnist", 3, profile=SMOKE, root=mnist_root).image_shape == (1, 16, 16)


def test_mnist_missing_names_path_and_download(tmp_path):
    with pytest.raises(FileNotFoundError,
                       match=r"MNIST/raw.*download=True.*python -m course_lib\.data\.download mnist --root .*ossci"):
        load_task("mnist", 0, profile=SMOKE, root=tmp_path)


# --- CIFAR-10: the cifar-10-batches-py pickles ------------------------------------------------------------
@pytest.fixture()
def cifar_root(tmp_path, monkeypatch):
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()

    def batch(n_per_class: int, offset: int) -> dict:
        labels = np.repeat(np.arange(10), n_per_class)
        img = np.zeros((len(labels), 3, 32, 32), np.uint8)   # CIFAR stores rows of R, G, B planes
        img[:, 0] = (10 + 20 * labels)[:, None, None]
        img[:, 1] = (offset + np.arange(len(labels)))[:, None, None]
        img[:, 2] = 200
        return {"data": img.reshape(len(labels), 3072), "labels": labels.tolist()}

    for i in range(5):
        with open(base / f"data_batch_{i + 1}", "wb") as fh:
            pickle.dump(batch(1, 20 * i), fh)
    with open(base / "test_batch", "wb") as fh:
        pickle.dump(batch(3, 100), fh)
    with open(base / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                     "horse", "ship", "truck"]}, fh)
    # torchvision checks the md5 of every batch file against the real release, which a fixture cannot
    # match: accept any existing file instead, so the test exercises our wrapper on the real format.
    import torchvision.datasets.cifar as tv_cifar
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))
    return tmp_path


def test_cifar10_one_class_and_channel_order(cifar_root):
    task = load_task("cifar10", "cat", profile=SMOKE, root=cifar_root)
    assert task.name == "cifar10/cat" and task.image_shape == (3, 16, 16)   # resized to photo_size
    assert len(task.train) == 5 and (_value(task.train[:, 0]) == 70).all()  # cat = class 3
    assert (_value(task.images[:, 2]) == 200).all()                         # blue plane stays blue
    test_cls = (_value(task.images[:, 0, 0, 0]) - 10) // 20
    np.testing.assert_array_equal(task.labels.numpy(), test_cls != 3)
    assert [k for k, c in zip(task.kinds, test_cls) if c == 3] == ["normal"] * 3


def test_cifar10_missing_names_path_url_and_download(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cifar-10-batches-py.*download=True.*"
                       r"python -m course_lib\.data\.download cifar10 --root .*cifar-10-python\.tar\.gz"):
        load_task("cifar10", profile=SMOKE, root=tmp_path)


# --- mnist-corrupted: the real MNIST files with the course's own corruptions ---------------------------
@pytest.fixture()
def mnist_split_root(tmp_path):
    """As mnist_root, but every test-file image is 5 levels brighter, so the two files cannot be confused."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split, n, offset in (("train", 4, 0), ("t10k", 3, 5)):
        x, y = _digit_set(n)
        _write_idx(raw / f"{split}-images-idx3-ubyte", (x + offset * (x > 9)).astype(np.uint8))
        _write_idx(raw / f"{split}-labels-idx1-ubyte", y)
    return tmp_path


def _file_images(root, split) -> set:
    from course_lib.data.real import _mnist_pools
    x_tr, _, x_te, _ = _mnist_pools(root, False)
    return {img.tobytes() for img in (x_tr if split == "train" else x_te)}


def test_mnist_corrupted_trains_on_clean_training_digits_and_corrupts_half_the_test_digits(mnist_split_root):
    task = load_task("mnist-corrupted", "all", profile=SMOKE, root=mnist_split_root, image_size=28)
    train_file, test_file = _file_images(mnist_split_root, "train"), _file_images(mnist_split_root, "test")
    as_bytes = lambda imgs: [_value(x[0]).astype(np.uint8).tobytes() for x in imgs]   # noqa: E731
    assert len(task.train) == 40 and all(b in train_file for b in as_bytes(task.train))
    normal = task.images[task.labels == 0]
    anomalous = task.images[task.labels == 1]
    assert len(normal) == len(anomalous) == 15 and all(b in test_file for b in as_bytes(normal))
    assert not any(b in test_file or b in train_file for b in as_bytes(anomalous))      # every one corrupted
    kinds = [k for k, y in zip(task.kinds, task.labels.tolist()) if y == 1]
    assert sorted(kinds) == sorted(CORRUPTIONS)                                          # equal shares: one each
    assert task.name == "mnist-corrupted/all" and "not" not in task.description and "own" in task.description
    fog = load_task("mnist-corrupted", "fog", profile=SMOKE, root=mnist_split_root)
    assert {k for k in fog.kinds if k != "normal"} == {"fog"}


def test_mnist_corrupted_validation_reads_the_training_file_alone(mnist_split_root):
    val = load_task("mnist-corrupted", "all", profile=SMOKE, root=mnist_split_root, image_size=28, split="validation")
    test_file = _file_images(mnist_split_root, "test")
    clean = torch.cat([val.train, val.images[val.labels == 0]])
    assert val.split == "validation" and not any(_value(x[0]).astype(np.uint8).tobytes() in test_file for x in clean)
    assert not (_value(clean[:, 0, 1:, 1:]) % 10 == 5).any()         # no pixel carries the test file's offset


def test_mnist_corrupted_is_fetched_as_mnist(monkeypatch, tmp_path):
    from course_lib.data import download as dl
    got = []
    monkeypatch.setattr(dl, "_mnist", lambda info, root, keep, progress: got.append(info.name) or root)
    dl.download("mnist-corrupted", root=tmp_path)
    assert got == ["mnist"]


# --- MNIST-C: mnist_c/<corruption>/{train,test}_{images,labels}.npy ---------------------------------------
@pytest.fixture()
def mnist_c_root(tmp_path):
    for j, name in enumerate(("identity",) + CORRUPTIONS):
        folder = tmp_path / "mnist_c" / name
        folder.mkdir(parents=True)
        for split, n in (("train", 50), ("test", 30)):
            x = np.full((n, 28, 28, 1), 5 * j, np.uint8)   # the corruption's code
            x[:, 0, 0, 0] = np.arange(n)                   # the digit's index
            np.save(folder / f"{split}_images.npy", x)
            np.save(folder / f"{split}_labels.npy", np.arange(n) % 10)
    return tmp_path


def test_mnist_c_all(mnist_c_root):
    task = load_task("mnist-c", "all", profile=profile("smoke", n_test=30), root=mnist_c_root, image_size=28)
    assert len(task.train) == 50 and (_value(task.train[:, 0, 5, 5]) == 0).all()   # clean train digits
    code = _value(task.images[:, 0, 5, 5]) // 5
    names = ("identity",) + CORRUPTIONS
    assert [names[c] if c else "normal" for c in code] == task.kinds
    np.testing.assert_array_equal(task.labels.numpy(), code != 0)
    assert int(task.labels.sum()) == 15 and len(set(task.kinds)) == 16           # one per corruption
    index = _value(task.images[:, 0, 0, 0])
    assert len(set(index)) == len(index)             # no digit both clean and corrupted


def test_mnist_c_one_corruption_and_missing(mnist_c_root, tmp_path_factory):
    task = load_task("mnist-c", "fog", profile=SMOKE, root=mnist_c_root)
    assert set(task.kinds) == {"normal", "fog"} and task.image_shape == (1, 16, 16)
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(FileNotFoundError, match=r"mnist_c/identity/train_images.npy.*"
                       r"python -m course_lib\.data\.download mnist-c --root .*zenodo.org/record/3239543"):
        load_task("mnist-c", profile=SMOKE, root=empty)


# --- MVTec-AD: PNG tree with ground-truth masks -------------------------------------------------------------
def _png(path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture()
def mvtec_root(tmp_path):
    rng = np.random.default_rng(0)
    for cat, mode_rgb in (("bottle", True), ("grid", False)):
        base = tmp_path / "mvtec_anomaly_detection" / cat
        shape = (32, 32, 3) if mode_rgb else (32, 32)
        for i in range(6):
            _png(base / "train" / "good" / f"{i:03d}.png", rng.integers(0, 256, shape, dtype=np.uint8))
        for i in range(2):
            _png(base / "test" / "good" / f"{i:03d}.png", rng.integers(0, 256, shape, dtype=np.uint8))
        for i in range(3):
            _png(base / "test" / "crack" / f"{i:03d}.png", rng.integers(0, 256, shape, dtype=np.uint8))
            mask = np.zeros((32, 32), np.uint8)
            mask[4 * i: 4 * i + 9, 10:21] = 255
            _png(base / "ground_truth" / "crack" / f"{i:03d}_mask.png", mask)
    return tmp_path


def test_mvtec_images_masks_and_kinds(mvtec_root):
    task = load_task("mvtec", "bottle", profile=SMOKE, root=mvtec_root, image_size=16)
    assert task.name == "mvtec/bottle" and task.image_shape == (3, 16, 16) and len(task.train) == 6
    assert task.extent == "local"
    assert sorted(task.kinds) == ["crack", "crack", "crack", "normal", "normal"]
    np.testing.assert_array_equal(task.labels.numpy(), [k == "crack" for k in task.kinds])
    assert not task.masks[task.labels == 0].any()
    crack = [j for j, k in enumerate(task.kinds) if k == "crack"]   # files 000, 001, 002 in order
    for i, j in enumerate(crack):   # nearest 32 -> 16 keeps source pixels 0, 2, 4, ...
        full = np.zeros((32, 32), bool)
        full[4 * i: 4 * i + 9, 10:21] = True
        np.testing.assert_array_equal(task.masks[j, 0].numpy(), full[::2, ::2])
    grid = load_task("mvtec", "grid", profile=SMOKE, root=mvtec_root)
    assert grid.image_shape == (3, 32, 32)                        # grey -> 3 equal channels
    assert torch.equal(grid.train[:, 0], grid.train[:, 2])


def test_mvtec_missing_mask_and_category(mvtec_root):
    (mvtec_root / "mvtec_anomaly_detection" / "bottle" / "ground_truth" / "crack" / "001_mask.png").unlink()
    with pytest.raises(FileNotFoundError, match="001_mask.png"):
        load_task("mvtec", "bottle", profile=SMOKE, root=mvtec_root)
    with pytest.raises(FileNotFoundError, match=r"mvtec_anomaly_detection/carpet/train/good.*mvtec.com"):
        load_task("mvtec", "carpet", profile=SMOKE, root=mvtec_root)
    with pytest.raises(ValueError, match="valid: bottle, cable, capsule"):
        load_task("mvtec", "bottles", profile=SMOKE, root=mvtec_root)


# --- Mini-ImageNet: jpgs + Ravi & Larochelle split CSVs -----------------------------------------------------
WNIDS = ("n01532829", "n01558993", "n01704323")


@pytest.fixture()
def mini_root(tmp_path):
    base = tmp_path / "mini-imagenet"
    rows = []
    for c, wnid in enumerate(WNIDS):
        for i in range(8):
            name = f"{wnid}{i:08d}.jpg"
            img = np.zeros((84, 84, 3), np.uint8)
            img[..., c] = 220                  # class c is a pure red, green or blue image
            _png(base / "images" / name, img)
            rows.append((name, wnid))
    with open(base / "train.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([("filename", "label"), *rows])
    return tmp_path


def test_mini_imagenet_one_class(mini_root):
    task = load_task("mini-imagenet", 1, profile=SMOKE, root=mini_root)
    assert task.image_shape == (3, 64, 64) and task.name == f"mini-imagenet/{WNIDS[1]}"
    colour = lambda x: x.mean(dim=(2, 3)).argmax(1).numpy()   # noqa: E731  (dominant channel = class)
    assert len(task.train) == 4 and (colour(task.train) == 1).all()   # half of the 8 images of class 1
    np.testing.assert_array_equal(task.labels.numpy(), colour(task.images) != 1)
    loco = load_task("mini-imagenet", WNIDS[0], protocol="leave-one-class-out", profile=SMOKE, root=mini_root,
                     image_size=32, n_classes=2)
    assert (colour(loco.train) == 1).all() and set(colour(loco.images[loco.labels == 1])) == {0}
    with pytest.raises(ValueError, match="valid: indices 0..2 or the wnids"):
        load_task("mini-imagenet", "n99999999", profile=SMOKE, root=mini_root)


def test_mini_imagenet_takes_its_source_split_by_name(mini_root):
    base = mini_root / "mini-imagenet"
    rows = [(f"{wnid}{i:08d}.jpg", wnid) for wnid in WNIDS[1:] for i in range(8)]   # val.csv: classes 1 and 2
    with open(base / "val.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([("filename", "label"), *rows])
    task = load_task("mini-imagenet", 0, profile=SMOKE, root=mini_root, image_size=16, source_split="val")
    assert task.name == f"mini-imagenet/{WNIDS[1]}" and "val split, 2 classes" in task.description
    assert load_task("mini-imagenet", 0, profile=SMOKE, root=mini_root, image_size=16).name == f"mini-imagenet/{WNIDS[0]}"
    with pytest.raises(ValueError, match=r"split must be 'test' or 'validation'.*source_split='train' \| 'val'"):
        load_task("mini-imagenet", 0, profile=SMOKE, root=mini_root, split="val")
    with pytest.raises(ValueError, match="unknown source_split 'dev'; valid: train, val, test"):
        load_task("mini-imagenet", 0, profile=SMOKE, root=mini_root, source_split="dev")
    with pytest.raises(FileNotFoundError, match=r"mini-imagenet/test.csv"):
        load_task("mini-imagenet", 0, profile=SMOKE, root=mini_root, source_split="test")


def test_mini_imagenet_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"mini-imagenet/train.csv.*mini-imagenet-tools"):
        load_task("mini-imagenet", profile=SMOKE, root=tmp_path)


def test_mnist_c_arrays_must_be_the_published_uint8(mnist_c_root):
    from course_lib.data.real import DatasetIncomplete
    folder = mnist_c_root / "mnist_c" / "identity"
    x = np.load(folder / "train_images.npy")
    np.save(folder / "train_images.npy", x.astype(np.float32))       # a re-saved float copy
    with pytest.raises(DatasetIncomplete, match=r"float32 images.*published arrays are uint8 \(n, 28, 28, 1\)"):
        load_task("mnist-c", "fog", profile=SMOKE, root=mnist_c_root)
    np.save(folder / "train_images.npy", x[..., 0])                    # the channel axis dropped
    with pytest.raises(DatasetIncomplete, match=r"shape \(\d+, 28, 28\)"):
        load_task("mnist-c", "fog", profile=SMOKE, root=mnist_c_root)


# --- the validation split of each class dataset: its official train split only, in two halves ---------------
def test_mnist_validation_comes_from_the_train_files_in_disjoint_halves(mnist_root):
    raw = mnist_root / "MNIST" / "raw"
    x, y = _digit_set(3)
    x[:, 0, 0] += 100                                     # test digits: indices 100+, train digits: 0..39
    _write_idx(raw / "t10k-images-idx3-ubyte", x)
    val = load_task("mnist", 3, profile=SMOKE, root=mnist_root, image_size=28, split="validation")
    test = load_task("mnist", 3, profile=SMOKE, root=mnist_root, image_size=28)
    assert val.split == "validation" and val.name == "mnist/3 (validation)"
    train_idx, val_idx = (set(_value(t[:, 0, 0, 0])) for t in (val.train, val.images))
    assert max(train_idx | val_idx) < 100 and not train_idx & val_idx       # the train file, two halves
    assert len(val.train) == 2 and ((_value(val.train[:, 0, 5, 5]) - 10) // 20 == 3).all()   # half of 4
    cls = (_value(val.images[:, 0, 5, 5]) - 10) // 20
    np.testing.assert_array_equal(val.labels.numpy(), cls != 3)
    assert set(val.labels.tolist()) == {0, 1} and min(_value(test.images[:, 0, 0, 0])) >= 100


def test_cifar10_validation_comes_from_the_train_batches(cifar_root):
    val = load_task("cifar10", "cat", profile=SMOKE, root=cifar_root, split="validation")
    ids = lambda t: set(_value(t[:, 1, 0, 0]))              # noqa: E731  (green = the image's id)
    assert max(ids(val.train) | ids(val.images)) < 100      # test-batch ids start at 100
    assert not ids(val.train) & ids(val.images) and len(val.train) == 3 # 3 of the 5 cats (stratified halves)
    assert [k for k, y in zip(val.kinds, val.labels.tolist()) if y == 0] == ["normal"] * int((val.labels == 0).sum())


def test_mnist_c_validation_uses_the_train_arrays_and_never_a_digit_twice(mnist_c_root):
    names = ("identity",) + CORRUPTIONS
    for j, name in enumerate(names):                       # test arrays: indices 100+
        folder = mnist_c_root / "mnist_c" / name
        x = np.load(folder / "test_images.npy")
        x[:, 0, 0, 0] += 100
        np.save(folder / "test_images.npy", x)
    val = load_task("mnist-c", "all", profile=profile("smoke", n_test=20), root=mnist_c_root, image_size=28,
                    split="validation")
    index = lambda t: _value(t[:, 0, 0, 0])                 # noqa: E731
    assert val.split == "validation" and max(index(val.images)) < 100 and max(index(val.train)) < 100
    assert not set(index(val.train)) & set(index(val.images))
    assert len(set(index(val.images))) == len(val.images)   # no digit both clean and corrupted
    code = _value(val.images[:, 0, 5, 5]) // 5
    assert [names[c] if c else "normal" for c in code] == val.kinds
    np.testing.assert_array_equal(val.labels.numpy(), code != 0)


def test_mini_imagenet_validation_splits_the_test_tasks_training_half(mini_root):
    def ids(t):   # the loader resizes, so identify an image by its exact pixels
        return {tuple(v) for v in t.flatten(1).numpy().round(4).tolist()}
    base = mini_root / "mini-imagenet" / "images"
    for c, wnid in enumerate(WNIDS):                       # give every image its own pixels
        for i in range(8):
            img = np.zeros((84, 84, 3), np.uint8)
            img[..., c] = 220
            img[:, :, (c + 1) % 3] = 10 * i + 5
            _png(base / f"{wnid}{i:08d}.jpg", img)
    val = load_task("mini-imagenet", 1, profile=SMOKE, root=mini_root, image_size=16, split="validation")
    test = load_task("mini-imagenet", 1, profile=SMOKE, root=mini_root, image_size=16)
    assert val.split == "validation" and set(val.labels.tolist()) == {0, 1}
    assert len(val.train) == 2                             # half of the test task's 4 training images
    assert ids(val.train) | ids(val.images[val.labels == 0]) <= ids(test.train)
    assert not ids(val.train) & ids(val.images) and not (ids(val.train) | ids(val.images)) & ids(test.images)
