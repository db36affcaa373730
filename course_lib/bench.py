"""The benchmark: every detector on every available task, over several seeds.

    python -m course_lib.bench                       # all offline tasks, the active profile
    python -m course_lib.bench --tasks textures --methods iforest copod --seeds 0

Writes ``results/benchmark.csv`` (one row per task x category x method x seed),
``results/benchmark.md`` (mean ± std per task and method) and ``results/benchmark.png``.
Finished cells are cached in ``results/cache/<profile>-<fingerprint>/`` so an interrupted run resumes
where it stopped; the fingerprint hashes every field of the profile, so changing a setting starts a
fresh cache. (A change to course_lib's code does not: rerun with ``--no-cache`` then.)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from . import config, data, metrics
from .atomic import atomic_write, write_text_atomic
from .baselines import BASELINES, make_baseline
from .detector import Detector
from .diffusion_detector import DENOISER_LABELS, DiffusionDetector
from .scoring import ScoreConfig

# name -> factory(profile, seed, extent) -> unfitted Detector. `extent` is the task's AnomalyTask.extent
# ("global" or "local"): the only thing about a task that a detector may know before it is fitted.
Factory = Callable[[config.Profile, int, str], Detector]
METHODS: dict[str, Factory] = {
    name: (lambda prof, seed, extent, _n=name: make_baseline(_n, seed=seed)) for name in BASELINES
}


def register_method(name: str, factory: Factory) -> None:
    METHODS[name] = factory


def _diffusion_method(denoiser: str, score: str) -> Factory:
    """A diffusion detector with the profile's U-Net ("unet") or DiT ("dit") and its settings of `score`."""
    def make(prof: config.Profile, seed: int, extent: str) -> Detector:
        preset = prof.unet_preset if denoiser == "unet" else prof.dit_preset
        return DiffusionDetector(ScoreConfig.for_task(prof, score, extent), preset=preset, prof=prof, seed=seed,
                                 progress=False)
    return make


for _denoiser, _label in DENOISER_LABELS.items():
    register_method(f"{_label}/recon", _diffusion_method(_denoiser, "reconstruction"))
    register_method(f"{_label}/noise", _diffusion_method(_denoiser, "noise"))


def _default_methods() -> list[str]:
    return list(METHODS)


def available_cells(tasks: list[str], prof: config.Profile, categories: dict[str, list[str]] | None = None):
    """(task, category) pairs whose data exist; real datasets missing on disk are skipped with a note."""
    cells = []
    for name in tasks:
        # corrupted-digit tasks: the pooled "all" task (each corruption alone is studied in notebook 08)
        default = ["all"] if "all" in data.task_categories(name) else data.task_categories(name)
        cats = (categories or {}).get(name) or default
        if not data.TASKS[name].offline:
            try:
                data.load_task(name, cats[0], profile=prof)
            except FileNotFoundError as e:
                print(f"skipping {name}: {str(e).splitlines()[0]}")
                continue
        cells += [(name, c) for c in cats]
    return cells


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
    return row


def cache_dir(out: Path, prof: config.Profile) -> Path:
    """Where finished cells of this exact profile (every field) are kept."""
    return out / "cache" / f"{prof.name}-{hashlib.sha1(repr(prof).encode()).hexdigest()[:10]}"


