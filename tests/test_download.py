"""The download command against a local HTTP server (127.0.0.1, started here) serving small archives
written in each dataset's real on-disk format; no real host is ever contacted.

The server honours Range requests (or ignores them, in one mode) and can drop a connection part-way, so
resumption, restart and checksum handling are checked on real HTTP; the unpacked datasets are then read
by the course's own loaders.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import shutil
import socket
import struct
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from course_lib.config import profile
from course_lib.data import CORRUPTIONS, load_task
from course_lib.data import download as dl
from course_lib.data.fetch import ChecksumError, DownloadError, UnsafeArchiveError, fetch, safe_extract

SMOKE = profile("smoke")


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# --- archives in the real formats ---------------------------------------------------------------------------
def _tar(members: dict[str, bytes | tuple[str, bytes]], mode: str = "w:gz") -> bytes:
    """members, in order: name -> content, or name -> (link target, tarfile.SYMTYPE or LNKTYPE)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(content, tuple):
                info.linkname, info.type = content
                tf.addfile(info)
            else:
                info.size = len(content)
                tf.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return buf.getvalue()


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def _cifar_tarball() -> bytes:
    """cifar-10-batches-py/ as in the official tarball: pickled dicts, rows of R, G, B planes."""
    def batch(n_per_class: int) -> bytes:
        labels = np.repeat(np.arange(10), n_per_class)
        img = np.zeros((len(labels), 3, 32, 32), np.uint8)
        img[:, 0] = (10 + 20 * labels)[:, None, None]   # red = the class
        img[:, 2] = 200
        return pickle.dumps({"data": img.reshape(len(labels), 3072), "labels": labels.tolist()})
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    files = {f"cifar-10-batches-py/data_batch_{i}": batch(1) for i in range(1, 6)}
    files["cifar-10-batches-py/test_batch"] = batch(2)
    files["cifar-10-batches-py/batches.meta"] = pickle.dumps({"label_names": names})
    return _tar(files)


@pytest.fixture()
def cifar(server, monkeypatch):
    """The tiny CIFAR-10 tarball served locally, and torchvision's per-file md5 check relaxed (the fixture
    cannot match the real release's batch checksums; the archive's md5 is still checked by the downloader)."""
    data = _cifar_tarball()
    url = server.put("cifar-10-python.tar.gz", data)
    monkeypatch.setitem(dl.RESOURCES, "cifar10", (dl.Resource(url, "cifar-10-python.tar.gz", md5=_md5(data)),))
    import torchvision.datasets.cifar as tv_cifar
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))
    return data


