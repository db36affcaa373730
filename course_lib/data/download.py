"""Put the real datasets under ``$COURSE_DATA`` in the layout that :func:`course_lib.data.load_task` reads.

    python -m course_lib.data.download NAME [NAME ...] [--root DIR] [--archive PATH] [--category CAT ...]
                                       [--imagenet DIR --splits DIR] [--keep-archive] [--no-progress]

``cifar10``, ``mnist`` and ``mnist-c`` are downloaded and checked against the published MD5 (resumed
after an interruption: see :mod:`course_lib.data.fetch`, which also extracts the archives safely).
``mvtec`` sits behind a form: it is never downloaded, ``--archive`` unpacks the archive you fetched.
``mini-imagenet`` has no official archive: it is built from an ImageNet train folder and the Ravi &
Larochelle split CSVs, or an existing copy is checked. A dataset that is already complete is not
downloaded again; a dataset is renamed into place only once complete. See data/README.md.
"""
from __future__ import annotations

import argparse
import csv
import gzip
import os
import re
import shutil
import sys
import tempfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Sequence

from tqdm.auto import tqdm

from .. import config
from .fetch import DownloadError, Resource, extracted, fetch, verify_file
from .folders import MINI_IMAGENET_SPLITS, MINI_IMAGENET_URL, MVTEC_CATEGORIES, MVTEC_URL
from .real import MNIST_C_CORRUPTIONS, MNIST_FILES
from .registry import TASKS, Dataset

__all__ = ["Resource", "Dataset", "DATASETS", "RESOURCES", "download", "build_mini_imagenet",
           "verify_mini_imagenet", "main"]


# Derived from the one record per dataset (course_lib.data.registry); a test points the URLs at a local server.
DATASETS: dict[str, Dataset] = {name: d for name, d in TASKS.items() if not d.offline}
RESOURCES: dict[str, tuple[Resource, ...]] = {name: d.resources for name, d in DATASETS.items()}


