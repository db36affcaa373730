"""Ablations on ``textures``: one change at a time to the benchmark's diffusion detector, and what each
does to AUROC.

    python -m course_lib.programs.ablations                                  # grass + gravel, the profile's seeds
    python -m course_lib.programs.ablations --categories brick --seeds 0 --variants "noise score" "noise, 4"
    python -m course_lib.programs.ablations --levels                         # AUROC per defect kind, one t at a time

The baseline is the benchmark's noise-prediction detector (:meth:`course_lib.scoring.ScoreConfig.for_task`):
one antithetic noise pair at each of two small and two large t, the even part blurred at the large ones.
Every row is scored on the **validation** split by default (``load_task(..., split="validation")``: a
training set and labelled images from the training side of the photograph, no test image), since
settings are chosen here; ``--split test`` reports a choice on the test images.
Each variant changes one thing: two independent noise draws instead of the pair (the same NFE), the
pair without the blur, more pairs, two levels instead of four (half the NFE), middle timesteps only
(neither a small t for sharp defects nor a large t for smooth ones), no map calibration, the max of
the map as the image score instead of the peak (max minus the map's mean), the paper's reconstruction score,
mirror-image training crops, twice the training steps, or twice the image side: once with the same
timesteps, and once with the large ones moved up, since at a larger side the same t hides less of the
coarse content of the image (the gpu profile's timesteps rest on this row). Every row reports
image AUROC, pixel AUROC, the AUROC of each kind of defect on its own, the training seconds and the
NFE per image, as a mean over the seeds. It writes ``results/ablations-textures-validation.md``
(``ablations-textures.md`` with ``--split test``).
With ``--levels`` it instead scores one timestep at a time (:func:`level_sweep`) and writes
``results/levels-textures-validation.md``: which noise level sees which kind of defect.

:data:`DESIGN_VARIANTS` are the design choices the paper leaves open (schedule, T, width, training length,
U-Net or DiT, the reconstruction's t* and K), run one at a time by notebook 11 with :func:`run_variant`.

Trained models are cached like everywhere else (the checkpoint name hashes the training images and
the settings), so a rerun only scores (about 35 minutes in the ``cpu`` profile on 2 CPU cores). A fresh
run trains 4 models per category and seed, about 25 minutes each on 2 cores.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from course_lib import config, data, metrics
from course_lib.atomic import write_text_atomic
from course_lib.data.textures import TEXTURE_CLASSES
from course_lib.anomaly_maps import image_score_from_map, standardize_maps
from course_lib.diffusion_detector import DiffusionDetector
from course_lib.programs import results_dir
from course_lib.scoring import ScoreConfig


@dataclass(frozen=True)
class Variant:
    """One change to the benchmark's noise-prediction detector."""

    name: str
    score: dict = field(default_factory=dict)  # ScoreConfig fields to override
    flips: bool = False                        # also train on the crops mirrored left-right, up-down and both
    steps_factor: float = 1                    # train for this many times the profile's steps
    size_factor: int = 1                       # patches this many times the profile's side (and map sigma)
    schedule: str = "linear"                   # the noise schedule (course_lib.diffusion.SCHEDULES)
    timesteps: int | None = None               # T; every timestep of the score scaled to the same fraction of T
    denoiser: str = "unet"                     # the profile's U-Net ("unet") or DiT ("dit")
    width: int = 1                             # the U-Net's widths times this (preset suffix -w<k>)


VARIANTS: tuple[Variant, ...] = (
    Variant("noise score (benchmark)"),
    Variant("noise, 2 plain draws instead of a pair", score=dict(antithetic=False, coarse_sigma=0.0, n_noise=2)),
    Variant("noise, pair without the coarse blur", score=dict(coarse_sigma=0.0)),
    Variant("noise, 4 noise pairs", score=dict(n_noise=4)),
    Variant("noise, 2 levels (10, 300)", score=dict(t_stars=(10, 300))),
    Variant("noise, mid timesteps only (50, 100, 150, 200)", score=dict(t_stars=(50, 100, 150, 200))),
    # the large levels moved down to where the validation level sweep finds the smooth defects (t = 100-200)
    Variant("noise, levels (10, 25, 100, 200)", score=dict(t_stars=(10, 25, 100, 200))),
    Variant("noise, levels (10, 25, 200, 300)", score=dict(t_stars=(10, 25, 200, 300))),
    Variant("noise, raw maps (no calibration)", score=dict(calibrate=False)),
    Variant("noise, max of the map instead of the peak", score=dict(reduce="max")),
    Variant("reconstruction score (paper)", score=dict(score="reconstruction")),
    Variant("noise, mirrored crops in training", flips=True),
    Variant("noise, 2x training steps", steps_factor=2),
    Variant("noise, 2x image side", size_factor=2),
    Variant("noise, 2x image side, large t moved up (10, 500)", score=dict(t_stars=(10, 500)), size_factor=2),
)


