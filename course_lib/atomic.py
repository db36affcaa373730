"""Atomic file writes: a file is either its old self or completely new, never half-written.

Everything the course writes for later runs to read back (checkpoints, benchmark cells and tables,
figures) goes through :func:`atomic_write`: the writer fills a temporary file, unique to this process,
in the target's folder, and only a writer that finished renames it onto the target.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary path next to `path`; when the block ends without an error, it replaces
    `path` in one step (``os.replace``), otherwise it is deleted and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` atomically (UTF-8)."""
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
