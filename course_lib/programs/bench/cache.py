"""Where finished cells are kept: the user cache (one JSON file a cell, with the per-image scores), and
the committed ``results/benchmark.csv``, itself a cache of record: a cell whose key and profile
fingerprint match a committed row is read from it, so a fresh machine recomputes nothing committed."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from course_lib import config, data
from course_lib.atomic import write_text_atomic
from course_lib.programs.bench.grid import Cell

PER_IMAGE = ("scores", "labels", "kinds")   # list-valued columns of a row: one entry per test image


def cache_dir(prof: config.Profile, root: Path | None = None) -> Path:
    """Where finished cells of this exact profile (every field) are kept: under the user cache."""
    root = Path(root) if root is not None else config.cache_root() / "bench"
    return root / f"{prof.name}-{prof.fingerprint()}"


def cell_key(cell: Cell, prof: config.Profile) -> dict:
    """What a stored row must say to be this cell's: the fingerprint is that of the profile the cell runs
    with (its dataset's, ``data.task_profile``), so changing one dataset's settings recomputes its cells only."""
    return {"task": cell.task, "category": cell.category, "method": cell.method, "seed": cell.seed,
            "split": cell.split, "profile": prof.name, "fingerprint": data.task_profile(cell.task, prof).fingerprint()}


def check_row(row, cell: Cell, prof: config.Profile) -> None:
    """Raise ValueError unless `row` is a finished row of `cell` under `prof`."""
    if not isinstance(row, dict):
        raise ValueError("not a JSON object")
    wrong = [f"{k} {row.get(k)!r} (expected {v!r})" for k, v in cell_key(cell, prof).items() if row.get(k) != v]
    if wrong:
        raise ValueError("it holds another cell: " + ", ".join(wrong))
    if not (isinstance(row.get("auroc"), float) and 0.0 <= row["auroc"] <= 1.0):
        raise ValueError(f"its AUROC {row.get('auroc')!r} is not a number in [0, 1]")


def read_cell(path: Path, cell: Cell, prof: config.Profile) -> dict | None:
    """The cached row of `cell`, or None if there is none. A file that is unreadable, truncated or
    holds another cell (task, category, method, seed, split or profile) is named in a warning and
    ignored, so the cell is recomputed."""
    if not path.exists():
        return None
    try:
        row = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(row, dict):
            row.setdefault("split", "test")        # cells written before validation cells existed
        check_row(row, cell, prof)
    except (OSError, UnicodeDecodeError, ValueError) as err:   # json.JSONDecodeError is a ValueError
        warnings.warn(f"benchmark cache: ignoring {path} ({err}); computing the cell again.", stacklevel=2)
        return None
    return row


def write_cell(folder: Path, cell: Cell, row: dict) -> None:
    write_text_atomic(folder / cell.filename, json.dumps(row))


def read_record(path: Path | None, cells: list[Cell], prof: config.Profile) -> dict[Cell, dict]:
    """The rows of a committed ``benchmark.csv`` that are cells of `cells` under exactly `prof` (the same
    fingerprint). They hold every column of the table but the per-image scores, which the CSV leaves out."""
    if path is None or not Path(path).is_file():
        return {}
    table = pd.read_csv(path, dtype={"category": str, "fingerprint": str})
    wanted = {(c.task, c.category, c.method, c.seed, c.split): c for c in cells}
    found = {}
    for row in table.to_dict("records"):
        row = {k: v for k, v in row.items() if not (isinstance(v, float) and np.isnan(v) and k != "pixel_auroc")}
        row["seed"], row["split"] = int(row["seed"]), row.get("split", "test")
        cell = wanted.get((row["task"], row["category"], row["method"], row["seed"], row["split"]))
        if cell is None:
            continue
        try:
            check_row(row, cell, prof)
        except ValueError:                 # another profile's row, or a damaged one: computed afresh
            continue
        found[cell] = row
    return found