# --- downloads ----------------------------------------------------------------------------------------------
def test_cifar10_download_unpacks_for_the_loader_and_is_not_fetched_twice(cifar, server, tmp_path, capsys):
    root = tmp_path / "data"
    assert dl.main(["cifar10", "--root", str(root), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "licence" in out and "Krizhevsky" in out and str(root / "cifar-10-batches-py") in out
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py"]   # archive and temp folder gone
    task = load_task("cifar10", "cat", profile=SMOKE, root=root)
    assert len(task.train) == 5 and np.allclose(task.train[:, 0], 70 / 255 * 2 - 1, atol=1e-6)  # cat = 3
    assert len(server.hits) == 1

    assert dl.main(["cifar10", "--root", str(root), "--no-progress"]) == 0
    assert "already present" in capsys.readouterr().out and len(server.hits) == 1   # no second request

    # A kept archive is checked and reused, not downloaded again.
    other = tmp_path / "other"
    dl.download("cifar10", root=other, keep_archive=True, progress=False)
    assert (other / "downloads" / "cifar-10-python.tar.gz").read_bytes() == cifar and len(server.hits) == 2
    shutil.rmtree(other / "cifar-10-batches-py")
    dl.download("cifar10", root=other, keep_archive=True, progress=False)
    assert "already downloaded and checked" in capsys.readouterr().out and len(server.hits) == 2


def test_checksum_mismatch_is_refused_and_the_file_removed(server, tmp_path):
    data = b"not the real file" * 100
    url = server.put("f.bin", data)
    dest = tmp_path / "out" / "f.bin"
    wrong = "0" * 32
    with pytest.raises(ChecksumError) as err:
        fetch(url, dest, md5=wrong, progress=False)
    assert wrong in str(err.value) and _md5(data) in str(err.value) and url in str(err.value)
    assert not dest.exists() and not dest.with_name("f.bin.part").exists()


def test_dropped_connection_resumes_with_range(server, tmp_path):
    data = bytes(range(256)) * 400
    url = server.put("big.bin", data)
    server.cut["big.bin"] = [30_000]        # the first response stops after 30000 of 102400 bytes
    dest = fetch(url, tmp_path / "big.bin", md5=_md5(data))   # with the progress bar
    assert dest.read_bytes() == data
    assert server.hits == [("big.bin", None), ("big.bin", "bytes=30000-")]
    server.cut["big.bin"] = [10, 10]        # dropped every time: an error that says a rerun resumes
    with pytest.raises(DownloadError, match=r"interrupted 2 times\. Rerun .* resumes from .*again\.bin\.part"):
        fetch(url, tmp_path / "again.bin", md5=_md5(data), progress=False, retries=1)


@pytest.mark.parametrize("kept", [1000, 102400])   # part-way, and all of it already there (HTTP 416)
def test_existing_part_file_is_continued(server, tmp_path, kept):
    data = bytes(range(256)) * 400
    url = server.put("big.bin", data)
    (tmp_path / "big.bin.part").write_bytes(data[:kept])
    dest = fetch(url, tmp_path / "big.bin", md5=_md5(data), progress=False)
    assert dest.read_bytes() == data and server.hits == [("big.bin", f"bytes={kept}-")]


def test_server_ignoring_range_restarts_from_zero(server, tmp_path, capsys):
    data = bytes(range(256)) * 400
    url = server.put("big.bin", data)
    server.honour_range = False
    (tmp_path / "big.bin.part").write_bytes(data[:5000])
    dest = fetch(url, tmp_path / "big.bin", md5=_md5(data), progress=False)
    assert dest.read_bytes() == data                                   # not 5000 bytes + the whole file
    assert server.hits == [("big.bin", "bytes=5000-")] and "starting again" in capsys.readouterr().out


def test_network_error_names_the_url_and_says_a_rerun_resumes(tmp_path):
    with socket.socket() as s:              # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/cifar-10-python.tar.gz"
    with pytest.raises(DownloadError, match=r"(?s)127\.0\.0\.1:\d+/cifar-10-python.tar.gz.*offline.*resumes"):
        fetch(url, tmp_path / "x.tar.gz", progress=False, timeout=5)


def test_mnist_and_mnist_c_download_for_their_loaders(server, tmp_path, monkeypatch, capsys):
    root = tmp_path / "data"
    resources = []
    for split, n in (("train", 4), ("t10k", 3)):   # idx-ubyte as torchvision reads it, gzipped
        labels = np.repeat(np.arange(10), n).astype(np.uint8)
        images = (np.full((len(labels), 28, 28), 10, np.uint8) + 20 * labels[:, None, None]).astype(np.uint8)
        for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
            raw = bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}i", *arr.shape) + arr.tobytes()
            name = f"{split}-{kind}-ubyte.gz"
            gz = gzip.compress(raw)
            resources.append(dl.Resource(server.put(name, gz), name, md5=_md5(gz)))
    monkeypatch.setitem(dl.RESOURCES, "mnist", tuple(resources))
    dl.download("mnist", root=root, progress=False)
    task = load_task("mnist", 3, profile=SMOKE, root=root, image_size=28)
    assert len(task.train) == 4 and np.allclose(task.train[:, 0, 5, 5], 70 / 255 * 2 - 1, atol=1e-6)
    assert not (root / "downloads").exists()

    files = {}
    for j, name in enumerate(("identity",) + CORRUPTIONS):   # mnist_c/<corruption>/{train,test}_*.npy
        for split, n in (("train", 20), ("test", 30)):
            files[f"mnist_c/{name}/{split}_images.npy"] = _npy(np.full((n, 28, 28, 1), 5 * j, np.uint8))
            files[f"mnist_c/{name}/{split}_labels.npy"] = _npy(np.arange(n) % 10)
    data = _zip(files)
    monkeypatch.setitem(dl.RESOURCES, "mnist-c", (dl.Resource(server.put("mnist_c.zip", data), "mnist_c.zip"),))
    dl.download("mnist-c", root=root, progress=False)
    out = capsys.readouterr().out
    assert "no published checksum" in out and hashlib.sha256(data).hexdigest() in out
    task = load_task("mnist-c", "fog", profile=SMOKE, root=root, image_size=28)
    assert set(task.kinds) == {"normal", "fog"} and len(task.train) == 20


def test_mnist_table_matches_torchvision():
    from torchvision.datasets import MNIST
    assert [(r.filename, r.md5) for r in dl.RESOURCES["mnist"]] == [tuple(r) for r in MNIST.resources]
    assert all(r.url.startswith(MNIST.mirrors[0]) for r in dl.RESOURCES["mnist"])


# --- safe extraction -------------------------------------------------------------------------------------------
EVIL = {  # each also holds a harmless member, which must not be extracted either
    "parent": {"ok/a.txt": b"fine", "../outside/evil.txt": b"x"},
    "absolute": {"ok/a.txt": b"fine", "{outside}/evil.txt": b"x"},
    "symlink-out": {"ok/a.txt": b"fine", "ok/link": ("../../outside", tarfile.SYMTYPE)},
    "symlink-abs": {"ok/a.txt": b"fine", "ok/link": ("{outside}", tarfile.SYMTYPE)},
    "hardlink-out": {"ok/a.txt": b"fine", "ok/hard": ("../outside/secret", tarfile.LNKTYPE)},
    # s -> "." is harmless, but "s/.." then resolves to the temporary folder's parent on disk
    "through-link": {"ok/a.txt": b"fine", "s": (".", tarfile.SYMTYPE), "s/../evil.txt": b"x"},
}


@pytest.mark.parametrize("case", list(EVIL))
def test_escaping_tar_members_are_refused_and_nothing_is_written(tmp_path, case):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("keep")
    members = {k.format(outside=outside): (v[0].format(outside=outside), v[1]) if isinstance(v, tuple) else v
               for k, v in EVIL[case].items()}
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(_tar(members))
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(UnsafeArchiveError, match=r"refused, the member .* Nothing was extracted"):
        safe_extract(archive, root / "dest")
    assert list(root.iterdir()) == []                                   # not even ok/a.txt, no temp folder
    assert sorted(p.name for p in outside.iterdir()) == ["secret"] and (outside / "secret").read_text() == "keep"
    assert not (tmp_path / "evil.txt").exists()


def test_zip_with_parent_member_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    archive.write_bytes(_zip({"mnist_c/identity/a.npy": b"fine", "../evil.txt": b"x"}))
    (tmp_path / "root").mkdir()
    with pytest.raises(UnsafeArchiveError, match=r"'\.\./evil\.txt'"):
        safe_extract(archive, tmp_path / "root" / "dest")
    assert list((tmp_path / "root").iterdir()) == [] and not (tmp_path / "evil.txt").exists()


def test_link_inside_the_destination_is_kept(tmp_path):
    archive = tmp_path / "ok.tar"
    archive.write_bytes(_tar({"a/b.txt": b"hi", "a/c.txt": ("b.txt", tarfile.SYMTYPE)}, mode="w"))
    dest = safe_extract(archive, tmp_path / "dest")
    assert (dest / "a" / "c.txt").read_bytes() == b"hi"


def test_corrupt_archive_gives_a_clear_error(tmp_path):
    good = _cifar_tarball()
    for name, data in (("cut.tar.gz", good[:len(good) // 2]), ("noise.tar.gz", bytes(range(256)) * 8)):
        archive = tmp_path / name
        archive.write_bytes(data)
        with pytest.raises(DownloadError, match=rf"{name} is corrupt or not a tar/zip archive"):
            safe_extract(archive, tmp_path / "dest")
        assert not (tmp_path / "dest").exists() and not list(tmp_path.glob(".extract-*"))


# --- MVTec-AD: only from an archive the user fetched ---------------------------------------------------------
def _mvtec_bottle() -> bytes:
    rng = np.random.default_rng(0)
    files = {}
    for i in range(3):
        files[f"bottle/train/good/{i:03d}.png"] = _png(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    files["bottle/test/good/000.png"] = _png(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    files["bottle/test/broken_large/000.png"] = _png(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    mask = np.zeros((32, 32), np.uint8)
    mask[8:16, 8:16] = 255
    files["bottle/ground_truth/broken_large/000_mask.png"] = _png(mask)
    return _tar(files, mode="w:xz")


def test_mvtec_per_category_archive_unpacks_for_the_loader(tmp_path, capsys):
    root = tmp_path / "data"
    assert dl.main(["mvtec", "--root", str(root), "--no-progress"]) == 1       # no archive: where to get it
    err = capsys.readouterr().err
    assert "mvtec.com" in err and "--archive" in err and "non-commercial" in err
    archive = tmp_path / "bottle.tar.xz"
    data = _mvtec_bottle()
    archive.write_bytes(data)
    assert dl.main(["mvtec", "--root", str(root), "--archive", str(archive), "--no-progress"]) == 0
    assert hashlib.sha256(data).hexdigest() in capsys.readouterr().out         # no published checksum: reported
    task = load_task("mvtec", "bottle", profile=SMOKE, root=root, image_size=16)
    assert len(task.train) == 3 and sorted(task.kinds) == ["broken_large", "normal"]
    assert int(task.masks.sum()) == 16                                         # the 8x8 defect at half size
    assert archive.exists() and sorted(p.name for p in root.iterdir()) == ["mvtec_anomaly_detection"]
    assert dl.main(["mvtec", "--root", str(root), "--archive", str(archive), "--no-progress"]) == 0
    assert "already present" in capsys.readouterr().out


def test_mvtec_archive_without_the_category_or_corrupt(tmp_path, capsys):
    archive = tmp_path / "bottle.tar.xz"
    archive.write_bytes(_mvtec_bottle())
    root = tmp_path / "data"
    assert dl.main(["mvtec", "--root", str(root), "--archive", str(archive), "--category", "cable"]) == 1
    assert "holds no complete cable" in capsys.readouterr().err
    archive.write_bytes(_mvtec_bottle()[:300])
    with pytest.raises(DownloadError, match="corrupt"):
        dl.download("mvtec", root=root, archive=archive, progress=False)
    assert not (root / "mvtec_anomaly_detection").exists() and not list(root.glob(".extract-*"))


# --- Mini-ImageNet: built from an ImageNet folder, or checked ---------------------------------------------------
def test_mini_imagenet_built_from_imagenet_then_checked(tmp_path, capsys):
    imagenet, splits, root = tmp_path / "imagenet", tmp_path / "splits", tmp_path / "data"
    wnids = ("n01532829", "n01558993")
    numbers = (1, 2, 10, 11, 3)             # numeric order 1, 2, 3, 10, 11; by name _1, _10, _11, _2, _3
    for c, wnid in enumerate(wnids):
        (imagenet / wnid).mkdir(parents=True)
        for n in numbers:
            img = np.zeros((30, 40, 3), np.uint8)
            img[..., c] = 10 * n             # channel = class, value = the ImageNet number
            Image.fromarray(img).save(imagenet / wnid / f"{wnid}_{n}.JPEG", quality=100)
    splits.mkdir()
    (splits / "train.csv").write_text("filename,label\n" + "".join(
        f"{w}{k:08d}.jpg,{w}\n" for w in wnids for k in range(1, 6)))
    (splits / "val.csv").write_text(f"filename,label\n{wnids[1]}00000004.jpg,{wnids[1]}\n")
    assert dl.main(["mini-imagenet", "--root", str(root), "--imagenet", str(imagenet), "--splits", str(splits),
                    "--no-progress"]) == 0
    base = root / "mini-imagenet"
    with Image.open(base / "images" / f"{wnids[0]}00000004.jpg") as im:  # 4th by number = _10, not _2
        assert im.size == (84, 84) and abs(np.asarray(im)[..., 0].mean() - 100) < 3
    with Image.open(base / "images" / f"{wnids[1]}00000003.jpg") as im:  # 3rd by number = _3
        assert abs(np.asarray(im)[..., 1].mean() - 30) < 3
    assert (base / "val.csv").read_text() == (splits / "val.csv").read_text()
    task = load_task("mini-imagenet", 1, profile=SMOKE, root=root, image_size=16)
    assert set(task.kinds) == {"normal", wnids[0]}

    assert dl.main(["mini-imagenet", "--root", str(root)]) == 0
    assert "train.csv (10 rows)" in capsys.readouterr().out
    (base / "images" / f"{wnids[1]}00000002.jpg").unlink()
    assert dl.main(["mini-imagenet", "--root", str(root)]) == 1
    assert f"{wnids[1]}00000002.jpg" in capsys.readouterr().err


# --- the command line ----------------------------------------------------------------------------------------
def test_cli_unknown_name_lists_the_valid_ones(tmp_path, capsys):
    assert dl.main(["cifar10", "imagenet", "--root", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    assert "'imagenet'" in err and "cifar10, mnist, mnist-corrupted, mnist-c, mvtec, mini-imagenet" in err
    assert list(tmp_path.iterdir()) == []                                      # nothing was started
    with pytest.raises(ValueError, match="valid: cifar10, mnist"):
        dl.download("cifar", root=tmp_path)


def test_on_colab_load_task_downloads_what_downloads_itself_and_says_its_size_first(cifar, server, tmp_path,
                                                                                    monkeypatch, capsys):
    import sys
    import types
    root = tmp_path / "data"
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):   # elsewhere: never unasked
        load_task("cifar10", "cat", profile=SMOKE, root=root)
    assert not server.hits
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    task = load_task("cifar10", "cat", profile=SMOKE, root=root)
    out = capsys.readouterr().out
    assert out.index("size") < out.index("ready in") and "licence" in out   # announced before it starts
    assert len(task.train) == 5 and len(server.hits) == 1
    load_task("cifar10", "dog", profile=SMOKE, root=root)
    assert len(server.hits) == 1                                           # once on disk, never again
    with pytest.raises(FileNotFoundError, match="mvtec"):                  # behind a form: still a clear error
        load_task("mvtec", "bottle", profile=SMOKE, root=root)
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):    # download=False wins on Colab too
        load_task("cifar10", "cat", profile=SMOKE, root=tmp_path / "elsewhere", download=False)
