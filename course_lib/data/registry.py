"""One record per dataset: how to build it, its categories, whether it needs a download and what that
fetches, how its validation split is made, and which categories the benchmark's full grid runs.

Every list that needs datasets is derived from :data:`TASKS`: ``load_task``, the downloader
(``python -m course_lib.data.download``), the validation splits and the benchmark's grid. Adding a
dataset is one :class:`Dataset` record here and one builder.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Callable, Literal, Mapping, Union

from ..config import Profile

from .fetch import Resource
from .folders import MINI_IMAGENET_URL, MVTEC_CATEGORIES, MVTEC_URL, build_mini_imagenet, build_mvtec
from .offline import DIGIT_CLASSES, PHOTO_CLASSES, build_digits, build_digits_c, build_photos_32, build_photos_64
from .real import (CIFAR10_CLASSES, CIFAR10_URL, MNIST_C_CORRUPTIONS, MNIST_C_URL, MNIST_CLASSES, MNIST_URL,
                   build_cifar10, build_mnist, build_mnist_c, build_mnist_corrupted)
from .corruptions import CORRUPTIONS
from .task import AnomalyTask
from .textures import TEXTURE_CLASSES, build_textures
from .validation import (digits_c_validation, digits_validation, photos_64_validation, photos_validation,
                         textures_validation)

# How a dataset's validation split is made (course_lib.data.validation):
Validation = Union[
    Callable[..., AnomalyTask],          # a function (category, *, seed, profile, size) building it from training data
    Literal["class-split"],              # its builder's validation=True: the official train split in two halves
    Literal["synthetic-defects"],        # normal training images held out, half with a synthetic defect
]


@dataclass(frozen=True)
class Dataset:
    """What :func:`course_lib.data.load_task` can build under one name."""

    name: str                          # the dataset name passed to load_task
    build: Callable[..., AnomalyTask]  # builder(category, *, protocol, seed, profile[, root, download], **options)
    categories: tuple[str, ...]        # valid `category` values (an int indexes into this tuple)
    default_category: str              # used when category is None
    description: str                   # one sentence for a learner
    validation: Validation             # how load_task(..., split="validation") builds its validation task
    options: tuple[str, ...] = ("image_size",)   # the builder's own keyword options that load_task passes on
    any_category: bool = False         # the builder checks the category itself (mini-imagenet: index or wnid)
    # --- the benchmark --------------------------------------------------------------------------------------
    grid: tuple[str, ...] | None = None    # categories of the --full grid (None: every category, if on disk)
    # --- real datasets: where they go and what the downloader fetches (None for the offline ones) -----------
    folder: str | None = None          # what it becomes under the data root
    size: str | None = None            # download size, for a human
    licence: str | None = None         # the terms it comes with
    source: str | None = None          # the page that describes it
    resources: tuple[Resource, ...] = ()   # the files the downloader fetches, with their checksums
    downloads_itself: bool = False     # load_task fetches it when first asked (on Colab by default)
    reads: str | None = None           # the dataset whose files it is built from, if another's (the downloader fetches those)
    # --- the settings its tasks use instead of the profile's, per profile name ----------------------------
    # e.g. {"cpu": {"digits_size": 28}}: chosen on validation data (results/<name>-validation.md); the
    # benchmark fits and scores this dataset's cells with them (task_profile), and no other dataset's
    settings: Mapping[str, Mapping[str, object]] = field(default_factory=dict)

    @property
    def offline(self) -> bool:
        """True: bundled with sklearn / scikit-image, needs no download."""
        return self.folder is None


_MNIST_RESOURCES = tuple(Resource(MNIST_URL + f, f, md5=md5, size=size) for f, md5, size in [  # as torchvision
    ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", 9_912_422),
    ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", 28_881),
    ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", 1_648_877),
    ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", 4_542)])

TASKS: dict[str, Dataset] = {d.name: d for d in [
    # --- offline ------------------------------------------------------------------------------------------
    # digits: all ten classes in the grid (the paper's one-class protocol)
    Dataset("digits", build_digits, DIGIT_CLASSES, "0",
            "sklearn 8x8 handwritten digits, resized; one-class over the 10 digits.",
            digits_validation, grid=DIGIT_CLASSES),
    # digits-c: the pooled task and each corruption alone (they share one model per seed)
    Dataset("digits-c", build_digits_c, ("all",) + CORRUPTIONS, "all",
            "sklearn digits: clean = normal, MNIST-C corruptions (implemented here) = anomalies.",
            digits_c_validation, grid=("all",) + CORRUPTIONS),
    Dataset("textures", build_textures, TEXTURE_CLASSES, "brick",
            "scikit-image texture photos with synthetic scratches, holes and stains, with pixel masks.",
            textures_validation, grid=TEXTURE_CLASSES),
    # photos: three photos in the grid (a portrait, an animal, an object), since each costs a model per
    # seed and denoiser; photos-64: the astronaut alone (a 64 px model trains for 20-30 min on 2 cores)
    Dataset("photos", build_photos_32, PHOTO_CLASSES, PHOTO_CLASSES[0],
            "crops of scikit-image colour photos at photo_size (CIFAR-like); class = source photo.",
            photos_validation, grid=PHOTO_CLASSES[:3]),
    Dataset("photos-64", build_photos_64, PHOTO_CLASSES, PHOTO_CLASSES[0],
            "crops of scikit-image colour photos at 64 px (Mini-ImageNet-like); class = source photo.",
            photos_64_validation, grid=PHOTO_CLASSES[:1]),
    # --- real ---------------------------------------------------------------------------------------------
    Dataset("cifar10", build_cifar10, CIFAR10_CLASSES, CIFAR10_CLASSES[0],
            "CIFAR-10 (torchvision); one-class over the 10 classes.", "class-split",
            folder="cifar-10-batches-py", size="163 MiB", licence="no licence stated; cite Krizhevsky (2009), "
            "Learning Multiple Layers of Features from Tiny Images", source="https://www.cs.toronto.edu/~kriz/cifar.html",
            resources=(Resource(CIFAR10_URL, "cifar-10-python.tar.gz", md5="c58f30108f718f92721af3b95e74349a",
                                size=170_498_071),), downloads_itself=True),
    Dataset("mnist", build_mnist, MNIST_CLASSES, "0",
            "MNIST (torchvision), resized to digits_size; one-class over the 10 digits.", "class-split",
            folder="MNIST/raw", size="11 MiB (4 gz files)", licence="no licence stated; cite LeCun et al. (1998)",
            source="http://yann.lecun.com/exdb/mnist/", resources=_MNIST_RESOURCES, downloads_itself=True),
    # mnist-corrupted: the real digits with the course's own corruptions; it reads MNIST's files
    Dataset("mnist-corrupted", build_mnist_corrupted, ("all",) + CORRUPTIONS, "all",
            "real MNIST digits: clean = normal, the course's own MNIST-C corruptions (as digits-c) = anomalies; "
            "not the published MNIST-C arrays (mnist-c).", "class-split",
            folder="MNIST/raw", size="11 MiB (4 gz files)", licence="no licence stated; cite LeCun et al. (1998)",
            source="http://yann.lecun.com/exdb/mnist/", resources=_MNIST_RESOURCES, downloads_itself=True,
            reads="mnist", grid=("all",) + CORRUPTIONS),
    Dataset("mnist-c", build_mnist_c, ("all",) + MNIST_C_CORRUPTIONS, "all",
            "MNIST-C (Mu & Gilmer 2019): clean digits normal, each corruption an anomaly type.", "class-split",
            folder="mnist_c", size="about 245 MB", licence="CC BY 4.0; cite Mu & Gilmer (2019)", source=MNIST_C_URL,
            # Zenodo's MD5 of the file, as two independent third-party loaders list it (no network to check it here)
            resources=(Resource(f"{MNIST_C_URL}/files/mnist_c.zip", "mnist_c.zip",
                                md5="4b34b33045869ee6d424616cd3a65da3"),), downloads_itself=True),
    Dataset("mvtec", build_mvtec, MVTEC_CATEGORIES, "bottle",
            "MVTec-AD: industrial images with real defects and pixel masks, official split.", "synthetic-defects",
            folder="mvtec_anomaly_detection", size="about 4.9 GiB (one category: 0.1 to 0.9 GiB)",
            licence="CC BY-NC-SA 4.0: non-commercial use only; cite Bergmann et al. (2019)", source=MVTEC_URL,
            # never fetched (behind a form): only checks an --archive of this name; SHA-256 as anomalib uses it
            resources=(Resource(MVTEC_URL, "mvtec_anomaly_detection.tar.xz",
                                sha256="cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d",
                                size=5_264_982_680),)),
    Dataset("mini-imagenet", build_mini_imagenet, tuple(str(i) for i in range(10)), "0",
            "Mini-ImageNet: the first 10 classes of a split (index or wnid), one-class, >= 64 px.", "class-split",
            options=("image_size", "source_split", "n_classes"), any_category=True,
            folder="mini-imagenet", size="about 0.4 GB once built at 84 px (from ImageNet's 140 GB train set)",
            licence="ImageNet terms of access (non-commercial research and education); split of Ravi & Larochelle "
            "(2017)", source=MINI_IMAGENET_URL),
]}


def task_profile(name: str, prof: Profile) -> Profile:
    """The profile that the tasks of dataset `name` run with: `prof`, with the dataset's own settings for
    `prof`'s name in place of the profile's fields (its `settings`; most datasets have none)."""
    own = dict(dataset(name).settings.get(prof.name, {}))
    unknown = sorted(set(own) - {f.name for f in fields(Profile)} | ({"name"} & set(own)))
    if unknown:
        raise ValueError(f"dataset {name!r}: its settings for the {prof.name!r} profile name {unknown}, which are "
                         f"not profile fields it may change; fix TASKS[{name!r}].settings in course_lib/data/registry.py.")
    return replace(prof, **own) if own else prof


def dataset(name: str) -> Dataset:
    """The record of `name`; an unknown name gets an error listing the valid ones."""
    if name not in TASKS:
        raise ValueError(f"Unknown task {name!r}. Valid tasks: {', '.join(TASKS)} "
                         f"(offline: {', '.join(offline_tasks())}).")
    return TASKS[name]


def offline_tasks() -> list[str]:
    """Names of the datasets that need no download."""
    return [n for n, t in TASKS.items() if t.offline]


def task_categories(name: str) -> list[str]:
    """Valid categories of dataset `name` (for mini-imagenet: class indices into the chosen subset)."""
    return list(dataset(name).categories)


def grid_categories(name: str) -> list[str]:
    """The categories of `name` that the benchmark's full grid runs."""
    d = dataset(name)
    return list(d.grid if d.grid is not None else d.categories)
