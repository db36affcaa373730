"""The first code cell of every notebook: ``P = course_lib.setup(seed=0)``."""
from __future__ import annotations

import platform

import numpy as np
import torch

from course_lib import config, viz
from course_lib.course.exercises import quiet_not_done


def setup(seed: int = 0, *, quiet: bool = False) -> config.Profile:
    """Seed, pick the device, set the plot style, and print a banner; returns the active profile."""
    prof = config.profile()
    config.seed_everything(seed)
    quiet_not_done()                 # an unfinished exercise shows its message, not a traceback
    viz.set_style()
    if not quiet:
        dev = config.get_device()
        print(f"course_lib profile: {prof.name} | device: {dev} | seed: {seed}")
        print(f"python {platform.python_version()} | torch {torch.__version__} | "
              f"numpy {np.__version__} | threads {torch.get_num_threads()}")
        if config.on_colab():
            print(f"Colab: real datasets download into {config.data_root().resolve()} when a notebook first loads "
                  "one (each says its size first)."
                  + ("" if dev.type == "cuda" else " This runtime has no GPU, so the profile is cpu; for the "
                     "paper's scale choose Runtime > Change runtime type > a GPU, then rerun."))
    return prof
