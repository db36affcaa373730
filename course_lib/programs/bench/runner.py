"""The benchmark run: every cell read from the user cache or the committed record, or computed."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd
from tqdm.auto import tqdm

from course_lib import config
from course_lib.programs.bench import compute
from course_lib.programs.bench.cache import cache_dir, read_cell, read_record, write_cell
from course_lib.programs.bench.grid import Cell, shard
from course_lib.programs.bench.methods import check_methods


def run(cells: list[Cell], prof: config.Profile, *, cache: Path | None = None, use_cache: bool = True,
        record: Path | None = None, on_row: Callable[[pd.DataFrame], None] | None = None,
        shard_of: tuple[int, int] = (0, 1)) -> pd.DataFrame:
    """Every cell read (the user cache first, then the committed `record`, a ``benchmark.csv``) or
    computed, and its row written to the cache; returns one row per cell that could run, in the order
    of `cells`. ``use_cache=False`` reads neither.

    `on_row(table so far)` runs after every finished cell, so that a run stopped early still leaves a
    table of what it did. A real dataset missing on disk skips its cells with a one-line note. With
    ``shard_of=(i, n)`` this process computes only its share of the grid (:func:`grid.shard`) and
    returns that share's rows; run once more without it to assemble the whole table from the cache.
    """
    check_methods(c.method for c in cells)
    index, count = shard_of
    mine = shard(cells, index, count) if count > 1 else cells
    cache = cache if cache is not None else cache_dir(prof)
    cache.mkdir(parents=True, exist_ok=True)
    results = {c: row for c in mine if use_cache and (row := read_cell(cache / c.filename, c, prof)) is not None}
    if use_cache and len(results) < len(mine):
        committed = read_record(record, [c for c in mine if c not in results], prof)
        if committed:
            print(f"benchmark: {len(committed)} cells read from the committed record {record}")
        results.update(committed)

    def table() -> pd.DataFrame:                   # finished rows, in the order of `cells`
        return pd.DataFrame([results[c] for c in mine if c in results])

    if results:
        print(f"benchmark: {len(results)} of {len(mine)} cells found (cache {cache})")
        if on_row:
            on_row(table())
    todo = [c for c in mine if c not in results]
    sources = compute.Sources(prof)
    with tqdm(total=len(todo), desc="benchmark", unit="cell") as bar:
        for cell in todo:
            where = "" if cell.split == "test" else f" ({cell.split})"
            bar.set_postfix_str(f"{cell.task}/{cell.category} seed {cell.seed}{where}: {cell.method}")
            row = compute.compute_cell(cell, prof, sources)
            bar.update(1)
            if row is None:
                continue
            write_cell(cache, cell, row)
            results[cell] = row
            if on_row:
                on_row(table())
    return table()