# The design choices the paper leaves open (notebook 11), one at a time against the benchmark's detector:
# the schedule, T, the reconstruction score's t* and K, the width, the training length and the network.
DESIGN_VARIANTS: tuple[Variant, ...] = (
    Variant("noise score (benchmark)"),
    Variant("cosine schedule", schedule="cosine"),
    Variant("T = 250, timesteps scaled to T", timesteps=250),
    Variant("2x U-Net width", width=2),
    Variant("DiT instead of the U-Net", denoiser="dit"),
    Variant("1/8 of the training steps", steps_factor=1 / 8),
    Variant("1/4 of the training steps", steps_factor=1 / 4),
    Variant("1/2 of the training steps", steps_factor=1 / 2),
    Variant("reconstruction score (paper)", score=dict(score="reconstruction")),
    Variant("reconstruction, t* = 100 only", score=dict(score="reconstruction", t_stars=(100,))),
    Variant("reconstruction, t* = 250 only", score=dict(score="reconstruction", t_stars=(250,))),
    Variant("reconstruction, K = 5 steps", score=dict(score="reconstruction", steps=5)),
    Variant("reconstruction, K = 20 steps", score=dict(score="reconstruction", steps=20)),
)


def scaled_timesteps(t_stars: tuple[int, ...], T: int, reference_T: int = 1000) -> tuple[int, ...]:
    """Timesteps chosen for a chain of `reference_T` steps, moved to the same fraction of a chain of T
    (rounded half up, at least 1): (10, 25, 300, 400) at T = 250 is (3, 6, 75, 100)."""
    return tuple(max(1, int(t * T / reference_T + 0.5)) for t in t_stars)


def mirrored(images: torch.Tensor) -> torch.Tensor:
    """The images followed by their left-right, up-down and double mirror images (4x as many).
    Valid for textures, whose statistics do not change under a flip; not for digits or photos."""
    return torch.cat([images, images.flip(-1), images.flip(-2), images.flip(-2, -1)])


def run_variant(variant: Variant, category: str, seed: int, prof: config.Profile, split: str = "validation") -> dict:
    """Train (or load) and score one variant on one texture category's `split` ("validation": the
    settings are chosen here; "test": only to report a choice already made); returns its metrics."""
    T = variant.timesteps or prof.timesteps
    vprof = dataclasses.replace(prof, train_steps=max(1, round(prof.train_steps * variant.steps_factor)),
                                texture_size=prof.texture_size * variant.size_factor, timesteps=T,
                                t_stars=scaled_timesteps(prof.t_stars, T, prof.timesteps),
                                noise_timesteps=scaled_timesteps(prof.noise_timesteps, T, prof.timesteps))
    task = data.load_task("textures", category, seed=seed, profile=vprof, split=split)
    base = ScoreConfig.for_task(vprof, variant.score.get("score", "noise"), task.extent)   # timesteps scaled to T
    scaled = dict(sigma=base.sigma * variant.size_factor, coarse_sigma=base.coarse_sigma * variant.size_factor)
    sc = dataclasses.replace(base, **{**scaled, **variant.score})
    preset = vprof.dit_preset if variant.denoiser == "dit" else \
        vprof.unet_preset + (f"-w{variant.width}" if variant.width > 1 else "")
    # an AUROC needs no threshold: every training image trains (threshold_split=0), as in the benchmark
    det = DiffusionDetector(sc, prof=vprof, seed=seed, progress=False, schedule=variant.schedule, preset=preset,
                            threshold_split=0)
    # calibration uses the first images given to fit: with flips=True those are the unflipped crops
    det.fit(mirrored(task.train) if variant.flips else task.train)
    scores = det.decision_function(task.images)
    row = {"category": str(category), "variant": variant.name, "seed": seed, "split": split,
           "auroc": metrics.auroc(task.labels, scores),
           "pixel_auroc": metrics.pixel_auroc(task.masks, det.anomaly_maps(task.images)),
           "train_s": float(det.train_info_["seconds"]), "train_steps": int(det.train_info_["steps"]),
           "nfe": det.nfe_per_image}
    row.update({f"auroc[{k}]": v for k, v in metrics.auroc_by_kind(task.labels, scores, task.kinds).items()})
    return row


