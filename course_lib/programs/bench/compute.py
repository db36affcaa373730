"""One cell computed: its task loaded, its detector fitted on the normal images and scored."""
from __future__ import annotations

import time

import numpy as np
from tqdm.auto import tqdm

from course_lib import config, data, metrics
from course_lib.programs.bench.grid import Cell
from course_lib.programs.bench.methods import METHODS


def run_cell(task, method: str, prof: config.Profile, seed: int) -> dict:
    """Fit one detector on the task's normal images and score its labelled images."""
    config.seed_everything(seed)
    det = METHODS[method].make(prof, seed, task.extent)
    t0 = time.perf_counter()
    det.fit(task.train)
    fit_s = time.perf_counter() - t0
    if det.kind == "diffusion":   # a model may come from its checkpoint: report the time it took to train
        fit_s = float(det.train_info_["seconds"])
    t0 = time.perf_counter()
    scores = det.decision_function(task.images)
    score_s = time.perf_counter() - t0
    row = {"method": method, "seed": seed, **metrics.summary(task.labels, scores),
           "pixel_auroc": np.nan, "fit_s": fit_s, "ms_per_image": 1000 * score_s / len(task.images),
           "nfe": det.nfe_per_image}
    if task.masks is not None and hasattr(det, "anomaly_maps"):
        row["pixel_auroc"] = metrics.pixel_auroc(task.masks, det.anomaly_maps(task.images))
    # per image, for ROC curves and AUROC per kind of anomaly (kept in the cache, left out of the CSV)
    row.update(scores=[float(v) for v in scores], labels=task.labels.tolist(),
               kinds=list(task.kinds) or ["normal" if y == 0 else "anomaly" for y in task.labels.tolist()])
    return row


class Sources:
    """The tasks of a run, built once each (one in memory at a time); a task whose data is missing is
    noted once and its cells skipped."""

    def __init__(self, prof: config.Profile):
        self.prof, self.loaded, self.unavailable = prof, {}, set()

    def get(self, cell: Cell):
        source = (cell.task, cell.category, cell.seed, cell.split)
        if source in self.unavailable:
            return None
        if source not in self.loaded:
            self.loaded.clear()
            try:
                self.loaded[source] = data.load_task(cell.task, cell.category, seed=cell.seed, split=cell.split,
                                                     profile=data.task_profile(cell.task, self.prof))
            except FileNotFoundError as err:   # a real dataset absent or only partly present
                where = "" if cell.split == "test" else f" ({cell.split})"
                tqdm.write(f"skipping {cell.task}/{cell.category} seed {cell.seed}{where}: "
                           f"{str(err).splitlines()[0]}")
                self.unavailable.add(source)
                return None
        return self.loaded[source]


def compute_cell(cell: Cell, prof: config.Profile, sources: Sources) -> dict | None:
    """The row of one cell, or None when its task cannot be loaded. The cell runs with its dataset's
    profile (``data.task_profile``: the profile, with the dataset's own settings if it has any)."""
    task = sources.get(cell)
    if task is None:
        return None
    tprof = data.task_profile(cell.task, prof)
    return {"task": cell.task, "category": cell.category, "split": cell.split, "profile": prof.name,
            "fingerprint": tprof.fingerprint(), **run_cell(task, cell.method, tprof, cell.seed)}