# --- what a complete dataset looks like -------------------------------------------------------------------
def _required(name: str, folder: Path, categories: Sequence[str] = MVTEC_CATEGORIES) -> list[Path]:
    """The paths the loader of `name` reads, under the dataset's `folder`."""
    if name == "cifar10":
        return [folder / f for f in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")]
    if name == "mnist":
        return [folder / f for f in MNIST_FILES]
    if name == "mnist-c":
        return [folder / c / f"{split}_{kind}.npy" for c in ("identity", *MNIST_C_CORRUPTIONS)
                for split in ("train", "test") for kind in ("images", "labels")]
    if name == "mvtec":
        return [folder / c / sub for c in categories for sub in ("train/good", "test")]
    raise ValueError(name)


def _missing(name: str, folder: Path, categories: Sequence[str] = MVTEC_CATEGORIES) -> list[Path]:
    return [p for p in _required(name, folder, categories) if not p.exists()]


def _refuse_partial(folder: Path, missing: list[Path]) -> None:
    """A folder that exists but lacks files was not made by this command (it never leaves one): leave it."""
    if folder.exists():
        raise DownloadError(f"{folder} exists but is incomplete ({missing[0]} and {len(missing) - 1} more "
                            "are missing). Move it away or delete it, then rerun.")


def _announce(info: Dataset, what: str, into: Path, size: str | None = None) -> None:
    print(f"{info.name}: {what}\n  size     {size or info.size}\n  licence  {info.licence}\n"
          f"  about    {info.source}\n  into     {into}")


def _mib(n: int | None) -> str | None:
    return None if n is None else f"{n / 2 ** 20:,.0f} MiB" if n >= 2 ** 20 else f"{n / 1024:,.0f} KiB"


def _tidy(path: Path, keep: bool) -> None:
    """Remove a downloaded archive once it is unpacked (and <root>/downloads when it is empty)."""
    if not keep:
        path.unlink(missing_ok=True)
        if not any(path.parent.iterdir()):
            path.parent.rmdir()


# --- one function per kind of dataset ---------------------------------------------------------------------
def _single_archive(info: Dataset, root: Path, archive: Path | None, keep: bool, progress: bool) -> Path:
    """cifar10 and mnist-c: one archive holding the dataset folder (or just its content)."""
    target = root / info.folder
    missing = _missing(info.name, target)
    if not missing:
        print(f"{info.name}: already present and complete in {target}; nothing downloaded.")
        return target
    _refuse_partial(target, missing)
    (res,) = RESOURCES[info.name]
    if archive is not None:
        _announce(info, f"unpacking {archive}", target, _mib(archive.stat().st_size))
        verify_file(archive, md5=res.md5, sha256=res.sha256, remove=False, progress=progress)
        path = archive
    else:
        _announce(info, f"downloading {res.url}", target, _mib(res.size))
        path = fetch(res.url, root / "downloads" / res.filename, md5=res.md5, sha256=res.sha256, size=res.size,
                     progress=progress)
    with extracted(path, root) as tmp:
        src = tmp / info.folder if (tmp / info.folder).is_dir() else tmp
        if _missing(info.name, src):
            raise DownloadError(f"{path} does not hold {info.name} in the expected layout (no "
                                f"{_missing(info.name, src)[0].relative_to(tmp)}).")
        os.replace(src, target)
    if archive is None:
        _tidy(path, keep)
    print(f"{info.name}: ready in {target}")
    return target


def _mnist(info: Dataset, root: Path, keep: bool, progress: bool) -> Path:
    """The four gz files of torchvision's MNIST, each checked, then unzipped into MNIST/raw/."""
    raw = root / info.folder
    if not _missing("mnist", raw):
        print(f"mnist: already present and complete in {raw}; nothing downloaded.")
        return raw
    _announce(info, f"downloading {len(RESOURCES['mnist'])} files from {RESOURCES['mnist'][0].url.rsplit('/', 1)[0]}/",
              raw)
    raw.mkdir(parents=True, exist_ok=True)
    for res in RESOURCES["mnist"]:
        out = raw / res.filename.removesuffix(".gz")
        if out.exists():
            continue
        gz = fetch(res.url, root / "downloads" / res.filename, md5=res.md5, sha256=res.sha256, size=res.size,
                   progress=progress)
        tmp = out.with_name(out.name + ".tmp")
        try:
            with gzip.open(gz) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
        except (OSError, EOFError, zlib.error) as e:
            tmp.unlink(missing_ok=True)
            raise DownloadError(f"{gz} is corrupt ({e}). Delete it and download it again.") from e
        os.replace(tmp, out)
        _tidy(gz, keep)
    print(f"mnist: ready in {raw}")
    return raw


def _mvtec_category(name: str) -> str | None:
    parts = [p for p in PurePosixPath(name).parts if p != "."]
    if parts and parts[0] == "mvtec_anomaly_detection":
        parts = parts[1:]
    return parts[0] if parts else None


def _mvtec(info: Dataset, root: Path, archive: Path | None, categories: Sequence[str] | None,
           progress: bool) -> Path:
    """Unpack the whole MVTec-AD archive or a per-category one into mvtec_anomaly_detection/."""
    base = root / info.folder
    bad = [c for c in categories or () if c not in MVTEC_CATEGORIES]
    if bad:
        raise ValueError(f"mvtec: unknown category {', '.join(bad)}; valid: {', '.join(MVTEC_CATEGORIES)}.")
    stem = archive.name.split(".")[0] if archive is not None else None
    wanted = list(categories or ([stem] if stem in MVTEC_CATEGORIES else MVTEC_CATEGORIES))
    todo = [c for c in wanted if _missing("mvtec", base, [c])]
    if not todo:
        print(f"mvtec: {', '.join(wanted)} already present in {base}; nothing to do.")
        return base
    if archive is None:
        raise DownloadError(
            "MVTec-AD cannot be downloaded automatically: MVTec hands it out through a form (licence "
            "CC BY-NC-SA 4.0, non-commercial use only). Get mvtec_anomaly_detection.tar.xz (about 4.9 GiB) or a "
            f"per-category archive such as bottle.tar.xz from {MVTEC_URL}, then run: "
            f"python -m course_lib.data.download mvtec --archive PATH [--category {todo[0]} ...] [--root {root}]")
    for c in todo:
        _refuse_partial(base / c, _missing("mvtec", base, [c]))
    _announce(info, f"unpacking {', '.join(todo)} from {archive}", base, _mib(archive.stat().st_size))
    res = RESOURCES["mvtec"][0]
    if archive.name == res.filename:
        verify_file(archive, md5=res.md5, sha256=res.sha256, remove=False, progress=progress)
    else:
        verify_file(archive, remove=False, progress=progress)  # prints its sha256: nothing published to compare
    with extracted(archive, root, select=lambda name: _mvtec_category(name) in todo) as tmp:
        src = tmp / info.folder if (tmp / info.folder).is_dir() else tmp
        lacking = [c for c in todo if _missing("mvtec", src, [c])]
        if lacking:
            raise DownloadError(f"{archive} holds no complete {', '.join(lacking)} (each category needs "
                                "train/good/ and test/). Nothing was unpacked.")
        base.mkdir(parents=True, exist_ok=True)
        for c in todo:
            os.replace(src / c, base / c)
    print(f"mvtec: {', '.join(todo)} ready in {base}")
    return base


# --- Mini-ImageNet: built from ImageNet, or an existing copy checked -----------------------------------------
def _read_csv(path: Path) -> list[tuple[str, str]]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if rows and not {"filename", "label"} <= set(rows[0]):
        raise DownloadError(f"{path} must be a CSV with the columns filename,label.")
    return [(r["filename"], r["label"]) for r in rows]


def _split_csvs(folder: Path) -> dict[str, Path]:
    csvs = {s: folder / f"{s}.csv" for s in MINI_IMAGENET_SPLITS if (folder / f"{s}.csv").exists()}
    if "train" not in csvs:
        raise DownloadError(f"{folder / 'train.csv'} not found: the split files (train.csv, val.csv, test.csv, "
                            f"columns filename,label) of Ravi & Larochelle come with {MINI_IMAGENET_URL}.")
    return csvs


def verify_mini_imagenet(base: Path) -> dict[str, int]:
    """Check that every row of ``base/{train,val,test}.csv`` (train.csv required) has its image in
    ``base/images/`` (as the loader, accepting a missing ``.jpg``); returns the rows per split."""
    counts, missing = {}, []
    for split, path in _split_csvs(base).items():
        rows = _read_csv(path)
        counts[split] = len(rows)
        missing += [f for f, _ in rows if not (base / "images" / f).exists()
                    and not (base / "images" / (f + ".jpg")).exists()]
    if missing:
        raise DownloadError(f"{base}: {len(missing)} image(s) listed in the CSVs are missing from "
                            f"{base / 'images'}, e.g. {', '.join(missing[:3])}.")
    return counts


def _imagenet_files(imagenet: Path, wnid: str) -> list[Path]:
    """A class's ImageNet train images ``<wnid>_<n>.JPEG`` in ``imagenet/<wnid>/`` (or flat in `imagenet`),
    sorted by n as a number."""
    files = sorted((imagenet / wnid).glob(f"{wnid}_*")) or sorted(imagenet.glob(f"{wnid}_*"))
    numbered = [(int(m.group(1)), f) for f in files if (m := re.fullmatch(rf"{wnid}_(\d+)\.\w+", f.name))]
    return [f for _, f in sorted(numbered)]


def build_mini_imagenet(imagenet: str | Path, splits: str | Path, dest: str | Path, *, size: int = 84,
                        progress: bool = True) -> dict[str, int]:
    """Build ``dest/images/<filename>`` and copy the split CSVs, as yaoyao-liu/mini-imagenet-tools does:
    the filename ``n0153282900000005.jpg`` with label ``n01532829`` is the 5th (1-based) image of that wnid,
    its ImageNet files ``n01532829_<n>.JPEG`` sorted by n as a number; resized to size x size (no crop)
    with area averaging (the tools use cv2.INTER_AREA), saved as JPEG (quality 95, cv2's default)."""
    from PIL import Image
    imagenet, splits, dest = Path(imagenet), Path(splits), Path(dest)
    csvs = _split_csvs(splits)
    rows = [row for path in csvs.values() for row in _read_csv(path)]
    (dest / "images").mkdir(parents=True)
    cache: dict[str, list[Path]] = {}
    box = getattr(Image, "Resampling", Image).BOX
    for filename, wnid in tqdm(rows, desc="mini-imagenet", unit="img", disable=not progress):
        stem = filename.split(".")[0]
        if not (stem.startswith(wnid) and stem[len(wnid):].isdigit() and int(stem[len(wnid):]) >= 1):
            raise DownloadError(f"{filename!r} (label {wnid}) is not <wnid><1-based index>.jpg as in the split CSVs.")
        files = cache.setdefault(wnid, _imagenet_files(imagenet, wnid))
        k = int(stem[len(wnid):])
        if k > len(files):
            raise DownloadError(f"{filename} needs image {k} of {wnid}, but {imagenet} has {len(files)} "
                                f"({wnid}_<n>.JPEG in {imagenet / wnid}).")
        with Image.open(files[k - 1]) as im:
            im.convert("RGB").resize((size, size), box).save(dest / "images" / filename, "JPEG", quality=95)
    for split, path in csvs.items():
        shutil.copyfile(path, dest / f"{split}.csv")
    return {split: len(_read_csv(path)) for split, path in csvs.items()}


def _mini_imagenet(info: Dataset, root: Path, imagenet: Path | None, splits: Path | None,
                   progress: bool) -> Path:
    base = root / info.folder
    if base.exists():
        counts = verify_mini_imagenet(base)
        print(f"mini-imagenet: checked the existing {base}: every image of "
              f"{', '.join(f'{s}.csv ({n} rows)' for s, n in counts.items())} is there; nothing built.")
        return base
    if imagenet is None or splits is None:
        raise DownloadError(
            "Mini-ImageNet has no official archive. Build it from ImageNet: python -m course_lib.data.download "
            "mini-imagenet --imagenet ILSVRC2012/train --splits DIR (DIR holds train.csv, val.csv, test.csv of "
            f"Ravi & Larochelle, e.g. from {MINI_IMAGENET_URL}); or put an existing copy in {base}.")
    _announce(info, f"building from {imagenet} with the splits in {splits}", base)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
    try:
        counts = build_mini_imagenet(imagenet, splits, tmp / info.folder, progress=progress)
        os.replace(tmp / info.folder, base)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"mini-imagenet: built {sum(counts.values())} images ({', '.join(f'{s} {n}' for s, n in counts.items())}) "
          f"in {base}")
    return base


