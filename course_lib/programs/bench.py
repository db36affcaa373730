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
and a model interrupted in training resumes from its last checkpoint. The table (``benchmark.csv``,
``benchmark.md``, ``benchmark.png``) is rewritten after every finished cell. Only ``--full`` in the
``cpu`` profile writes the committed ``results/``; every other run writes to
``$COURSE_CACHE/results/<profile>-<quick|full|custom>/`` unless ``--out`` says otherwise.
The cache key hashes every field of the profile, so changing a setting starts afresh (a change to
course_lib's code does not: rerun with ``--no-cache`` then).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from course_lib import config, data, metrics, viz
from course_lib.atomic import atomic_write, write_text_atomic
from course_lib.baselines import ALL_BASELINES, make_baseline
from course_lib.programs import results_dir
from course_lib.programs.claims import Claim
from course_lib.detector import Detector
from course_lib.diffusion_detector import DENOISER_LABELS, DiffusionDetector
from course_lib.scoring import ScoreConfig

# name -> factory(profile, seed, extent) -> unfitted Detector. `extent` is the task's AnomalyTask.extent
# ("global" or "local"): the only thing about a task that a detector may know before it is fitted.
Factory = Callable[[config.Profile, int, str], Detector]
METHODS: dict[str, Factory] = {
    name: (lambda prof, seed, extent, _n=name: make_baseline(_n, seed=seed)) for name in ALL_BASELINES
}


def register_method(name: str, factory: Factory) -> None:
    METHODS[name] = factory


def _diffusion_method(denoiser: str, score: str) -> Factory:
    """A diffusion detector with the profile's U-Net ("unet") or DiT ("dit") and its settings of `score`."""
    def make(prof: config.Profile, seed: int, extent: str) -> Detector:
        preset = prof.unet_preset if denoiser == "unet" else prof.dit_preset
        return DiffusionDetector(ScoreConfig.for_task(prof, score, extent), preset=preset, prof=prof, seed=seed,
                                 progress=True)   # the training bar shows life inside a long cell
    return make


for _denoiser, _label in DENOISER_LABELS.items():
    register_method(f"{_label}/recon", _diffusion_method(_denoiser, "reconstruction"))
    register_method(f"{_label}/noise", _diffusion_method(_denoiser, "noise"))

# The default run: every offline task, its default category, the profile's first seed; the baselines
# everywhere and the U-Net's noise score (the course's best diffusion score) where a model trains in
# minutes. About 15 minutes in the cpu profile on 2 cores, most of it training four U-Nets.
QUICK_DIFFUSION_TASKS = ("digits", "digits-c", "textures", "photos")
QUICK_DIFFUSION_METHOD = "ddpm-unet/noise"

POOLED = "all"   # the category of digits-c and mnist-c that pools every corruption

# The --full grid's categories. digits: all ten classes (the paper's one-class protocol); digits-c: the
# pooled task and each corruption alone (they share one model per seed: the same clean training digits);
# textures: all three; photos: three photos (astronaut, chelsea, coffee: a portrait, an animal and an
# object), since each photo costs a model per seed and denoiser; photos-64: the astronaut alone, the
# same crops at twice the side for the paper's "DiT scales to larger images" (a 64 px model trains for
# 20-30 minutes on 2 cores, so three photos would add five hours).
FULL_CATEGORIES: dict[str, list[str]] = {
    "digits": data.task_categories("digits"),
    "digits-c": data.task_categories("digits-c"),
    "textures": data.task_categories("textures"),
    "photos": data.task_categories("photos")[:3],
    "photos-64": data.task_categories("photos-64")[:1],
}


@dataclass(frozen=True)
class Cell:
    """One number of the benchmark: a method fitted on one task, category and seed, and scored on the
    task's test split (reported) or its validation split (:func:`course_lib.data.load_task`)."""

    task: str
    category: str
    method: str
    seed: int
    split: str = "test"

    @property
    def filename(self) -> str:
        suffix = "" if self.split == "test" else f"__{self.split}"
        return f"{self.task}__{self.category}__{self.method}__{self.seed}{suffix}.json".replace("/", "-")


def quick_cells(prof: config.Profile) -> list[Cell]:
    """The default run (see :data:`QUICK_DIFFUSION_TASKS`)."""
    seed, cells = prof.seeds[0], []
    for name in data.offline_tasks():
        cat = data.TASKS[name].default_category
        methods = list(ALL_BASELINES) + ([QUICK_DIFFUSION_METHOD] if name in QUICK_DIFFUSION_TASKS else [])
        cells += [Cell(name, cat, m, seed) for m in methods]
    return cells


def grid_cells(tasks: list[str], methods: list[str], seeds: list[int],
               categories: dict[str, list[str]] | None = None) -> list[Cell]:
    """Every task x category x seed x method; a task's categories from `categories`, else its default
    category (for digits-c, the pooled "all"), seeds outermost within a category so that one
    task is built once per seed."""
    return [Cell(name, str(cat), m, seed) for name in tasks
            for cat in (categories or {}).get(name) or [data.TASKS[name].default_category]
            for seed in seeds for m in methods]


def validation_cells(cells: list[Cell], seed: int) -> list[Cell]:
    """The validation twin of every diffusion cell of `seed`: the same method, scored on the task's
    validation split by a model trained on its validation training images. It shows whether the
    settings, chosen on validation data, carry over to the test images (one more model per cell)."""
    return [Cell(c.task, c.category, c.method, c.seed, "validation") for c in cells
            if c.seed == seed and c.split == "test" and c.method not in ALL_BASELINES]


def run_cell(task, method: str, prof: config.Profile, seed: int) -> dict:
    """Fit one detector on the task's normal images and score its test set."""
    config.seed_everything(seed)
    det = METHODS[method](prof, seed, task.extent)
    t0 = time.perf_counter()
    det.fit(task.train)
    fit_s = time.perf_counter() - t0
    if hasattr(det, "train_info_"):  # a diffusion model loaded from its checkpoint: report its training time
        fit_s = float(det.train_info_["seconds"])
    t0 = time.perf_counter()
    scores = det.decision_function(task.test)
    score_s = time.perf_counter() - t0
    row = {"method": method, "seed": seed, **metrics.summary(task.labels, scores),
           "pixel_auroc": np.nan, "fit_s": fit_s, "ms_per_image": 1000 * score_s / len(task.test),
           "nfe": det.nfe_per_image}
    if task.masks is not None and hasattr(det, "anomaly_maps"):
        row["pixel_auroc"] = metrics.pixel_auroc(task.masks, det.anomaly_maps(task.test))
    # per image, for ROC curves and AUROC per kind of anomaly (kept in the cache, left out of the CSV)
    row.update(scores=[float(v) for v in scores], labels=task.labels.tolist(),
               kinds=list(task.kinds) or ["normal" if y == 0 else "anomaly" for y in task.labels.tolist()])
    return row


PER_IMAGE = ("scores", "labels", "kinds")   # list-valued columns of a row: one entry per test image


def profile_fingerprint(prof: config.Profile) -> str:
    return hashlib.sha1(repr(prof).encode()).hexdigest()[:10]


def cache_dir(prof: config.Profile, root: Path | None = None) -> Path:
    """Where finished cells of this exact profile (every field) are kept: under the user cache."""
    root = Path(root) if root is not None else config.cache_root() / "bench"
    return root / f"{prof.name}-{profile_fingerprint(prof)}"


def read_cell(path: Path, cell: Cell, prof: config.Profile) -> dict | None:
    """The cached row of `cell`, or None if there is none. A file that is unreadable, truncated or
    holds another cell (task, category, method, seed or profile) is named in a warning and ignored,
    so the cell is recomputed."""
    if not path.exists():
        return None
    try:
        row = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(row, dict):
            raise ValueError("not a JSON object")
        key = {"task": cell.task, "category": cell.category, "method": cell.method, "seed": cell.seed,
               "split": cell.split, "profile": prof.name, "fingerprint": profile_fingerprint(prof)}
        row.setdefault("split", "test")            # cells written before validation cells existed
        wrong = [f"{k} {row.get(k)!r} (expected {v!r})" for k, v in key.items() if row.get(k) != v]
        if wrong:
            raise ValueError("it holds another cell: " + ", ".join(wrong))
        if not (isinstance(row.get("auroc"), float) and 0.0 <= row["auroc"] <= 1.0):
            raise ValueError(f"its AUROC {row.get('auroc')!r} is not a number in [0, 1]")
    except (OSError, UnicodeDecodeError, ValueError) as err:   # json.JSONDecodeError is a ValueError
        warnings.warn(f"benchmark cache: ignoring {path} ({err}); computing the cell again.", stacklevel=2)
        return None
    return row


LEASE_S = 600.0   # a claim not renewed for this long (10 min) belongs to a process that died


def unit_of(cell: Cell) -> str:
    """The work that is claimed as one piece: a source (task, category, seed, split) with the baselines,
    or with one denoiser's scores, which share its trained model."""
    family = "baselines" if cell.method in ALL_BASELINES else cell.method.split("/")[0]
    return f"{cell.task}__{cell.category}__{cell.seed}__{cell.split}__{family}".replace("/", "-")


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {text!r}.") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard {text}: need 0 <= i < n.")
    return i, n


