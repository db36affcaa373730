"""The programs: the benchmark and the studies behind ``results/``, the detect command, the training command.

They sit above the library (``course_lib``) and import only from it and from each other; nothing in the
library imports them. Each runs as ``python -m course_lib.programs.NAME``.
"""
from __future__ import annotations

import os
from pathlib import Path

from course_lib import config


def results_dir() -> Path:
    """Where a program's tables go unless told: `$COURSE_RESULTS`; else the ``results/`` folder of the clone
    the program runs from (the current directory or its parent holds ``course_lib/`` and ``results/``: the
    clone's root or its ``notebooks/``); else ``results/`` in the user cache, so that an installed
    course_lib never writes into its site-packages."""
    if os.environ.get("COURSE_RESULTS"):
        return Path(os.environ["COURSE_RESULTS"]).expanduser()
    here = Path.cwd()
    for folder in (here, here.parent):
        if (folder / "course_lib").is_dir() and (folder / "results").is_dir():
            return folder / "results"
    return config.cache_root() / "results"
