"""Choose the settings of the real-MNIST tasks on validation data, never on the test images.

    python -m course_lib.programs.mnist_validation                      # every candidate, classes 2 5 8, seed 0
    python -m course_lib.programs.mnist_validation --classes 0 1 2 3 4 5 6 7 8 9 --candidates 2

Each candidate changes a few of the profile's fields for the MNIST tasks only (the image side, the number
of training images, the training steps). It is fitted on the training side of the official training split
(``load_task("mnist", k, split="validation")``: the other half of that split gives the labelled images),
scored with the benchmark's U-Net noise score, and compared with the six pixel baselines on the same
training images. Every finished row is kept in ``results/mnist-validation.csv`` at once (a rerun skips it,
so a killed run resumes), and ``results/mnist-validation.md`` is rewritten: validation AUROC against the
U-Net's training minutes.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import pandas as pd

from course_lib import config, metrics
from course_lib.atomic import write_text_atomic
from course_lib.data import load_task
from course_lib.programs import results_dir
from course_lib.programs.bench.methods import METHODS, of_kind

DIFFUSION = "ddpm-unet/noise"
# The profile fields each candidate changes for the MNIST tasks. About 10 minutes of training per model on
# 2 CPU cores is the budget (cpu profile): a 28 px step costs about three 16 px steps.
CANDIDATES: tuple[dict, ...] = (
    {},
    {"n_train": 2000},
    {"n_train": 2000, "train_steps": 2000},
    {"digits_size": 28, "n_train": 2000},
)


def label_of(prof: config.Profile) -> str:
    return f"{prof.digits_size} px, {prof.n_train} images, {prof.train_steps} steps"
N_VALIDATION = 1000          # labelled validation images per class: a smaller AUROC error than the profile's n_test
KEY = ["candidate", "class", "seed", "method"]


def evaluate(overrides: dict, k: str, seed: int, prof: config.Profile, done: set) -> list[dict]:
    """Validation AUROC of every method not in `done` for one candidate, class and seed."""
    cprof = dataclasses.replace(prof, **overrides)
    label = label_of(cprof) + ("" if overrides else f" (the {prof.name} profile)")
    task = load_task("mnist", k, seed=seed, split="validation",
                     profile=dataclasses.replace(cprof, n_test=N_VALIDATION))
    rows = []
    for method in of_kind("pixels") + [DIFFUSION]:
        if (label, k, seed, method) in done:
            continue
        det = METHODS[method].make(cprof, seed, task.extent)
        start = time.perf_counter()
        det.fit(task.train)
        fit_s = time.perf_counter() - start
        train_s = float(det.train_info_["seconds"]) if method == DIFFUSION else fit_s
        rows.append({"candidate": label, "class": k, "seed": seed, "method": method,
                     "side": cprof.digits_size, "n_train": len(task.train), "steps": cprof.train_steps,
                     "val_auroc": metrics.auroc(task.labels, det.decision_function(task.images)),
                     "train_s": train_s, "n_val": len(task.images)})
    return rows


def to_markdown(df: pd.DataFrame, prof: config.Profile) -> str:
    order = list(dict.fromkeys(df["candidate"]))
    mean = df.pivot_table(index="candidate", columns="method", values="val_auroc", aggfunc="mean").reindex(order)
    methods = [m for m in of_kind("pixels") + [DIFFUSION] if m in mean.columns]
    unet = df[df["method"] == DIFFUSION].groupby("candidate")
    classes = sorted(df["class"].unique(), key=int)
    lines = [f"Profile `{prof.name}` with the changes each row names, for the `mnist` tasks only. **Validation** "
             f"AUROC: trained on the training side of the official training split, scored on "
             f"{N_VALIDATION // 2} normal and {N_VALIDATION // 2} anomalous digits from its other half (no test "
             f"image is used); mean over classes {', '.join(classes)} and seeds "
             f"{', '.join(map(str, sorted(df['seed'].unique())))}. U-Net min = the median training minutes of one "
             "U-Net on 2 CPU cores, as recorded in its checkpoint when it was trained.", "",
             "| candidate | " + " | ".join(methods) + " | U-Net min | cells |",
             "|---|" + "---|" * len(methods) + "---|---|"]
    for cand in order:
        n = int(unet.size().get(cand, 0))
        minutes = unet["train_s"].median().get(cand, float("nan")) / 60
        lines.append(f"| {cand} | " + " | ".join(f"{mean.loc[cand, m]:.3f}" for m in methods)
                     + f" | {minutes:.1f} | {n} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", nargs="+", default=["2", "5", "8"], help="digits to sweep (default: 2 5 8)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--candidates", nargs="+", type=int, default=list(range(len(CANDIDATES))),
                    help="indices into CANDIDATES (default: all): " +
                         "; ".join(f"{i}: {c or 'the profile'}" for i, c in enumerate(CANDIDATES)))
    args = ap.parse_args(argv)
    bad = ([f"class {c!r}" for c in args.classes if c not in [str(d) for d in range(10)]]
           + [f"candidate {i}" for i in args.candidates if not 0 <= i < len(CANDIDATES)]
           + [f"seed {s}" for s in args.seeds if s < 0])
    if bad:
        print(f"mnist_validation: unknown {', '.join(bad)}: classes are 0-9, candidates 0-{len(CANDIDATES) - 1}, "
              "seeds >= 0.", file=sys.stderr)
        return 2
    prof = config.profile()
    csv = results_dir() / "mnist-validation.csv"
    df = pd.read_csv(csv, dtype={"class": str}) if csv.exists() else pd.DataFrame(columns=KEY)
    done = set(map(tuple, df[KEY].astype({"seed": int}).itertuples(index=False)))
    for i in args.candidates:
        for k in args.classes:
            for seed in args.seeds:
                rows = evaluate(CANDIDATES[i], k, seed, prof, done)
                if not rows:
                    continue
                df = pd.concat([df, pd.DataFrame(rows)], ignore_index=True)
                write_text_atomic(csv, df.to_csv(index=False))
                write_text_atomic(csv.with_suffix(".md"), to_markdown(df, prof))
                unet = [r for r in rows if r["method"] == DIFFUSION]
                print(f"{rows[0]['candidate']} | class {k} seed {seed}: " + ", ".join(f"{r['method']} {r['val_auroc']:.3f}" for r in rows)
                      + (f" | U-Net {unet[0]['train_s'] / 60:.1f} min" if unet else ""), flush=True)
    print(f"wrote {csv.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
