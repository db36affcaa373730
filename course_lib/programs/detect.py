"""Run the course's diffusion detector on a folder of your own images.

    python -m course_lib.programs.detect --train NORMAL_DIR --test DIR_TO_SCORE --out RESULTS_DIR
    python -m course_lib.programs.detect --train mvtec_anomaly_detection/bottle --out results-bottle --size 64

It trains a denoiser on the normal images (with a progress bar; a model trained before on the same
images and settings is found again in the user cache), scores every image to score, and writes:

- ``scores.csv``: one row per image: its path, its anomaly score (higher = more anomalous), the
  prediction (1 = anomaly: its score is above the 95th percentile of the scores of normal images held
  out from training, ``--holdout`` and ``--contamination``; the model's own training images would score
  too low and set the threshold too low) and, when the folder's subfolders give labels, the label;
- ``maps/<name>.png``: the image beside its anomaly heat map (where in the image the model is surprised);
- the AUROC (and the pixel AUROC, with masks), printed, when labels are known.

Folders: see :mod:`course_lib.data.own_images` (MVTec-AD's layout, or a folder of normal images and a
folder to score, labelled by subfolder or not at all). The profile sets the training length and the
denoiser; ``--steps`` overrides the length. On 2 CPU cores the ``cpu`` profile trains a 64 px model in
about a quarter of an hour; use ``--size 32`` for a first look.
"""
from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

from course_lib import config, metrics
from course_lib.atomic import atomic_write, write_text_atomic
from course_lib.data.own_images import read_test_images, read_training_images
from course_lib.diffusion_detector import DiffusionDetector
from course_lib.scoring import SCORES


