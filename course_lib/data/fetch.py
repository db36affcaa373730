"""Download a file with a progress bar, resuming and checksums; extract an archive without letting it
write outside its destination. The generic core of :mod:`course_lib.data.download`.

:func:`fetch` writes to ``<dest>.part`` first and continues it with an HTTP Range request after an
interruption (from byte 0 when the server ignores Range), then checks the published MD5 or SHA-256.
:func:`extracted` and :func:`safe_extract` check every member of a tar or zip archive before anything
is extracted (no absolute paths, no ``..``, no links leaving the destination) and extract into a
temporary folder next to the destination: a half-extracted archive is never taken for a good one.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import lzma
import os
import re
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Callable, Iterator
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from tqdm.auto import tqdm


@dataclass(frozen=True)
class Resource:
    """One file to fetch. With neither md5 nor sha256 there is no published checksum: the sha256 of
    what was downloaded is printed instead."""

    url: str
    filename: str              # its name under <root>/downloads/ while it is fetched
    md5: str | None = None     # the published MD5
    sha256: str | None = None  # the published SHA-256
    size: int | None = None    # bytes, for the progress bar when the server sends no Content-Length


__all__ = ["DownloadError", "ChecksumError", "UnsafeArchiveError", "fetch", "file_digests", "verify_file",
           "extracted", "safe_extract"]


class DownloadError(RuntimeError):
    """A download, a checksum or an archive failed; the message says what to do next."""


class ChecksumError(DownloadError):
    """The file's digest is not the published one."""


class UnsafeArchiveError(DownloadError):
    """An archive member would land outside the destination (``..``, an absolute path, a link)."""


# --- fetch: download with a progress bar, resume, checksum ---------------------------------------------------
def file_digests(path: Path, *, progress: bool = False) -> tuple[str, str]:
    """(md5, sha256) of a file, hex, in one pass."""
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as fh, tqdm(total=os.path.getsize(path), unit="B", unit_scale=True, unit_divisor=1024,
                                      desc=f"checking {Path(path).name}", disable=not progress) as bar:
        while chunk := fh.read(1 << 20):
            md5.update(chunk)
            sha.update(chunk)
            bar.update(len(chunk))
    return md5.hexdigest(), sha.hexdigest()


def verify_file(path: Path, *, md5: str | None = None, sha256: str | None = None, url: str | None = None,
                remove: bool = True, progress: bool = False) -> str:
    """Check `path` against the published digests; returns its sha256. A mismatch raises ChecksumError
    (and removes the file when `remove`). With no published digest, prints the file's sha256."""
    got_md5, got_sha = file_digests(path, progress=progress)
    for algo, want, got in (("md5", md5, got_md5), ("sha256", sha256, got_sha)):
        if want is not None and want.lower() != got:
            if remove:
                Path(path).unlink()
            raise ChecksumError(
                f"{Path(path).name}{f' from {url}' if url else ''} is not the published file: expected {algo} "
                f"{want.lower()}, got {got}. " + ("It was removed; rerun to download it again." if remove else
                                                  "Check that it is the right file, or fetch it again."))
    if md5 is None and sha256 is None:
        print(f"{Path(path).name}: no published checksum to compare with; its sha256 is {got_sha}.")
    return got_sha