def run(categories: list[str], seeds: list[int], prof: config.Profile,
        variants: tuple[Variant, ...] = VARIANTS, split: str = "validation") -> list[dict]:
    rows = []
    with tqdm(total=len(categories) * len(variants) * len(seeds), desc="ablations") as bar:
        for category in categories:
            for variant in variants:
                for seed in seeds:
                    rows.append(run_variant(variant, category, seed, prof, split))
                    bar.set_postfix_str(f"{category}: {variant.name} AUROC {rows[-1]['auroc']:.3f}")
                    bar.update()
    return rows


LEVEL_GRID: tuple[int, ...] = (10, 25, 50, 100, 200, 300, 400, 500, 700)


def level_sweep(category: str, seed: int, prof: config.Profile, levels: tuple[int, ...] = LEVEL_GRID,
                split: str = "validation") -> list[dict]:
    """The benchmark's noise detector scored at one timestep at a time: one row per level with its image
    AUROC and the AUROC of each kind of defect. Shows which noise level sees which defect, so that a
    profile's ``noise_timesteps`` can be chosen from data (both ends: sharp defects at small t, smooth
    ones at large t; at a larger image side the large ones move up)."""
    task = data.load_task("textures", category, seed=seed, profile=prof, split=split)
    sc = dataclasses.replace(ScoreConfig.for_task(prof, "noise", task.extent), t_stars=tuple(levels),
                             calibrate=True)
    det = DiffusionDetector(sc, prof=prof, seed=seed, progress=False, threshold_split=0).fit(task.train)
    z_levels = standardize_maps(det.level_maps(task.images), det.calibration_)    # (L, N, 1, H, W)
    rows = []
    for t, z in zip(levels, z_levels):
        scores = image_score_from_map(z, sc.reduce).numpy()
        row = {"category": str(category), "seed": seed, "split": split, "t": int(t),
               "auroc": metrics.auroc(task.labels, scores)}
        row.update({f"auroc[{k}]": v for k, v in metrics.auroc_by_kind(task.labels, scores, task.kinds).items()})
        rows.append(row)
    return rows


def levels_to_markdown(rows: list[dict], prof: config.Profile, seeds: list[int]) -> str:
    """One table per category: AUROC (all defects, then each kind) by timestep, mean over the seeds."""
    df = pd.DataFrame(rows)
    kinds = sorted(k for k in df.columns if k.startswith("auroc["))
    lines = [f"Profile `{prof.name}` ({prof.texture_size} px), **{_split_of(rows)} split**, seeds "
             f"{', '.join(map(str, seeds))} (mean). The "
             f"benchmark's calibrated noise score at one timestep t at a time ({prof.noise_pairs} antithetic noise "
             f"pair(s) per level, the even part blurred by {prof.noise_coarse_sigma} px where SNR_t < 1, as in the "
             f"benchmark); the profile's noise score averages the levels {prof.noise_timesteps}.", ""]
    for category, d in df.groupby("category", sort=False):
        mean = d.groupby("t")[["auroc", *kinds]].mean()
        lines += [f"**{category}**", "", "| AUROC | " + " | ".join(f"t={t}" for t in mean.index) + " |",
                  "|" + "---|" * (len(mean.index) + 1)]
        for col in ["auroc", *kinds]:
            name = "all defects" if col == "auroc" else col[6:-1]
            lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in mean[col]) + " |")
        lines.append("")
    return "\n".join(lines)


