"""Robustness of anomaly detectors: nuisances that a person would still call normal, and adversarial
perturbations that try to hide an anomaly (notebook 11).

    x = perturb(normals, "jpeg", severity=3, seed=0)             # severity 0 is the identity
    study = fit_on_validation("textures", "grass", ["iforest", "ddpm-unet/noise"], prof)
    nuisance_curves(study)                                        # false alarms and AUROC per severity
    adversarial_curves(study, eps=(0, 2 / 255, 8 / 255))          # AUROC when PGD hides the anomalies

Images are float (N, C, H, W) in [-1, 1]; every perturbation keeps the shape and the range. Strengths
and attack budgets are given on the [0, 1] pixel scale, as in the literature: eps = 2/255 moves a pixel
by at most 4/255 in the course's [-1, 1] units.

The protocol. Each detector is fitted on the **validation** split's training images and its alarm
threshold is the 95th percentile of its scores on the validation split's clean normal images, which it
never trained on: about 5 % false alarms on clean normal images, by construction. The **test** images
are then perturbed and scored: a robust detector keeps its false-alarm rate near 5 % on perturbed
normal images, and its AUROC (perturbed normals against the anomalies) near the clean one.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from course_lib import config, data, metrics
from course_lib.anomaly_maps import smooth_maps
from course_lib.baselines import PixelBaseline, flatten_pixels
from course_lib.detector import Detector
from course_lib.diffusion_detector import DiffusionDetector
from course_lib.programs.bench.methods import METHODS, check_methods   # the benchmark's, one definition each

__all__ = ["NUISANCES", "SEVERITIES", "perturb", "jpeg_quantize", "clean_threshold", "false_alarm_rate",
           "pgd_attack", "knn_score_fn", "Study", "fit_on_validation", "nuisance_curves", "adversarial_curves",
           "cost_accuracy", "attack_budget"]

# Five severities per nuisance, each on the [0, 1] pixel scale, mild to strong. The strongest is still a
# picture that a person would call a clean digit, texture or photo, only a noisy, soft, dim or blocky one.
SEVERITIES: dict[str, tuple] = {
    "gaussian_noise": (0.02, 0.04, 0.06, 0.08, 0.10),          # standard deviation of added noise
    "gaussian_blur": (0.4, 0.6, 0.8, 1.0, 1.2),                 # standard deviation of the blur, px
    "brightness_contrast": ((0.9, 0.02), (0.8, 0.04), (0.7, 0.06), (0.6, 0.08), (0.5, 0.10)),  # (contrast, shift)
    "jpeg": (90, 70, 50, 30, 10),                               # JPEG quality
}
NUISANCES: tuple[str, ...] = tuple(SEVERITIES)
MAX_SEVERITY = 5

# The JPEG standard's luminance quantisation table (ITU T.81, Annex K), for quality 50.
_JPEG_TABLE = torch.tensor([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], dtype=torch.float64)


def _dct_matrix(n: int = 8) -> torch.Tensor:
    """The orthonormal DCT-II matrix D: coefficients = D @ block @ D.T, and block = D.T @ coefficients @ D."""
    k, i = torch.meshgrid(torch.arange(n, dtype=torch.float64), torch.arange(n, dtype=torch.float64), indexing="ij")
    d = math.sqrt(2 / n) * torch.cos(math.pi * (2 * i + 1) * k / (2 * n))
    d[0] /= math.sqrt(2)
    return d


def jpeg_quantize(images: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG's lossy step on every channel: 8x8 blocks, DCT, each coefficient rounded to a multiple of the
    standard luminance table scaled to `quality` (the IJG formula), inverse DCT, 8-bit pixels. No chroma
    subsampling and no entropy coding (lossless), so it is JPEG without the colour step."""
    if not 1 <= quality <= 100:
        raise ValueError(f"jpeg_quantize: quality must lie in [1, 100], got {quality}.")
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    table = ((_JPEG_TABLE * scale + 50) // 100).clamp(1, 255)
    n, c, h, w = images.shape
    x = torch.round((images.double() + 1) * 127.5) - 128                 # 8-bit levels, centred
    ph, pw = -h % 8, -w % 8
    x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
    H, W = x.shape[-2:]
    blocks = x.reshape(n, c, H // 8, 8, W // 8, 8).transpose(3, 4)        # (N, C, H/8, W/8, 8, 8)
    d = _dct_matrix()
    coef = d @ blocks @ d.T
    coef = torch.round(coef / table) * table
    x = (d.T @ coef @ d).transpose(3, 4).reshape(n, c, H, W)[..., :h, :w]
    x = torch.round(x + 128).clamp(0, 255)
    return (x / 127.5 - 1).to(images.dtype)


def perturb(images: torch.Tensor, nuisance: str, severity: int, seed: int = 0) -> torch.Tensor:
    """`images` (float (N, C, H, W) in [-1, 1]) changed by one nuisance at `severity` 0-5 (0: unchanged).
    Deterministic for a seed (only the noise draws random numbers); the result is clamped to [-1, 1]."""
    if nuisance not in SEVERITIES:
        raise ValueError(f"Unknown nuisance {nuisance!r}; valid nuisances: {', '.join(NUISANCES)}.")
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not 0 <= severity <= MAX_SEVERITY:
        raise ValueError(f"severity must be an integer in [0, {MAX_SEVERITY}] (0 = unchanged), got {severity!r}.")
    x = data.check_images(images, "perturb: images")
    if severity == 0:
        return x.clone()
    level = SEVERITIES[nuisance][severity - 1]
    if nuisance == "gaussian_noise":
        gen = torch.Generator().manual_seed(seed)
        noise = torch.randn(x.shape, generator=gen, dtype=x.dtype)
        out = x + 2 * level * noise.to(x.device)                          # std `level` on the [0, 1] scale
    elif nuisance == "gaussian_blur":
        out = smooth_maps(x.flatten(0, 1)[:, None], level).view_as(x)
    elif nuisance == "brightness_contrast":
        contrast, shift = level
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        out = (x - mean) * contrast + mean + 2 * shift                    # shift on the [0, 1] scale
    else:
        out = jpeg_quantize(x, level)
    return out.clamp(-1, 1)


def clean_threshold(normal_scores, q: float = 95.0) -> float:
    """The alarm threshold: the q-th percentile of a detector's scores on clean normal images it did not
    train on (the validation split's), so that about (100 - q) % of clean normal images raise an alarm."""
    scores = np.asarray(normal_scores, dtype=np.float64)
    if scores.ndim != 1 or len(scores) < 2 or not np.isfinite(scores).all():
        raise ValueError(f"clean_threshold: need at least 2 finite scores of normal images, got shape {scores.shape}.")
    if not 0 < q < 100:
        raise ValueError(f"clean_threshold: q must lie in (0, 100), got {q}.")
    return float(np.percentile(scores, q))


def false_alarm_rate(normal_scores, threshold: float) -> float:
    """The share of normal images whose score is above the threshold."""
    return float(np.mean(np.asarray(normal_scores, dtype=np.float64) > threshold))


ScoreFn = Callable[[torch.Tensor], torch.Tensor]


def pgd_attack(score_fn: ScoreFn, images: torch.Tensor, eps: float, *, steps: int = 5,
               step_size: float | None = None, batch_size: int = 32) -> torch.Tensor:
    """Projected gradient descent (Madry et al. 2018) that makes anomalies look normal: each step moves
    every pixel by `step_size` against the sign of the score's gradient, then back into the L-infinity
    ball of radius `eps` around the image and into [-1, 1]. `eps` and `step_size` are on the [0, 1]
    pixel scale (default step: 2.5 eps / steps); `score_fn` maps a batch to (B,) scores that carry
    gradients (``DiffusionDetector.differentiable_scores``, :func:`knn_score_fn`). Returns, per image,
    the iterate with the lowest score (the start included), as robust evaluations do (Croce & Hein 2020):
    an attack never makes an image look more anomalous than it was."""
    if not eps >= 0 or not math.isfinite(eps):
        raise ValueError(f"pgd_attack: eps must be a finite number >= 0 (on the [0, 1] pixel scale), got {eps}.")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"pgd_attack: steps must be an integer >= 1, got {steps!r}.")
    x0 = data.check_images(images, "pgd_attack: images").detach()
    if eps == 0:
        return x0.clone()
    radius, alpha = 2 * eps, 2 * (step_size if step_size is not None else 2.5 * eps / steps)
    out = []
    for i in range(0, len(x0), batch_size):
        start = x0[i:i + batch_size]
        x, best, best_score = start.clone(), start.clone(), None   # step 0 scores the start itself
        for step in range(steps + 1):
            x.requires_grad_(step < steps)
            s = score_fn(x)
            if not isinstance(s, torch.Tensor) or s.shape != (len(x),) or (step < steps and not s.requires_grad):
                raise ValueError("pgd_attack: score_fn must return a (B,) tensor of scores computed from its input "
                                 "with autograd (e.g. DiffusionDetector.differentiable_scores).")
            if not torch.isfinite(s).all():
                raise FloatingPointError("pgd_attack: score_fn returned NaN or infinite scores.")
            # keep each image's lowest-scoring iterate: a sign step can overshoot where the score curves
            score = s.detach().cpu()
            if best_score is None:
                best_score = score
            better = score < best_score
            best[better] = x.detach()[better]
            best_score = torch.minimum(score, best_score)
            if step == steps:
                break
            (grad,) = torch.autograd.grad(s.sum(), x)
            x = x.detach() - alpha * grad.sign()
            x = torch.minimum(torch.maximum(x, start - radius), start + radius).clamp(-1, 1)
        out.append(best)
    return torch.cat(out)


def knn_score_fn(detector: PixelBaseline, train_images: torch.Tensor) -> ScoreFn:
    """The kNN baseline's score as a differentiable torch function: the distance, in the standardized
    pixels the detector was fitted on, from an image to its k-th nearest training image. The same
    numbers as ``detector.decision_function``; a white-box attack on kNN, whose perturbations can then be
    tried on the baselines that have no gradient (Isolation Forest, COPOD, ...)."""
    if getattr(detector, "name", None) != "knn" or not hasattr(detector, "scaler_"):
        raise ValueError("knn_score_fn: expects a fitted make_baseline('knn') detector.")
    mean = torch.as_tensor(detector.scaler_.mean_, dtype=torch.float64)
    scale = torch.as_tensor(detector.scaler_.scale_, dtype=torch.float64)
    ref = (torch.as_tensor(flatten_pixels(data.as_images(train_images))) - mean) / scale
    k = int(detector.model_.n_neighbors)

    def score(x: torch.Tensor) -> torch.Tensor:
        f = (x.flatten(1).double() - mean) / scale
        return torch.cdist(f, ref).topk(k, largest=False).values[:, -1]
    return score


@dataclass
class Study:
    """Detectors fitted on a task's validation split, each with its alarm threshold, and the test task."""

    task: data.AnomalyTask                # the test split: what the curves score
    validation: data.AnomalyTask          # what the detectors were fitted and thresholded on
    detectors: dict[str, Detector]        # method name -> fitted detector
    thresholds: dict[str, float]          # method name -> the 95th percentile on clean validation normals
    fit_seconds: dict[str, float]         # a cached denoiser: the seconds recorded when it was trained
    seed: int = 0


def fit_on_validation(task_name: str, category: str, methods: Sequence[str], prof: config.Profile | None = None,
                      *, seed: int = 0, q: float = 95.0) -> Study:
    """Fit every method (the benchmark's names, :data:`course_lib.programs.bench.METHODS`) on the validation
    split's training images and fix its threshold on the validation split's clean normal images. The
    test images are not touched here."""
    prof = prof or config.profile()
    if not 50 <= q < 100:
        raise ValueError(f"fit_on_validation: q={q} must lie in [50, 100): the threshold is the q-th percentile "
                         "of clean validation normals, so that 100 - q % of them raise an alarm.")
    check_methods(methods)
    val = data.load_task(task_name, category, seed=seed, profile=prof, split="validation")
    test = data.load_task(task_name, category, seed=seed, profile=prof)
    normals = val.images[val.labels == 0]
    detectors, thresholds, seconds = {}, {}, {}
    for m in tqdm(methods, desc=f"fit on {val.name}"):
        det = METHODS[m].make(prof, seed, test.extent)
        if isinstance(det, DiffusionDetector):
            det.progress = False
        det.set_params(contamination=(100 - q) / 100)        # threshold_: the q-th percentile of `normals`
        t0 = time.perf_counter()
        det.fit(val.train, X_threshold=normals)
        seconds[m] = float(det.train_info_["seconds"]) if isinstance(det, DiffusionDetector) else time.perf_counter() - t0
        detectors[m], thresholds[m] = det, det.threshold_
    return Study(test, val, detectors, thresholds, seconds, seed)


def nuisance_curves(study: Study, nuisances: Sequence[str] = NUISANCES,
                    severities: Sequence[int] = tuple(range(MAX_SEVERITY + 1))) -> pd.DataFrame:
    """One row per method, nuisance and severity: the false-alarm rate of the perturbed test normals at the
    clean threshold, and the AUROC of the perturbed normals against the (clean) anomalies."""
    task = study.task
    normals, anomalies = task.images[task.labels == 0], task.images[task.labels == 1]
    rows = []
    with tqdm(total=len(study.detectors) * len(nuisances) * len(severities), desc=f"nuisances on {task.name}") as bar:
        for m, det in study.detectors.items():
            s_anom = det.decision_function(anomalies)
            for nuisance in nuisances:
                for sev in severities:
                    s_norm = det.decision_function(perturb(normals, nuisance, int(sev), seed=study.seed))
                    labels = np.r_[np.zeros(len(s_norm), np.int64), np.ones(len(s_anom), np.int64)]
                    rows.append({"task": task.name, "method": m, "nuisance": nuisance, "severity": int(sev),
                                 "false_alarm": false_alarm_rate(s_norm, study.thresholds[m]),
                                 "auroc": metrics.auroc(labels, np.r_[s_norm, s_anom])})
                    bar.update()
    return pd.DataFrame(rows)


def attack_budget(prof: config.Profile) -> dict:
    """PGD steps and how many anomalies each curve attacks, per profile (an attack costs 3x the score's
    NFE per step and image: a forward and a backward pass)."""
    return {"smoke": dict(steps=2, max_images=8), "cpu": dict(steps=5, max_images=48)}.get(
        prof.name, dict(steps=10, max_images=512))


def adversarial_curves(study: Study, eps: Sequence[float] = (0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 32 / 255), *,
                       steps: int = 5, max_images: int = 48, sources: Sequence[str] | None = None,
                       batch_size: int = 4) -> pd.DataFrame:
    """AUROC of each detector when PGD perturbs the anomalies (up to `max_images` of them) to look normal,
    against the clean test normals. The diffusion detectors and kNN (:func:`knn_score_fn`) are attacked
    through their own gradients ("white-box"). Every other detector has no gradient: it is scored on the
    perturbations made against each differentiable `sources` method ("transfer from ..."), by default
    every differentiable detector of the study. One row per method, eps and source.

    `batch_size` images are attacked at once, which bounds the attack's memory: the backward pass needs
    the activations of every network call of the score. The reconstruction score makes 40 calls per
    image in the cpu profile; its calls recompute their activations in the backward pass instead of
    keeping them (:meth:`DiffusionDetector.differentiable_scores`)."""
    task = study.task
    normals, anomalies = task.images[task.labels == 0], task.images[task.labels == 1][:max_images]
    clean_normal = {m: det.decision_function(normals) for m, det in study.detectors.items()}
    labels = np.r_[np.zeros(len(normals), np.int64), np.ones(len(anomalies), np.int64)]
    score_fns: dict[str, ScoreFn] = {}
    for m, det in study.detectors.items():
        if isinstance(det, DiffusionDetector):
            score_fns[m] = det.differentiable_scores
        elif isinstance(det, PixelBaseline) and det.name == "knn":
            score_fns[m] = knn_score_fn(det, study.validation.train)
    sources = list(sources if sources is not None else score_fns)
    missing = [s for s in sources if s not in score_fns]
    if missing:
        raise ValueError(f"adversarial_curves: sources {missing} are not differentiable detectors of this study "
                         f"({', '.join(score_fns) or 'none'}).")
    rows = []
    for e in tqdm(list(eps), desc=f"PGD on {task.name}"):
        adversarial = {m: pgd_attack(score_fns[m], anomalies, float(e), steps=steps, batch_size=batch_size)
                       for m in sources}
        for m, det in study.detectors.items():
            attacks = {"white-box": adversarial[m]} if m in score_fns and m in adversarial else \
                {f"transfer from {s}": x for s, x in adversarial.items() if s != m}
            for source, x in attacks.items():
                s = np.r_[clean_normal[m], det.decision_function(x)]
                rows.append({"task": task.name, "method": m, "eps": float(e), "eps_255": round(float(e) * 255, 3),
                             "source": source, "auroc": metrics.auroc(labels, s)})
    return pd.DataFrame(rows)


def cost_accuracy(study: Study) -> pd.DataFrame:
    """Per method: training seconds, milliseconds per image to score the clean test images (timed here),
    network evaluations per image, and clean test AUROC."""
    rows = []
    for m, det in study.detectors.items():
        t0 = time.perf_counter()
        scores = det.decision_function(study.task.images)
        ms = 1000 * (time.perf_counter() - t0) / len(study.task.images)
        rows.append({"task": study.task.name, "method": m, "train_s": study.fit_seconds[m], "ms_per_image": ms,
                     "nfe": det.nfe_per_image, "auroc": metrics.auroc(study.task.labels, scores)})
    return pd.DataFrame(rows)