def run(tasks: list[str], methods: list[str], seeds: list[int], prof: config.Profile,
        out: Path, categories: dict[str, list[str]] | None = None, use_cache: bool = True) -> pd.DataFrame:
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"Unknown method(s) {unknown}; valid methods: {', '.join(METHODS)}.")
    cache = cache_dir(out, prof)
    cache.mkdir(parents=True, exist_ok=True)
    rows = []
    cells = available_cells(tasks, prof, categories)
    bar = tqdm(total=len(cells) * len(methods) * len(seeds), desc="benchmark")
    for name, cat in cells:
        for seed in seeds:
            task = None
            for method in methods:
                key = cache / f"{name}__{cat}__{method}__{seed}.json".replace("/", "-")
                if use_cache and key.exists():
                    rows.append(json.loads(key.read_text()))
                else:
                    task = task or data.load_task(name, cat, seed=seed, profile=prof)
                    row = {"task": name, "category": str(cat), "profile": prof.name,
                           **run_cell(task, method, prof, seed)}
                    write_text_atomic(key, json.dumps(row))
                    rows.append(row)
                bar.set_postfix_str(f"{name}/{cat} {method} AUROC {rows[-1]['auroc']:.3f}")
                bar.update()
    bar.close()
    return pd.DataFrame(rows)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over categories and seeds, per task and method."""
    g = df.groupby(["task", "method"], sort=False)
    out = g.agg(auroc=("auroc", "mean"), auroc_std=("auroc", "std"), auprc=("auprc", "mean"),
                auprc_std=("auprc", "std"), pixel_auroc=("pixel_auroc", "mean"), fit_s=("fit_s", "mean"),
                ms_per_image=("ms_per_image", "mean"), nfe=("nfe", "mean"), cells=("auroc", "size"))
    return out.reset_index().fillna({"auroc_std": 0.0, "auprc_std": 0.0})


def to_markdown(summary: pd.DataFrame, prof: config.Profile, seeds: list[int]) -> str:
    lines = [f"Profile `{prof.name}`; mean ± std over categories and seeds ({', '.join(map(str, seeds))}). "
             "fit s = training seconds (diffusion) or fit seconds (baselines); NFE = network evaluations per image.",
             "", "| task | method | AUROC | AUPRC | pixel AUROC | fit s | ms / image | NFE | cells |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in summary.itertuples():
        pix = "–" if np.isnan(r.pixel_auroc) else f"{r.pixel_auroc:.3f}"
        lines.append(f"| {r.task} | {r.method} | {r.auroc:.3f} ± {r.auroc_std:.3f} | {r.auprc:.3f} ± "
                     f"{r.auprc_std:.3f} | {pix} | {r.fit_s:.2f} | {r.ms_per_image:.2f} | {r.nfe:.0f} | {r.cells} |")
    return "\n".join(lines) + "\n"


def plot(summary: pd.DataFrame, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns
    fig, ax = plt.subplots(figsize=(1.6 * summary["task"].nunique() + 3, 3.6))
    sns.barplot(data=summary, x="task", y="auroc", hue="method", ax=ax)
    ax.axhline(0.5, color="k", ls="--", lw=1)
    ax.set(ylim=(0, 1), ylabel="image AUROC (mean)", title="Benchmark")
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    methods = _default_methods()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default=None, help="smoke | cpu | gpu (default: $COURSE_PROFILE)")
    ap.add_argument("--tasks", nargs="+", default=None, help=f"default: all offline ({', '.join(data.offline_tasks())}) "
                    "plus real datasets found under $COURSE_DATA")
    ap.add_argument("--methods", nargs="+", default=methods, help=f"default: {' '.join(methods)}")
    ap.add_argument("--seeds", nargs="+", type=int, default=None, help="default: the profile's seeds")
    ap.add_argument("--out", type=Path, default=config.repo_root() / "results")
    ap.add_argument("--no-cache", action="store_true", help="recompute cells even if cached")
    args = ap.parse_args(argv)
    prof = config.profile(args.profile)
    tasks = args.tasks or list(data.TASKS)
    bad = [t for t in tasks if t not in data.TASKS]
    if bad:
        ap.error(f"unknown task(s) {bad}; valid tasks: {', '.join(data.TASKS)}")
    seeds = args.seeds if args.seeds is not None else list(prof.seeds)
    config.setup(seed=seeds[0])
    df = run(tasks, args.methods, seeds, prof, args.out, use_cache=not args.no_cache)
    summary = summarize(df)
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out / "benchmark.csv") as tmp:
        df.to_csv(tmp, index=False)
    md = to_markdown(summary, prof, seeds)
    write_text_atomic(args.out / "benchmark.md", md)
    plot(summary, args.out / "benchmark.png")
    print(md)
    return df


if __name__ == "__main__":
    main()