# --- the command ------------------------------------------------------------------------------------------
def download(name: str, *, root: str | Path | None = None, archive: str | Path | None = None,
             categories: Sequence[str] | None = None, imagenet: str | Path | None = None,
             splits: str | Path | None = None, keep_archive: bool = False, progress: bool = True) -> Path:
    """Put dataset `name` under `root` (default :func:`course_lib.config.data_root`); returns its folder.

    archive: a local copy of the archive instead of downloading (cifar10, mnist-c; required for mvtec).
    categories: mvtec only, the categories to unpack (default: the one an archive ``<category>.tar.xz`` is
    named after, else all 15).
    imagenet, splits: mini-imagenet only, see :func:`build_mini_imagenet`.
    keep_archive: keep the downloaded archive in <root>/downloads/ after unpacking it.
    """
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; valid: {', '.join(DATASETS)}.")
    for option, value, allowed in (("archive", archive, ("cifar10", "mnist-c", "mvtec")),
                                   ("categories", categories, ("mvtec",)),
                                   ("imagenet", imagenet, ("mini-imagenet",)), ("splits", splits, ("mini-imagenet",))):
        if value is not None and name not in allowed:
            raise ValueError(f"{name}: {option} applies only to {', '.join(allowed)}.")
    if DATASETS[name].reads:                       # built from another dataset's files: fetch those
        return download(DATASETS[name].reads, root=root, keep_archive=keep_archive, progress=progress)
    info = DATASETS[name]
    root = Path(root).expanduser() if root is not None else config.data_root()
    root.mkdir(parents=True, exist_ok=True)
    archive = Path(archive).expanduser() if archive is not None else None
    if archive is not None and not archive.is_file():
        raise DownloadError(f"{name}: the archive {archive} does not exist.")
    if name == "mnist":
        return _mnist(info, root, keep_archive, progress)
    if name == "mvtec":
        return _mvtec(info, root, archive, categories, progress)
    if name == "mini-imagenet":
        return _mini_imagenet(info, root, Path(imagenet) if imagenet else None, Path(splits) if splits else None,
                              progress)
    return _single_archive(info, root, archive, keep_archive, progress)


