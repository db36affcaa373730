"""Choose a denoiser (preset and training steps) on validation data, never on the test images.

    python -m course_lib.programs.denoiser_validation                      # the candidates below, cpu profile
    python -m course_lib.programs.denoiser_validation --cells textures/grass digits/3 --seed 0

Each candidate is trained on the training side of a task (``load_task(..., split="validation")``)
and scored with the benchmark's two diffusion scores; the table gives validation AUROC and training
seconds, so presets can be compared at about the same cost. Writes ``results/denoiser-validation.md``.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from course_lib import config, metrics
from course_lib.data import load_task
from course_lib.diffusion_detector import DiffusionDetector
from course_lib.atomic import write_text_atomic
from course_lib.programs import results_dir
from course_lib.scoring import ScoreConfig

# (preset, training steps as a multiple of the profile's): the U-Net for reference, and DiTs of about its
# training time on 2 CPU cores (patch 8 steps ~3x faster than patch 4, so it gets 3x the steps)
CANDIDATES: tuple[tuple[str, int], ...] = (("unet-small", 1), ("dit-ti4-d6", 1), ("dit-ti8-d6", 3))
CELLS: tuple[str, ...] = ("textures/grass", "digits/3")


def evaluate(preset: str, steps_factor: int, cell: str, seed: int, prof: config.Profile,
             scores: tuple[str, ...] = ("noise",)) -> list[dict]:
    """Validation AUROC of one candidate on one task/category, for each of the diffusion `scores`."""
    name, category = cell.split("/", 1)
    cprof = dataclasses.replace(prof, train_steps=prof.train_steps * steps_factor)
    task = load_task(name, category, seed=seed, profile=cprof, split="validation")
    rows = []
    for score in scores:
        det = DiffusionDetector(ScoreConfig.for_task(cprof, score, task.extent), preset=preset, prof=cprof,
                                seed=seed, progress=False, threshold_split=0).fit(task.train)   # AUROC only
        rows.append({"cell": cell, "preset": preset, "steps": cprof.train_steps, "score": score,
                     "val_auroc": metrics.auroc(task.labels, det.decision_function(task.images)),
                     "train_s": float(det.train_info_["seconds"])})
    return rows


def to_markdown(df: pd.DataFrame, prof: config.Profile, seed: int) -> str:
    wide = df.pivot_table(index=["preset", "steps"], columns=["cell", "score"], values="val_auroc", sort=False)
    secs = df.groupby(["preset", "steps"], sort=False)["train_s"].mean()
    lines = [f"Profile `{prof.name}`, seed {seed}. **Validation** AUROC (tasks built from the training side of "
             "each dataset, `data.validation`; no test image is used). train s = mean training seconds per "
             "model, as recorded in its checkpoint when it was trained (other jobs may have shared the machine "
             "then: the benchmark compares training cost side by side).", "",
             "| preset | steps | " + " | ".join(f"{c} {s}" for c, s in wide.columns) + " | train s |",
             "|---|---|" + "---|" * len(wide.columns) + "---|"]
    for (preset, steps), row in wide.iterrows():
        lines.append(f"| {preset} | {steps} | " + " | ".join(f"{v:.3f}" for v in row) +
                     f" | {secs[(preset, steps)]:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default=None, help="smoke | cpu | gpu (default: $COURSE_PROFILE)")
    ap.add_argument("--cells", nargs="+", default=list(CELLS), help="task/category pairs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scores", nargs="+", default=["noise"], choices=["noise", "reconstruction"],
                    help="default: the noise score, the benchmark's best (reconstruction costs 5x its NFE)")
    ap.add_argument("--out", type=Path, default=None, help="default: denoiser-validation.md in results/ (course_lib.programs.results_dir)")
    args = ap.parse_args(argv)
    prof = config.profile(args.profile)
    config.seed_everything(args.seed)
    args.out = args.out or results_dir() / "denoiser-validation.md"
    rows = []
    with tqdm(total=len(CANDIDATES) * len(args.cells), desc="candidates") as bar:
        for cell in args.cells:
            for preset, factor in CANDIDATES:
                rows += evaluate(preset, factor, cell, args.seed, prof, tuple(args.scores))
                bar.set_postfix_str(f"{cell} {preset} x{factor}: {rows[-1]['val_auroc']:.3f}")
                bar.update()
    df = pd.DataFrame(rows)
    md = to_markdown(df, prof, args.seed)
    write_text_atomic(args.out, md)
    print(md)
    return df


if __name__ == "__main__":
    main()