def run(cells: list[Cell], prof: config.Profile, *, cache: Path | None = None, use_cache: bool = True,
        on_row: Callable[[pd.DataFrame], None] | None = None, shard: tuple[int, int] = (0, 1),
        lease_s: float = LEASE_S) -> pd.DataFrame:
    """Compute (or read from the cache) every cell; returns one row per cell that could run.

    `on_row(table so far)` runs after every finished cell, so that a run stopped early still leaves a
    table of what it did. A real dataset that is missing or incomplete on disk skips its cells with a
    one-line note. The progress bar counts only the cells left to compute.

    Several processes may run the same grid on one cache at once (``--shard i/n``, one per GPU or per
    job of a cluster array): each claims a piece of work (:func:`unit_of`, :mod:`course_lib.programs.claims`)
    before computing it, so no cell is computed twice; shard i starts at the i-th n-th of the grid and
    goes on round it, so the processes spread out and then help each other; a piece whose process died
    is taken over when its claim expires (`lease_s`). Cells that a live process is still computing are
    left out of the table, with a note: run again once it has finished.
    """
    unknown = sorted({c.method for c in cells} - set(METHODS))
    if unknown:
        raise ValueError(f"Unknown method(s) {unknown}; valid methods: {', '.join(METHODS)}.")
    index, count = shard
    cache = cache if cache is not None else cache_dir(prof)
    cache.mkdir(parents=True, exist_ok=True)
    found = {c: read_cell(cache / c.filename, c, prof) if use_cache else None for c in cells}
    results = {c: row for c, row in found.items() if row is not None}

    def table() -> pd.DataFrame:                   # finished rows, in the order of `cells`
        return pd.DataFrame([results[c] for c in cells if c in results])

    if results:
        print(f"benchmark: {len(results)} of {len(cells)} cells found in the cache {cache}")
        if on_row:
            on_row(table())
    units: dict[str, list[Cell]] = {}
    for c in cells:
        if c not in results:
            units.setdefault(unit_of(c), []).append(c)
    order = list(units)
    start = index * len(order) // count
    order = order[start:] + order[:start]
    bar = tqdm(total=sum(map(len, units.values())), desc="benchmark", unit="cell")
    tasks, unavailable, busy = {}, set(), []
    for key in order:
        claim = Claim(cache / "claims" / f"{key}.claim", lease_s=lease_s)
        if not claim.acquire():
            busy += units[key]
            bar.update(len(units[key]))
            continue
        try:
            if claim.took_over:
                tqdm.write(f"benchmark: taking over {key}, whose process stopped renewing its claim")
            for cell in units[key]:
                bar.update(1)
                row = read_cell(cache / cell.filename, cell, prof) if use_cache else None
                if row is None:                    # not finished by another process meanwhile
                    row = _compute(cell, prof, tasks, unavailable, bar)
                    if row is None:
                        continue
                    write_text_atomic(cache / cell.filename, json.dumps(row))
                results[cell] = row
                if on_row:
                    on_row(table())
        finally:
            claim.release()
    bar.close()
    for cell in busy:                              # finished by the other process by now?
        row = read_cell(cache / cell.filename, cell, prof)
        if row is not None:
            results[cell] = row
    left = [c for c in busy if c not in results]
    if left:
        print(f"benchmark: {len(left)} cell(s) are being computed by another process (claims in "
              f"{cache / 'claims'}); they are not in this table. Run again once it has finished.")
    return table()