def write_heat_map(path: Path, image, amap, score: float, flagged: bool) -> None:
    """A PNG of the image beside its anomaly map, written atomically."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from course_lib.viz import to_display

    fig, ax = plt.subplots(1, 2, figsize=(5, 2.6))
    shown = to_display(image[None])[0]
    ax[0].imshow(shown, cmap="gray" if shown.ndim == 2 else None, vmin=0, vmax=1)
    ax[0].set_title(f"score {score:.3g}{' · anomaly' if flagged else ''}", fontsize=8)
    ax[1].imshow(shown, cmap="gray" if shown.ndim == 2 else None, vmin=0, vmax=1)
    ax[1].imshow(amap[0].numpy(), cmap="inferno", alpha=0.6)
    ax[1].set_title("anomaly map", fontsize=8)
    for a in ax:
        a.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    with atomic_write(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True, type=Path, help="normal images (a folder, or an MVTec-layout root)")
    ap.add_argument("--test", type=Path, default=None,
                    help="images to score (default: TRAIN/test for an MVTec-layout root)")
    ap.add_argument("--out", required=True, type=Path, help="where scores.csv and maps/ go")
    ap.add_argument("--size", type=int, default=64, help="image side after resizing, px (default 64)")
    ap.add_argument("--channels", type=int, choices=(1, 3), default=3, help="1 = grey, 3 = RGB (default)")
    ap.add_argument("--score", choices=SCORES, default="noise", help="noise (default, 8 NFE) or reconstruction")
    ap.add_argument("--denoiser", choices=("unet", "dit"), default="unet")
    ap.add_argument("--extent", choices=("local", "global"), default="local",
                    help="local: defects on part of an image (default); global: the whole image differs")
    ap.add_argument("--profile", default=None, help="smoke | cpu | gpu (default: $COURSE_PROFILE, else by device)")
    ap.add_argument("--steps", type=int, default=None, help="training steps (default: the profile's)")
    ap.add_argument("--contamination", type=float, default=0.05,
                    help="share of held-out normal images above the alarm threshold (default 0.05)")
    ap.add_argument("--holdout", type=float, default=0.2,
                    help="share of the normal images kept out of training to set the threshold (default 0.2)")
    ap.add_argument("--no-maps", action="store_true", help="skip the heat-map PNGs")
    args = ap.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        ap.error("--steps must be >= 1")
    if not 0 < args.contamination <= 0.5 or not 0 < args.holdout < 1:
        ap.error("--contamination must lie in (0, 0.5] and --holdout strictly between 0 and 1")
    try:
        prof = config.profile(args.profile, **({"train_steps": args.steps} if args.steps else {}))
        train, root = read_training_images(args.train, size=args.size, channels=args.channels)
        test_dir = args.test or (root / "test" if root else None)
        if test_dir is None:
            ap.error("--test is needed unless --train is an MVTec-layout folder (train/good and test/)")
        scored = read_test_images(test_dir, size=args.size, channels=args.channels, mvtec_root=root)
    except (FileNotFoundError, ValueError) as err:
        ap.exit(2, f"{ap.prog}: error: {err}\n")
    n_held = int(round(args.holdout * len(train)))
    if n_held < 2 or len(train) - n_held < 2:
        ap.exit(2, f"{ap.prog}: error: {len(train)} normal images are too few to hold out {args.holdout:.0%} of them "
                   "for the threshold (at least 2 on each side); add normal images or change --holdout.\n")
    config.seed_everything(0)
    print(f"{len(train) - n_held} normal training images (+{n_held} held out for the threshold), {len(scored.paths)} "
          f"to score, {args.size}px x {args.channels}; profile {prof.name}, {prof.train_steps} training steps")
    # the detector sets the share --holdout of the normal images aside and puts threshold_ above all but
    # --contamination of their scores (course_lib.detector.Detector)
    det = DiffusionDetector(args.score, extent=args.extent, preset=prof.dit_preset if args.denoiser == "dit" else None,
                            prof=prof, contamination=args.contamination, threshold_split=args.holdout).fit(train)
    print(f"model: {det.train_info_['path']} ({'found in the cache' if det.train_info_['loaded'] else 'trained'})")
    threshold = det.threshold_
    scores = det.decision_function(scored.images)
    flagged = (scores > threshold).astype(int)             # det.predict, without scoring twice
    args.out.mkdir(parents=True, exist_ok=True)
    names = ["__".join(p.relative_to(test_dir).with_suffix("").parts) for p in scored.paths]
    rows = [["path", "score", "anomaly"] + (["label"] if scored.labels is not None else [])]
    for i, p in enumerate(scored.paths):
        rows.append([str(p), f"{scores[i]:.6g}", int(flagged[i])] + (
            [int(scored.labels[i])] if scored.labels is not None else []))
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    write_text_atomic(args.out / "scores.csv", buf.getvalue())
    maps = det.anomaly_maps(scored.images) if not args.no_maps or scored.masks is not None else None
    if not args.no_maps:
        (args.out / "maps").mkdir(exist_ok=True)
        for i, name in enumerate(names):
            write_heat_map(args.out / "maps" / f"{name}.png", scored.images[i], maps[i], float(scores[i]),
                           bool(flagged[i]))
    result = {"scores": scores, "anomaly": flagged, "threshold": threshold, "out": args.out}
    print(f"{int(flagged.sum())} of {len(scores)} images flagged (threshold {threshold:.4g}); "
          f"wrote {args.out / 'scores.csv'}" + ("" if args.no_maps else f" and {len(names)} maps in {args.out / 'maps'}"))
    labels = scored.labels
    if labels is not None and len(set(labels.tolist())) == 2:
        result["auroc"] = metrics.auroc(labels, scores)
        line = f"AUROC {result['auroc']:.3f} ({int(labels.sum())} anomalies, {int((labels == 0).sum())} normal)"
        if scored.masks is not None:
            result["pixel_auroc"] = metrics.pixel_auroc(scored.masks, maps)
            line += f", pixel AUROC {result['pixel_auroc']:.3f}"
        print(line)
    elif labels is not None:
        print("the labels have one class only: no AUROC")
    return result


if __name__ == "__main__":
    main()