def main(argv: Sequence[str] | None = None) -> int:
    table = "\n".join(f"  {d.name:<14} {d.size}; {d.licence}" for d in DATASETS.values())
    p = argparse.ArgumentParser(prog="python -m course_lib.data.download",
                                formatter_class=argparse.RawTextHelpFormatter,
                                description=f"Put real datasets under $COURSE_DATA (now {config.data_root()}).\n"
                                            f"{table}\nSee data/README.md.")
    p.add_argument("names", nargs="+", metavar="NAME", help=", ".join(DATASETS))
    p.add_argument("--root", type=Path, help="where the datasets go (default $COURSE_DATA)")
    p.add_argument("--archive", type=Path, help="a local archive to unpack (mvtec: required; cifar10, mnist-c)")
    p.add_argument("--category", nargs="+", dest="categories", metavar="CAT", help="mvtec: the categories to unpack")
    p.add_argument("--imagenet", type=Path, help="mini-imagenet: the ImageNet train folder (<wnid>/ subfolders)")
    p.add_argument("--splits", type=Path, help="mini-imagenet: the folder with train.csv, val.csv, test.csv")
    p.add_argument("--keep-archive", action="store_true", help="keep downloaded archives in <root>/downloads/")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    unknown = [n for n in args.names if n not in DATASETS]
    if unknown:
        print(f"error: unknown dataset {', '.join(map(repr, unknown))}; valid: {', '.join(DATASETS)} "
              "(digits, digits-c, textures, photos and photos-64 need no download).", file=sys.stderr)
        return 2
    if (args.archive or args.categories) and len(args.names) != 1:
        print("error: --archive and --category go with a single NAME.", file=sys.stderr)
        return 2
    failed = 0
    for name in args.names:
        try:
            download(name, root=args.root, archive=args.archive, categories=args.categories, imagenet=args.imagenet,
                     splits=args.splits, keep_archive=args.keep_archive, progress=not args.no_progress)
        except (DownloadError, ValueError) as e:
            print(f"error: {name}: {e}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