def _compute(cell: Cell, prof: config.Profile, tasks: dict, unavailable: set, bar) -> dict | None:
    """One cell's row, or None when its task cannot be loaded (noted once per task)."""
    source = (cell.task, cell.category, cell.seed, cell.split)
    if source in unavailable:
        return None
    where = "" if cell.split == "test" else f" ({cell.split})"
    bar.set_postfix_str(f"{cell.task}/{cell.category} seed {cell.seed}{where}: {cell.method}")
    if source not in tasks:
        tasks.clear()                 # one task in memory at a time
        try:
            tasks[source] = data.load_task(cell.task, cell.category, seed=cell.seed, profile=prof, split=cell.split)
        except FileNotFoundError as err:   # a real dataset absent or only partly present
            tqdm.write(f"skipping {cell.task}/{cell.category} seed {cell.seed}{where}: {str(err).splitlines()[0]}")
            unavailable.add(source)
            return None
    return {"task": cell.task, "category": cell.category, "split": cell.split, "profile": prof.name,
            "fingerprint": profile_fingerprint(prof), **run_cell(tasks[source], cell.method, prof, cell.seed)}


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


def reported_task(df: pd.DataFrame) -> pd.Series:
    """The task a row is reported under. A task with a pooled category ("all": digits-c, mnist-c) keeps
    its name for the pooled cells and reports its single-corruption cells apart, as "<task> per
    corruption": a mean over both would mix the pooled task with fifteen easier ones."""
    pooled = df["task"].map(lambda t: t in data.TASKS and POOLED in data.TASKS[t].categories)
    return df["task"].where(~pooled | (df["category"] == POOLED), df["task"] + " per corruption")


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Test rows: mean ± std over categories and seeds, per task (as :func:`reported_task` names it) and
    method; ``val_auroc`` is the mean AUROC of the validation cells of the same task and method (NaN where
    there are none). The costs (``fit_s``, ``ms_per_image``) are medians: the cells of a long run are timed
    at different times and loads, and one cell timed on a busy machine would otherwise drag a mean."""
    df = df.assign(task=reported_task(df))
    split = df["split"] if "split" in df else pd.Series("test", index=df.index)
    test, val = df[split == "test"], df[split == "validation"]
    g = test.groupby(["task", "method"], sort=False)
    out = g.agg(auroc=("auroc", "mean"), auroc_std=("auroc", "std"), auprc=("auprc", "mean"),
                auprc_std=("auprc", "std"), pixel_auroc=("pixel_auroc", "mean"), fit_s=("fit_s", "median"),
                ms_per_image=("ms_per_image", "median"), nfe=("nfe", "mean"), cells=("auroc", "size"))
    out = out.reset_index().fillna({"auroc_std": 0.0, "auprc_std": 0.0})
    val_auroc = val.groupby(["task", "method"])["auroc"].mean().rename("val_auroc")
    return out.join(val_auroc, on=["task", "method"]) if len(val) else out.assign(val_auroc=np.nan)


def to_markdown(summary: pd.DataFrame, prof: config.Profile, seeds: list[int]) -> str:
    with_val = summary["val_auroc"].notna().any()
    lines = [f"Profile `{prof.name}`, test split; mean ± std over categories and seeds "
             f"({', '.join(map(str, seeds))}). fit s = training seconds (diffusion) or fit seconds (baselines), "
             "and ms / image, are medians over the cells, which ran at different times and loads: for a fair "
             "comparison of costs see notebook 07, which times them side by side. "
             "NFE = network evaluations per image."
             + (f" val AUROC = the same method on the validation split (seed {seeds[0]}, every category; "
                "models trained on the validation training images), where the settings were chosen."
                if with_val else ""),
             "", "| task | method | AUROC | " + ("val AUROC | " if with_val else "")
             + "AUPRC | pixel AUROC | fit s | ms / image | NFE | cells |",
             "|---|---|---|---|---|---|---|---|---|" + ("---|" if with_val else "")]
    for r in summary.itertuples():
        pix = "–" if math.isnan(r.pixel_auroc) else f"{r.pixel_auroc:.3f}"
        auroc, auprc = f"{r.auroc:.3f}", f"{r.auprc:.3f}"
        if r.cells > 1:                                  # one cell has no spread to show
            auroc, auprc = f"{auroc} ± {r.auroc_std:.3f}", f"{auprc} ± {r.auprc_std:.3f}"
        val = ("–" if math.isnan(r.val_auroc) else f"{r.val_auroc:.3f}") + " | " if with_val else ""
        lines.append(f"| {r.task} | {r.method} | {auroc} | {val}{auprc} | {pix} | {r.fit_s:.2f} "
                     f"| {r.ms_per_image:.2f} | {r.nfe:.0f} | {r.cells} |")
    return "\n".join(lines) + "\n"


def plot(summary: pd.DataFrame, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    tasks, methods = list(dict.fromkeys(summary["task"])), list(dict.fromkeys(summary["method"]))
    mean = summary.pivot(index="task", columns="method", values="auroc").reindex(index=tasks, columns=methods)
    std = summary.pivot(index="task", columns="method", values="auroc_std").reindex(index=tasks, columns=methods)
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(1.3 * len(tasks) + 4.5, 3.6))
    colors = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20").colors
    for i, method in enumerate(methods):               # grouped bars, ± the std over categories and seeds
        ax.bar(np.arange(len(tasks)) + (i - (len(methods) - 1) / 2) * width, mean[method], width, yerr=std[method],
               color=colors[i % len(colors)], label=method, error_kw=dict(lw=0.6, capsize=1))
    ax.axhline(0.5, color="k", ls="--", lw=1)
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set(ylim=(0, 1.02), ylabel="image AUROC (test)",
           title="Benchmark: mean ± std over categories and seeds (dashed: chance)")
    ax.legend(fontsize="small", bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def write_tables(df: pd.DataFrame, out: Path, prof: config.Profile, seeds: list[int], *,
                 figure: bool = True) -> str:
    """benchmark.csv, benchmark.md (returned) and benchmark.png in `out`, each written atomically."""
    summary = summarize(df)
    with atomic_write(out / "benchmark.csv") as tmp:
        df.drop(columns=[c for c in PER_IMAGE if c in df], errors="ignore").to_csv(tmp, index=False)
    md = to_markdown(summary, prof, seeds)
    write_text_atomic(out / "benchmark.md", md)
    if figure:
        plot(summary, out / "benchmark.png")
    return md


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
    ap.add_argument("--shard", default="0/1", help="i/n: this is process i of n running the same grid on one "
                    "cache (one per GPU, or per job of a cluster array); a final run without --shard "
                    "assembles the tables")
    args = ap.parse_args(argv)
    try:
        shard = parse_shard(args.shard)
    except ValueError as err:
        ap.error(str(err))
    prof = config.profile(args.profile)
    custom = any(v is not None for v in (args.tasks, args.categories, args.methods, args.seeds))
    if args.full and custom:
        ap.error("--full runs the whole grid; leave out --tasks, --categories, --methods and --seeds")
    bad = [t for t in args.tasks or [] if t not in data.TASKS]
    if bad:
        ap.error(f"unknown task(s) {bad}; valid tasks: {', '.join(data.TASKS)}")
    seeds = args.seeds if args.seeds is not None else list(prof.seeds)
    if args.full:
        kind = "full"
        real = real_tasks_on_disk(prof)
        cats = {**FULL_CATEGORIES, **{n: data.task_categories(n) for n in real}}
        cells = grid_cells(list(FULL_CATEGORIES) + real, list(METHODS), seeds, cats)
        cells += validation_cells(cells, seeds[0])
    elif custom:
        kind = "custom"
        tasks = args.tasks or data.offline_tasks()
        cats = {t: [c for c in args.categories or [] if c in data.task_categories(t)] for t in tasks}
        if args.categories and not any(cats.values()):
            ap.error(f"none of the categories {args.categories} belongs to the tasks {tasks}")
        cells = grid_cells(tasks, args.methods or list(METHODS), seeds, cats)
    else:
        kind, cells = "quick", quick_cells(prof)
        seeds = sorted({c.seed for c in cells})
    out = args.out if args.out is not None else default_out(prof, kind)
    config.seed_everything(seeds[0])
    viz.set_style()
    print(f"benchmark ({kind}, profile {prof.name}): {len(cells)} cells -> {out}")
    if shard[1] > 1:
        print(f"shard {shard[0]} of {shard[1]}: the cells other processes have claimed are theirs")
    df = run(cells, prof, use_cache=not args.no_cache, shard=shard,
             on_row=lambda table: write_tables(table, out, prof, seeds, figure=False))
    if not len(df):
        raise SystemExit("benchmark: no cell could run (see the notes above).")
    md = write_tables(df, out, prof, seeds)
    print(md)
    print(f"tables: {out / 'benchmark.md'}, {out / 'benchmark.csv'}, {out / 'benchmark.png'}")
    return df


if __name__ == "__main__":
    main()