def fetch(url: str, dest: str | Path, *, md5: str | None = None, sha256: str | None = None,
          size: int | None = None, progress: bool = True, retries: int = 3, timeout: float = 60.0) -> Path:
    """Download `url` to `dest` and check it. Bytes go to ``<dest>.part`` first: a later call continues it
    with an HTTP Range request (from byte 0 when the server ignores Range), and a connection dropped
    mid-transfer is resumed up to `retries` times. A `dest` that already exists and matches is kept."""
    dest = Path(dest)
    if dest.exists():
        try:
            verify_file(dest, md5=md5, sha256=sha256, url=url, progress=progress)
            print(f"{dest.name}: already downloaded and checked; not downloaded again.")
            return dest
        except ChecksumError as e:
            print(f"{e} Downloading it again.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        if _download_once(url, part, size=size, progress=progress, timeout=timeout):
            break
        if attempt < retries:
            print(f"{url}: the connection dropped at byte {part.stat().st_size if part.exists() else 0}; "
                  f"resuming ({attempt + 1}/{retries}).")
    else:
        raise DownloadError(f"The download of {url} was interrupted {retries + 1} times. Rerun the same command: "
                            f"it resumes from {part}.")
    os.replace(part, dest)
    verify_file(dest, md5=md5, sha256=sha256, url=url, progress=progress)
    return dest


def _download_once(url: str, part: Path, *, size: int | None, progress: bool, timeout: float) -> bool:
    """Append the rest of `url` to `part`. True when complete, False when the connection dropped."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "course_lib-download", **({"Range": f"bytes={offset}-"} if offset else {})}
    try:
        resp = urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as e:
        if e.code == 416 and offset:  # Range Not Satisfiable: nothing past what `part` holds; the checksum decides
            return True
        raise DownloadError(f"{url} answered HTTP {e.code} ({e.reason}).") from e
    except (URLError, OSError, http.client.HTTPException) as e:
        raise DownloadError(
            f"Could not reach {url} ({getattr(e, 'reason', e)}). This machine may be offline or the host "
            f"down. Rerun the same command later: it resumes from the {offset} bytes kept in {part}.") from e
    with resp:
        start = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
        if offset and (resp.status != 206 or not start or int(start.group(1)) != offset):
            print(f"{url}: the server does not resume downloads; starting again from byte 0.")
            if resp.status == 206:  # a range we did not ask for: ask again for the whole file
                part.unlink()
                return False
            offset = 0
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length else size
        received = 0
        with open(part, "ab" if offset else "wb") as fh, \
                tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                     desc=part.name[:-len(".part")], disable=not progress) as bar:
            try:
                while chunk := resp.read(1 << 20):
                    fh.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException):  # reset, timeout, IncompleteRead
                return False
    return length is None or received >= int(length)


# --- safe extraction --------------------------------------------------------------------------------------
def _walk(start: list[str], rel: str, links: set[str]) -> list[str] | None:
    """Resolve the relative path `rel` from the folder `start` (components under the destination) on paper;
    None when it leaves the destination or goes through a symlink of the archive (where paper and disk
    could disagree)."""
    parts = list(start)
    for p in rel.replace("\\", "/").split("/"):
        if p in ("", "."):
            continue
        if parts and "/".join(parts) in links:
            return None
        if p == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(p)
    return parts


def _is_absolute(name: str) -> bool:
    return name.startswith(("/", "\\")) or bool(PureWindowsPath(name).drive)


def _check_members(archive: Path, members: list[tuple[str, str, str | None]]) -> None:
    """members: (name, kind in {file, dir, symlink, hardlink, other}, link target). Raises on the first
    unsafe one, before anything is extracted."""
    links = {"/".join(_walk([], n, set()) or []) for n, kind, _ in members if kind == "symlink"}
    for name, kind, target in members:
        parts = None if _is_absolute(name) else _walk([], name, links)
        why = ("an absolute path" if _is_absolute(name) else "a path outside the destination" if not parts
               else "a device or pipe" if kind == "other" else None)
        if why is None and kind in ("symlink", "hardlink"):
            base = parts[:-1] if kind == "symlink" else []  # a hardlink's target is relative to the archive root
            if _is_absolute(target) or _walk(base, target, links) is None:
                why = f"a {kind} to {target!r}, outside the destination"
        if why:
            raise UnsafeArchiveError(f"{archive}: refused, the member {name!r} is {why}. Nothing was extracted "
                                     "from it; get the archive from the official source.")


def _extract_into(archive: Path, dest: Path, select: Callable[[str], bool] | None) -> None:
    keep = select or (lambda name: True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                infos = zf.infolist()
                _check_members(archive, [(i.filename, "dir" if i.is_dir() else "file", None) for i in infos])
                for info in infos:
                    if keep(info.filename):
                        zf.extract(info, dest)
            return
        with tarfile.open(archive, "r:*") as tf:
            members = tf.getmembers()
            _check_members(archive, [(m.name, "file" if m.isfile() else "dir" if m.isdir() else "symlink"
                                      if m.issym() else "hardlink" if m.islnk() else "other", m.linkname)
                                     for m in members])
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # a second guard where it exists
            tf.extractall(dest, members=[m for m in members if keep(m.name)], **extra)
    except getattr(tarfile, "FilterError", ()) as e:  # before TarError, its base: not a corrupt archive
        raise UnsafeArchiveError(f"{archive}: refused by tarfile's data filter ({e}).") from e
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile) as e:
        raise DownloadError(f"{archive} is corrupt or not a tar/zip archive ({type(e).__name__}: {e}). "
                            "Delete it and download it again.") from e


@contextmanager
def extracted(archive: str | Path, parent: str | Path, *,
              select: Callable[[str], bool] | None = None) -> Iterator[Path]:
    """Extract `archive` (tar, tar.gz, tar.xz or zip) into a new temporary folder inside `parent` and yield
    it; move what you need out of it (``os.replace``), the rest is removed. Every member is checked
    first; `select(name)` limits what is extracted."""
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=parent))
    try:
        _extract_into(Path(archive), tmp, select)
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def safe_extract(archive: str | Path, dest: str | Path) -> Path:
    """Extract `archive` so that its content becomes the new folder `dest` (renamed into place at the end)."""
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} exists already; move it away first.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with extracted(archive, dest.parent) as tmp:
        os.replace(tmp, dest)
    return dest
