"""Real datasets stored as image folders: ``mvtec`` (MVTec-AD) and ``mini-imagenet``.

- MVTec-AD (Bergmann et al. 2019): ``<root>/mvtec_anomaly_detection/<category>/train/good/*.png``,
  ``test/<defect>/*.png`` (``good`` = normal) and ``ground_truth/<defect>/<stem>_mask.png``. Its own
  split: train = train/good (at most ``n_train``), test = the test folder, subsampled to ``n_test``
  when larger, keeping its natural share of defects. Every category is loaded as **3 channels**
  (the grey ones, grid / screw / zipper, are replicated to RGB), so all MVTec tasks share one shape.
  Images are resized (bilinear, antialias) to ``texture_size`` (or ``image_size``), masks with nearest.
- Mini-ImageNet (Vinyals et al. 2016, split of Ravi & Larochelle 2017):
  ``<root>/mini-imagenet/images/<filename>`` plus ``train.csv`` / ``val.csv`` / ``test.csv`` with columns
  ``filename,label``. The first ``n_classes`` labels (in CSV order) of the chosen split form the
  classes; each class's images are split into disjoint train/test halves per seed; one-class or
  leave-one-class-out; images resized (shorter side) and centre-cropped to ``max(64, photo_size)``.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..config import Profile
from .protocols import (check_protocol, kinds_from_classes, normal_classes, resize, select_by_class,
                        split_halves, take, to_unit_range)
from .task import AnomalyTask

MVTEC_CATEGORIES: tuple[str, ...] = (
    "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut", "pill", "screw",
    "tile", "toothbrush", "transistor", "wood", "zipper")
MVTEC_URL = "https://www.mvtec.com/company/research/datasets/mvtec-ad"
MINI_IMAGENET_URL = "https://github.com/yaoyao-liu/mini-imagenet-tools"
MINI_IMAGENET_SPLITS: tuple[str, ...] = ("train", "val", "test")


def _image(path: Path, size: int, mode: str = "RGB") -> torch.Tensor:
    """(C, size, size) in [-1, 1]: shorter side resized, centre-cropped (bilinear, antialias)."""
    with Image.open(path) as im:
        x = to_unit_range(np.asarray(im.convert(mode)), 255.0)
    x = x[None, None] if x.ndim == 2 else x.permute(2, 0, 1)[None]  # (1, C, H, W)
    h, w = x.shape[-2:]
    s = min(h, w)
    x = x[..., (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return resize(x, size)[0]


def _mask(path: Path, size: int) -> torch.Tensor:
    """(1, size, size) bool from a ground-truth PNG (non-zero = defect), resized with nearest."""
    with Image.open(path) as im:
        m = torch.from_numpy(np.asarray(im.convert("L")) > 0)
    h, w = m.shape
    s = min(h, w)
    m = m[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return resize(m[None, None], size, mode="nearest")[0]


def build_mvtec(category: str, *, protocol: str, seed: int, profile: Profile, root: Path,
                download: bool, image_size: int | None = None) -> AnomalyTask:
    check_protocol(protocol, "mvtec", ("one-class",))
    base = root / "mvtec_anomaly_detection" / category
    how = (f"Download MVTec-AD from {MVTEC_URL} (free for non-commercial use, behind a form, so it cannot be "
           f"downloaded automatically), then run: python -m course_lib.data.download mvtec --archive PATH "
           f"--root {root} (it checks the archive and unpacks it into {root / 'mvtec_anomaly_detection'}).")
    if download:
        raise ValueError(f"MVTec-AD cannot be downloaded automatically. {how}")
    if not (base / "train" / "good").is_dir() or not (base / "test").is_dir():
        raise FileNotFoundError(f"MVTec-AD category {category!r} not found: expected {base}/train/good "
                                f"and {base}/test. {how} Set COURSE_DATA (or pass root=...) if your data "
                                "lives elsewhere; see data/README.md.")
    size = image_size or profile.texture_size
    rng = np.random.default_rng([seed, 7])
    train_files = np.array(sorted((base / "train" / "good").glob("*.png")))
    test_files = np.array(sorted((base / "test").glob("*/*.png")))
    if len(train_files) == 0 or len(test_files) == 0:
        raise FileNotFoundError(f"MVTec-AD {category!r}: no PNG images under {base}/train/good or {base}/test.")
    train_files = train_files[np.sort(take(rng, np.arange(len(train_files)), profile.n_train))]
    test_files = test_files[np.sort(take(rng, np.arange(len(test_files)), profile.n_test))]
    train = torch.stack([_image(f, size) for f in train_files])
    test, masks, kinds = [], [], []
    for f in test_files:
        defect = f.parent.name
        test.append(_image(f, size))
        kinds.append("normal" if defect == "good" else defect)
        if defect == "good":
            masks.append(torch.zeros(1, size, size, dtype=torch.bool))
        else:
            mask_file = base / "ground_truth" / defect / f"{f.stem}_mask.png"
            if not mask_file.exists():
                raise FileNotFoundError(f"MVTec-AD: the mask {mask_file} for {f} is missing; "
                                        "the download may be incomplete.")
            masks.append(_mask(mask_file, size))
    labels = torch.tensor([k != "normal" for k in kinds], dtype=torch.long)
    return AnomalyTask(
        name=f"mvtec/{category}",
        description=f"MVTec-AD {category} at {size}px (RGB), with the official test set and masks.",
        train=train, images=torch.stack(test), labels=labels, masks=torch.stack(masks), kinds=kinds,
        extent="local")


def _read_split(base: Path, split: str) -> tuple[list[str], list[str]]:
    path = base / f"{split}.csv"
    if not path.exists():
        raise FileNotFoundError(
            f"Mini-ImageNet not found: expected {path} (and images under {base / 'images'}). It cannot be "
            f"downloaded automatically: build it from an ImageNet train folder and the split CSVs with "
            f"python -m course_lib.data.download mini-imagenet --imagenet DIR --splits DIR --root {base.parent} "
            f"(as the tools at {MINI_IMAGENET_URL} do), or place a prepared images folder and "
            "train.csv/val.csv/test.csv there. Set COURSE_DATA (or pass root=...) if "
            "your data lives elsewhere; see data/README.md.")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"filename", "label"} <= set(rows[0]):
        raise ValueError(f"{path} must be a CSV with the columns filename,label.")
    return [r["filename"] for r in rows], [r["label"] for r in rows]


def mini_imagenet_classes(root: Path, split: str = "train", n_classes: int = 10) -> list[str]:
    """The first `n_classes` labels (wnids) of a split, in CSV order."""
    _, labels = _read_split(root / "mini-imagenet", split)
    return list(dict.fromkeys(labels))[:n_classes]


def build_mini_imagenet(category: str, *, protocol: str, seed: int, profile: Profile, root: Path,
                        download: bool, image_size: int | None = None, source_split: str = "train",
                        n_classes: int = 10, validation: bool = False) -> AnomalyTask:
    """`category`: an index into the chosen classes ("0".."n_classes-1") or a wnid among them. With
    `validation`, the images of the test task's training half are split in two again: training images
    from one, the labelled validation images from the other (none is a test image). `source_split` is the
    split CSV of Ravi & Larochelle the classes come from: "train", "val" or "test"."""
    check_protocol(protocol, "mini-imagenet")
    if source_split not in MINI_IMAGENET_SPLITS:
        raise ValueError(f"mini-imagenet: unknown source_split {source_split!r}; valid: {', '.join(MINI_IMAGENET_SPLITS)}.")
    if download:
        raise ValueError(f"Mini-ImageNet cannot be downloaded automatically; build it with python -m "
                         f"course_lib.data.download mini-imagenet --imagenet DIR --splits DIR (as the tools at "
                         f"{MINI_IMAGENET_URL} do).")
    base = root / "mini-imagenet"
    files, labels = _read_split(base, source_split)
    classes = list(dict.fromkeys(labels))[:n_classes]
    if len(classes) < 2:
        raise ValueError(f"mini-imagenet: {base / (source_split + '.csv')} has {len(classes)} class(es); need >= 2.")
    if category in classes:
        k = classes.index(category)
    elif category.isdigit() and int(category) < len(classes):
        k = int(category)
    else:
        raise ValueError(f"mini-imagenet: unknown category {category!r}; valid: indices 0..{len(classes) - 1} "
                         f"or the wnids {', '.join(classes)}.")
    keep = [i for i, lab in enumerate(labels) if lab in classes]
    paths = [base / "images" / files[i] for i in keep]
    y = np.array([classes.index(labels[i]) for i in keep])
    rng = np.random.default_rng([seed, 8])
    pool_tr, pool_te = split_halves(y, rng)
    if validation:
        fit, held = split_halves(y[pool_tr], np.random.default_rng([seed, 51]))
        pool_tr, pool_te = pool_tr[fit], pool_tr[held]
    tr, te, lab = select_by_class(y[pool_tr], y[pool_te], normal_classes(protocol, k, len(classes)),
                                  profile.n_train, profile.n_test, rng)
    size = image_size or max(64, profile.photo_size)

    def load(indices: np.ndarray) -> torch.Tensor:
        out = []
        for i in indices:
            p = paths[i] if paths[i].exists() else paths[i].with_name(paths[i].name + ".jpg")
            if not p.exists():
                raise FileNotFoundError(f"Mini-ImageNet image {paths[i]} (listed in {source_split}.csv) is missing.")
            out.append(_image(p, size))
        return torch.stack(out)

    role = "normal" if protocol == "one-class" else "the anomaly"
    return AnomalyTask(
        name=f"mini-imagenet/{classes[k]}" + ("" if protocol == "one-class" else "-out")
             + (" (validation)" if validation else ""), split="validation" if validation else "test",
        description=f"Mini-ImageNet ({source_split} split, {len(classes)} classes) at {size}px; class "
                    f"{classes[k]} is {role} ({protocol} protocol).",
        train=load(pool_tr[tr]), images=load(pool_te[te]), labels=torch.as_tensor(lab),
        kinds=kinds_from_classes(lab, y[pool_te][te], classes))