def _split_of(rows: list[dict]) -> str:
    return "/".join(sorted({r.get("split", "test") for r in rows}))


def _filename(stem: str, split: str) -> str:
    """results/<stem>-validation.md; the test split keeps <stem>.md (what the settings were first chosen on)."""
    return f"{stem}.md" if split == "test" else f"{stem}-{split}.md"


def to_markdown(rows: list[dict], prof: config.Profile, seeds: list[int]) -> str:
    """One line per category and variant, mean over the seeds."""
    kinds = sorted({k for r in rows for k in r if k.startswith("auroc[")})
    head = ["category", "variant", "AUROC", "pixel AUROC", *[k[6:-1] for k in kinds], "train s", "NFE"]
    lines = [f"Profile `{prof.name}`, **{_split_of(rows)} split**, seeds {', '.join(map(str, seeds))} (mean). "
             "AUROC per kind = that "
             "kind of anomaly against all the normal images. train s = the seconds recorded when the model "
             "was trained (a cached model keeps its own; they vary with the load on the machine at the time).",
             "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["category"], r["variant"]), []).append(r)
    for (category, variant), rs in groups.items():
        mean = {k: float(np.mean([r.get(k, np.nan) for r in rs])) for k in ["auroc", "pixel_auroc", *kinds,
                                                                             "train_s", "nfe"]}
        cells = [category, variant, *(f"{mean[k]:.3f}" if np.isfinite(mean[k]) else "–"
                                      for k in ["auroc", "pixel_auroc", *kinds]),
                 f"{mean['train_s']:.0f}", f"{mean['nfe']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default=None, help="smoke | cpu | gpu (default: $COURSE_PROFILE)")
    ap.add_argument("--categories", nargs="+", default=["grass", "gravel"])
    ap.add_argument("--seeds", nargs="+", type=int, default=None, help="default: the profile's seeds")
    ap.add_argument("--variants", nargs="+", default=None, metavar="NAME",
                    help="a subset of the variants, by the start of their names (default: all)")
    ap.add_argument("--levels", nargs="*", type=int, default=None, metavar="T",
                    help="instead of the variants, score one timestep at a time (default grid: "
                         f"{' '.join(map(str, LEVEL_GRID))}) and write levels-textures.md")
    ap.add_argument("--split", choices=("validation", "test"), default="validation",
                    help="validation (default): choose settings here; test: report a choice already made")
    ap.add_argument("--out", type=Path, default=None, help="default: results/ of this clone (course_lib.programs.results_dir)")
    args = ap.parse_args(argv)
    prof = config.profile(args.profile)
    bad = [c for c in args.categories if c not in TEXTURE_CLASSES]
    if bad:
        ap.error(f"unknown texture categories {bad}; valid: {', '.join(TEXTURE_CLASSES)}")
    variants = VARIANTS
    if args.variants:
        variants = tuple(v for v in VARIANTS if any(v.name.startswith(p) for p in args.variants))
        if not variants:
            ap.error(f"no variant starts with {args.variants}; "
                     f"variants: {'; '.join(v.name for v in VARIANTS)}")
    seeds = args.seeds if args.seeds is not None else list(prof.seeds)
    config.seed_everything(seeds[0])
    args.out = args.out or results_dir()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.levels is not None:
        levels = tuple(args.levels) or LEVEL_GRID
        bad_t = [t for t in levels if not 1 <= t <= prof.timesteps]
        if bad_t:
            ap.error(f"timesteps {bad_t} lie outside [1, {prof.timesteps}] (1-indexed, as t* in the paper)")
        rows = [r for c in tqdm(args.categories, desc="levels") for seed in seeds
                for r in level_sweep(c, seed, prof, levels, args.split)]
        md = levels_to_markdown(rows, prof, seeds)
        write_text_atomic(args.out / _filename("levels-textures", args.split), md)
        print(md)
        return rows
    rows = run(args.categories, seeds, prof, variants, args.split)
    md = to_markdown(rows, prof, seeds)
    write_text_atomic(args.out / _filename("ablations-textures", args.split), md)
    print(md)
    return rows


if __name__ == "__main__":
    main()
