"""The benchmark: every detector on every available task.

    python -m course_lib.programs.bench            # the main job: minutes on a laptop (see QUICK below)
    python -m course_lib.programs.bench --full     # the complete grid behind the committed results/ (hours; resumable)
    python -m course_lib.programs.bench --tasks textures --methods iforest copod --seeds 0

The default run covers every offline task with one category and one seed: the six pixel baselines
and the U-Net's noise score on every task up to 32 px (a 64 px U-Net alone trains for about a quarter of
an hour on 2 cores). ``--full`` runs :data:`FULL_CATEGORIES` over the profile's seeds with every method,
the DiT's too, plus every real dataset found under ``$COURSE_DATA`` (categories and seeds it lacks are
skipped with a note), and scores every diffusion method of the first seed on the validation split as
well (:func:`validation_cells`), so the table shows validation AUROC beside test AUROC.

Finished cells and trained models live in the user cache (``$COURSE_CACHE``, default
``~/.cache/course_lib``), so an interrupted run, in this clone or another, resumes where it stopped,
and a model interrupted in training resumes from its last checkpoint. The committed
``results/benchmark.csv`` is a cache of record too: a cell whose key and profile fingerprint match a
committed row is read from it, so a fresh machine recomputes no committed cell. The table (``benchmark.csv``,
``benchmark.md``, ``benchmark.png``) is rewritten after every finished cell. Only ``--full`` in the
``cpu`` profile writes the committed ``results/``; every other run writes to
``$COURSE_CACHE/results/<profile>-<quick|full|custom>/`` unless ``--out`` says otherwise.
The cache key hashes every field of the profile, so changing a setting starts afresh (a change to
course_lib's code does not: rerun with ``--no-cache`` then).
"""
from __future__ import annotations

# The parts, one job each: methods (the registry), grid (the cells, the shards), cache (the user cache
# and the committed record), compute (one cell), runner (a whole run), report (tables and figure), cli.
from course_lib.programs.bench import cache, compute, grid, methods, report, runner  # noqa: F401
from course_lib.programs.bench.cache import PER_IMAGE, cache_dir, read_cell, read_record  # noqa: F401
from course_lib.programs.bench.cli import default_out, main, real_tasks_on_disk  # noqa: F401
from course_lib.programs.bench.compute import run_cell  # noqa: F401
from course_lib.programs.bench.grid import (FULL_CATEGORIES, POOLED, QUICK_DIFFUSION_METHOD,  # noqa: F401
                                            QUICK_DIFFUSION_TASKS, Cell, grid_cells, parse_shard, quick_cells,
                                            shard, validation_cells)
from course_lib.programs.bench.methods import METHODS, Method, of_kind, register_method  # noqa: F401
from course_lib.programs.bench.report import plot, reported_task, summarize, to_markdown, write_tables  # noqa: F401
from course_lib.programs.bench.runner import run  # noqa: F401
