"""The benchmark's tables and figure: the summary per task and method, markdown, a bar chart, the CSV."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from course_lib import config, data
from course_lib.atomic import atomic_write, write_text_atomic
from course_lib.programs.bench.cache import PER_IMAGE
from course_lib.programs.bench.grid import POOLED


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
             "comparison of costs see notebook 08, which times them side by side. "
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
