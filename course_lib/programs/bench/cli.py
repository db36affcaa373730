"""The benchmark's command line (``python -m course_lib.programs.bench``; see the package's docstring)."""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from course_lib import config, data, viz
from course_lib.programs import results_dir
from course_lib.programs.bench.cache import cache_dir
from course_lib.programs.bench.grid import FULL_CATEGORIES, grid_cells, parse_shard, quick_cells, validation_cells
from course_lib.programs.bench.methods import METHODS, check_methods
from course_lib.programs.bench.report import write_tables
from course_lib.programs.bench.runner import run


def real_tasks_on_disk(prof: config.Profile) -> list[str]:
    """The real datasets whose default category loads from $COURSE_DATA; the others get a one-line note."""
    found = []
    for name in (n for n, info in data.TASKS.items() if not info.offline):
        try:
            data.load_task(name, profile=prof)
            found.append(name)
        except FileNotFoundError as err:
            print(f"not in the benchmark: {name} ({str(err).splitlines()[0]})")
    return found


def default_out(prof: config.Profile, kind: str) -> Path:
    """Only the cpu profile's --full run writes the committed results/ (:func:`results_dir`); every other
    run its own folder in the user cache."""
    if kind == "full" and prof.name == "cpu":
        return results_dir()
    return config.cache_root() / "results" / f"{prof.name}-{kind}"


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default=None, help="smoke | cpu | gpu (default: $COURSE_PROFILE)")
    ap.add_argument("--full", action="store_true", help="the complete grid (FULL_CATEGORIES x the profile's "
                    "seeds x every method, plus real datasets found under $COURSE_DATA)")
    ap.add_argument("--tasks", nargs="+", default=None, help=f"a custom run: these tasks ({', '.join(data.TASKS)})")
    ap.add_argument("--categories", nargs="+", default=None,
                    help="a custom run: these categories of each task (default: its default category)")
    ap.add_argument("--methods", nargs="+", default=None, help=f"a custom run: these methods ({', '.join(METHODS)})")
    ap.add_argument("--seeds", nargs="+", type=int, default=None, help="a custom run: these seeds "
                    "(default: the profile's)")
    ap.add_argument("--out", type=Path, default=None, help="where the tables go (default: see above)")
    ap.add_argument("--no-cache", action="store_true", help="recompute cells even if cached")
    ap.add_argument("--shard", default="0/1", help="i/n: compute only share i of n of the grid (one process "
                    "per GPU, or per job of a cluster array, on one cache); a final run without --shard "
                    "assembles the tables")
    args = ap.parse_args(argv)
    try:
        shard = parse_shard(args.shard)
    except ValueError as err:
        ap.error(str(err))
    try:
        prof = config.profile(args.profile)
    except ValueError as err:                      # an unknown name in --profile or $COURSE_PROFILE
        ap.error(str(err))
    custom = any(v is not None for v in (args.tasks, args.categories, args.methods, args.seeds))
    if args.full and custom:
        ap.error("--full runs the whole grid; leave out --tasks, --categories, --methods and --seeds")
    bad = [t for t in args.tasks or [] if t not in data.TASKS]
    if bad:
        ap.error(f"unknown task(s) {bad}; valid tasks: {', '.join(data.TASKS)}")
    try:
        check_methods(args.methods or [])
    except ValueError as err:
        ap.error(str(err))
    negative = [s for s in args.seeds or [] if s < 0]
    if negative:
        ap.error(f"--seeds {negative}: a seed is a whole number >= 0")
    seeds = args.seeds if args.seeds is not None else list(prof.seeds)
    if args.full:
        kind = "full"
        real = real_tasks_on_disk(prof)
        cats = {**FULL_CATEGORIES, **{n: data.grid_categories(n) for n in real}}
        cells = grid_cells(list(FULL_CATEGORIES) + real, list(METHODS), seeds, cats)
        cells += validation_cells(cells, seeds[0])
    elif custom:
        kind = "custom"
        tasks = args.tasks or data.offline_tasks()
        cats = {t: [c for c in args.categories or [] if c in data.task_categories(t)] for t in tasks}
        stray = [c for c in args.categories or [] if not any(c in data.task_categories(t) for t in tasks)]
        if stray:
            valid = "; ".join(f"{t}: {', '.join(data.task_categories(t))}" for t in tasks)
            ap.error(f"--categories {stray} belong to none of the tasks {tasks} (their categories: {valid})")
        cells = grid_cells(tasks, args.methods or list(METHODS), seeds, cats)
    else:
        kind, cells = "quick", quick_cells(prof)
        seeds = sorted({c.seed for c in cells})
    out = args.out if args.out is not None else default_out(prof, kind)
    config.seed_everything(seeds[0])
    viz.set_style()
    # --full reads the committed grid as a cache of record; the other runs compute (and keep) their cells, with
    # the per-image scores that notebook 10 reads and the committed CSV leaves out
    record = results_dir() / "benchmark.csv" if kind == "full" else None
    if shard[1] > 1:
        print(f"benchmark ({kind}, profile {prof.name}): shard {shard[0]} of {shard[1]} of {len(cells)} cells "
              "-> the cache; run again without --shard to assemble the tables")
        done = run(cells, prof, use_cache=not args.no_cache, record=record, shard_of=shard)
        print(f"shard {shard[0]}/{shard[1]}: {len(done)} cells in the cache {cache_dir(prof)}")
        return done
    print(f"benchmark ({kind}, profile {prof.name}): {len(cells)} cells -> {out}")
    df = run(cells, prof, use_cache=not args.no_cache, record=record,
             on_row=lambda table: write_tables(table, out, prof, seeds, figure=False))
    if not len(df):
        raise SystemExit("benchmark: no cell could run (see the notes above).")
    md = write_tables(df, out, prof, seeds)
    print(md)
    print(f"tables: {out / 'benchmark.md'}, {out / 'benchmark.csv'}, {out / 'benchmark.png'}")
    return df
