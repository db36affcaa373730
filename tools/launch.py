"""Where the course lives, and the launch badges built from it.

The repository's address is written once, in ``pyproject.toml`` (``[project.urls] Repository``). Each
notebook's header carries an "Open in Colab" and a Binder badge for its own path on the main branch, and
its first code cell installs ``course_lib`` from the repository on Colab (only there, keeping Colab's torch,
torchvision and ipywidgets). Both are generated here:

    python -m tools.launch          # rewrite the badges and the install line of every notebook,
                                    # and the launch links of the README's course map
    python -m tools.launch --check  # exit 1 if any of them is not the generated one
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from urllib.parse import quote

from course_lib.atomic import write_text_atomic
from course_lib.course.committed import BRANCH, repository_url as _installed_repository_url, slug as _slug_of

REPO = Path(__file__).resolve().parent.parent   # the checkout these tools live in


def repository_url() -> str:
    """The repository named in this checkout's pyproject.toml (a fork's own address, once it edits it)."""
    return _installed_repository_url(REPO / "pyproject.toml")


def slug() -> str:
    return _slug_of(repository_url())


COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
BINDER_BADGE = "https://mybinder.org/badge_logo.svg"
_BADGE_LINE = re.compile(r"^\[!\[(?:Open In Colab|Binder)\]\(.*\)\]\(.*\)[ \t]*$", re.M)
# the Colab block of every notebook's first code cell: from its comment down to `import course_lib`
_COLAB_BLOCK = re.compile(r"^# On Colab.*?(?=^import course_lib$)", re.M | re.S)
# what Colab already has: never reinstalled (its torch matches its CUDA; its ipywidgets, its widget manager)
COLAB_PREINSTALLED = ("torch", "torchvision", "ipywidgets", "numpy", "scipy", "scikit-learn", "scikit-image",
                      "matplotlib", "seaborn", "pandas", "tqdm", "pillow")


def colab_url(notebook: str) -> str:
    """`notebook` is its path in the repository, e.g. notebooks/00_setup_and_data.ipynb."""
    return f"https://colab.research.google.com/github/{slug()}/blob/{BRANCH}/{notebook}"


def binder_url(notebook: str) -> str:
    return f"https://mybinder.org/v2/gh/{slug()}/{BRANCH}?labpath={quote(notebook, safe='')}"


def badges(notebook: str) -> str:
    """The two badge lines of a notebook's header."""
    return (f"[![Open In Colab]({COLAB_BADGE})]({colab_url(notebook)})\n"
            f"[![Binder]({BINDER_BADGE})]({binder_url(notebook)})")


def install_spec() -> str:
    return f'"course_lib @ git+{repository_url()}"'


def colab_missing() -> list[str]:
    """course_lib's requirements (pyproject.toml) that Colab does not ship, e.g. ['pyod>=1.1']."""
    text = (REPO / "pyproject.toml").read_text()
    block = re.search(r"^dependencies\s*=\s*\[(.*?)^\]", text, re.M | re.S)
    reqs = re.findall(r'"([^"]+)"', block.group(1)) if block else []
    return [r for r in reqs if re.split(r"[<>=!~ \[]", r, 1)[0].lower() not in COLAB_PREINSTALLED]


def colab_block() -> str:
    """The lines that install course_lib on Colab, and only there (elsewhere they do nothing)."""
    extra = " ".join(f'"{r}"' for r in colab_missing())
    return ("# On Colab, install course_lib from the repository and what Colab lacks; Colab's own torch,\n"
            "# torchvision and ipywidgets are kept, and its widget manager is switched on.\n"
            "import sys\n"
            'if "google.colab" in sys.modules:\n'
            f"    %pip install -q --no-deps {install_spec()}\n"
            + (f"    %pip install -q {extra}\n" if extra else "")
            + "    from google.colab import output\n"
              "    output.enable_custom_widget_manager()\n")


# a row of the README's course map: | NN | [title](notebooks/NN_x.ipynb) | ... | [Colab](...) · [Binder](...) |
_MAP_ROW = re.compile(r"^(\| \d\d \| \[[^\]]+\]\((notebooks/[^)]+\.ipynb)\) \|.*\| )"
                      r"\[Colab\]\([^)]*\) · \[Binder\]\([^)]*\)( \|)$", re.M)


def readme_with_links(text: str) -> str:
    """The README with the launch links of each course-map row generated from its notebook's path."""
    return _MAP_ROW.sub(lambda m: f"{m.group(1)}[Colab]({colab_url(m.group(2))}) · "
                                  f"[Binder]({binder_url(m.group(2))}){m.group(3)}", text)


def course_notebooks() -> list[Path]:
    return sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _updated(path: Path) -> tuple[dict, bool]:
    nb = json.loads(path.read_text())
    rel = path.relative_to(REPO).as_posix()
    header = "".join(nb["cells"][0]["source"])
    lines = [m for m in _BADGE_LINE.finditer(header)]
    if len(lines) != 2:
        raise ValueError(f"{rel}: the header has {len(lines)} badge lines, expected a Colab and a Binder badge.")
    new_header = header[:lines[0].start()] + badges(rel) + header[lines[1].end():]
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    source = "".join(code["source"])
    if not _COLAB_BLOCK.search(source):
        raise ValueError(f"{rel}: the first code cell has no Colab block ('# On Colab ...' before 'import course_lib').")
    new_source = _COLAB_BLOCK.sub(lambda _: colab_block(), source, count=1)
    changed = new_header != header or new_source != source
    nb["cells"][0]["source"] = new_header.splitlines(keepends=True)
    code["source"] = new_source.splitlines(keepends=True)
    return nb, changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only report notebooks whose badges are out of date")
    args = ap.parse_args(argv)
    stale = []
    for path in course_notebooks():
        nb, changed = _updated(path)
        if changed:
            stale.append(path.name)
            if not args.check:
                write_text_atomic(path, json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n")
    readme = REPO / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.exists() else ""
    if readme_with_links(text) != text:
        stale.append(readme.name)
        if not args.check:
            write_text_atomic(readme, readme_with_links(text))
    verb = "out of date" if args.check else "updated"
    print(f"{len(stale)} file(s) {verb}" + (f": {', '.join(stale)}" if stale else ""))
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
