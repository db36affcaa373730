"""The repository's committed results, for the notebooks that read one, in a clone or on Colab.

On Colab, course_lib is installed with pip and the repository is not there: a notebook then reads the
main branch's copy of the file, downloaded once into the user cache.
"""
from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from course_lib.config import cache_root

BRANCH = "main"


def repository_url(pyproject: Path | None = None) -> str:
    """https://github.com/OWNER/NAME: from `pyproject` (``[project.urls] Repository``) where given and present,
    else from the installed package's metadata."""
    if pyproject is not None and pyproject.exists():
        m = re.search(r"^\[project\.urls\][^\[]*?^Repository\s*=\s*\"([^\"]+)\"", pyproject.read_text(), re.M | re.S)
        if m:
            return m.group(1).rstrip("/")
    for entry in metadata.metadata("course_lib").get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        if label.strip() == "Repository":
            return url.strip().rstrip("/")
    raise RuntimeError("no repository URL: add Repository = \"https://github.com/OWNER/NAME\" under "
                       "[project.urls] in pyproject.toml.")


def slug(url: str | None = None) -> str:
    """OWNER/NAME of a GitHub repository URL (default: the installed package's)."""
    url = url or repository_url()
    m = re.fullmatch(r"https://github\.com/([^/]+/[^/]+)", url)
    if not m:
        raise RuntimeError(f"the repository URL {url!r} is not https://github.com/OWNER/NAME, "
                           "which Colab and Binder need.")
    return m.group(1)


def raw_url() -> str:
    """Where the main branch's files are served as they are (for results/ outside a clone)."""
    return f"https://raw.githubusercontent.com/{slug()}/{BRANCH}"


def results_file(name: str, start: Path | None = None) -> Path:
    """A file of the repository's ``results/`` folder (e.g. ``"benchmark.csv"``). In a clone, its own copy:
    ``results/NAME`` in the current directory or its parent (the repository root, or ``notebooks/``).
    Elsewhere (Colab installs course_lib with pip), the main branch's copy, downloaded once into the user cache."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, here.parent):
        local = folder / "results" / name
        if local.is_file():
            return local
    cached = cache_root() / "results-main" / name
    if not cached.is_file():
        from course_lib.data.fetch import DownloadError, fetch
        try:
            fetch(f"{raw_url()}/results/{name}", cached, progress=False, retries=1, timeout=30)
        except DownloadError as err:
            raise FileNotFoundError(f"results/{name} is neither in {here}/results nor in {here.parent}/results, "
                                    f"and could not be downloaded: {err} Clone the repository "
                                    f"({repository_url()}), or connect to the internet.") from None
    return cached
