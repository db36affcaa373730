"""Your own images as an anomaly-detection task.

Two layouts are understood:

- **MVTec-AD's**: ``ROOT/train/good/*`` are the normal training images; ``ROOT/test/good/*`` normal and
  ``ROOT/test/<defect>/*`` anomalous test images; optional masks ``ROOT/ground_truth/<defect>/<stem>_mask.png``.
  Pass ``train=ROOT`` (the test folder defaults to ``ROOT/test``).
- **Two plain folders**: a folder of normal images to train on, and a folder to score. If the folder to
  score has subfolders, their names are the labels (``good`` or ``normal``: normal, any other name: an
  anomaly of that kind); if its images sit directly in it, they have no labels and are only scored.

Every image is converted to `channels` (1: grey, 3: RGB), its shorter side resized to `size` and the
centre cropped square, as the MVTec loader does.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .folders import _image, _mask
from .task import AnomalyTask

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
NORMAL_NAMES = ("good", "normal")


@dataclass
class ImageSet:
    """Images read from a folder, with what is known about them."""

    images: torch.Tensor                 # (N, C, size, size) in [-1, 1]
    paths: list[Path]
    kinds: list[str] | None = None       # "normal" or the subfolder's name; None when unlabelled
    masks: torch.Tensor | None = None    # (N, 1, size, size) bool, when every anomaly has a mask

    @property
    def labels(self) -> torch.Tensor | None:
        return None if self.kinds is None else torch.tensor([k != "normal" for k in self.kinds], dtype=torch.long)


def image_files(folder: Path) -> list[Path]:
    """The image files directly in `folder`, sorted."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_images(paths: list[Path], size: int, channels: int) -> torch.Tensor:
    """(N, channels, size, size) in [-1, 1]; an unreadable file gets an error that names it."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}.")
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an integer >= 8 (pixels), got {size!r}.")
    out = []
    for p in paths:
        try:
            out.append(_image(p, size, "L" if channels == 1 else "RGB"))
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot read the image {p}: {err}. Remove it or replace it with a valid image.") from None
    return torch.stack(out)


def _folder(path, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{what}: {path} is not a folder.")
    return path


def read_training_images(train, *, size: int, channels: int) -> tuple[torch.Tensor, Path | None]:
    """The normal images of `train` (an MVTec-layout root or a plain folder) and the MVTec root, if any."""
    train = _folder(train, "the training images")
    mvtec = (train / "train" / "good").is_dir()
    folder = train / "train" / "good" if mvtec else train
    files = image_files(folder)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) directly in {folder}: put the normal "
                                "training images there, or pass an MVTec-layout folder (train/good, test/...).")
    return read_images(files, size, channels), train if mvtec else None


def read_test_images(test, *, size: int, channels: int, mvtec_root: Path | None = None) -> ImageSet:
    """The images to score. Subfolders label them (``good``/``normal`` = normal); masks are read from
    ``<root>/ground_truth/<kind>/<stem>_mask.png`` when the test folder is an MVTec root's ``test``."""
    test = _folder(test, "the images to score")
    subfolders = sorted(d for d in test.iterdir() if d.is_dir() and image_files(d))
    if not subfolders:
        files = image_files(test)
        if not files:
            raise FileNotFoundError(f"no images directly in {test} or in its subfolders.")
        return ImageSet(read_images(files, size, channels), files)
    files, kinds = [], []
    for d in subfolders:
        kind = "normal" if d.name.lower() in NORMAL_NAMES else d.name
        for f in image_files(d):
            files.append(f)
            kinds.append(kind)
    images = read_images(files, size, channels)
    root = mvtec_root or test.parent
    mask_files = [None if k == "normal" else root / "ground_truth" / f.parent.name / f"{f.stem}_mask.png"
                  for f, k in zip(files, kinds)]
    masks = None
    if any(k != "normal" for k in kinds) and all(m is None or m.exists() for m in mask_files):
        masks = torch.stack([torch.zeros(1, size, size, dtype=torch.bool) if m is None else _mask(m, size)
                             for m in mask_files])
    return ImageSet(images, files, kinds, masks)


def load_own_task(train, test=None, *, size: int = 64, channels: int = 3) -> AnomalyTask:
    """Your folders as an :class:`AnomalyTask` (labelled test images are needed: subfolders ``good`` and
    one per kind of anomaly, as in MVTec-AD). ``train`` may be an MVTec-layout root, whose ``test``
    folder is then the default test folder."""
    train_images, root = read_training_images(train, size=size, channels=channels)
    if test is None:
        if root is None:
            raise ValueError("give the folder of images to score (test=...), or pass an MVTec-layout folder "
                             "as train (it has train/good and test/).")
        test = root / "test"
    scored = read_test_images(test, size=size, channels=channels, mvtec_root=root)
    if scored.kinds is None:
        raise ValueError(f"the images in {test} have no labels, so they make no task to evaluate. Put them in "
                         "subfolders (good/ for normal ones, one folder per kind of anomaly), or score them "
                         "with python -m course_lib.programs.detect, which needs no labels.")
    return AnomalyTask(name=f"own/{Path(train).name}", split="test",
                       description=f"your images from {train} and {test}, at {size}px, {channels} channel(s).",
                       train=train_images, images=scored.images, labels=scored.labels, masks=scored.masks,
                       kinds=scored.kinds, extent="local")
