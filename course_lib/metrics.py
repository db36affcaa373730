"""Image- and pixel-level detection metrics, all computed by sklearn.

Convention everywhere: labels are 1 for an anomaly, 0 for normal; scores are higher = more anomalous.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def _check(labels, scores, what: str) -> tuple[np.ndarray, np.ndarray]:
    y, s = _as_numpy(labels).ravel(), _as_numpy(scores).astype(np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"{what}: {y.size} labels but {s.size} scores; they must match one to one.")
    if not np.isfinite(s).all():
        raise ValueError(f"{what}: scores contain NaN or inf ({(~np.isfinite(s)).sum()} of {s.size}).")
    classes = set(np.unique(y).tolist())
    if not classes <= {0, 1}:
        raise ValueError(f"{what}: labels must be 0 (normal) or 1 (anomaly), got values {sorted(classes)}.")
    if len(classes) < 2:
        raise ValueError(f"{what} needs both normal (0) and anomalous (1) examples; "
                         f"all labels are {classes.pop()}.")
    return y.astype(np.int64), s


def auroc(labels, scores) -> float:
    """Area under the ROC curve: the probability that a random anomaly outscores a random normal."""
    y, s = _check(labels, scores, "auroc")
    return float(roc_auc_score(y, s))


def auprc(labels, scores) -> float:
    """Area under the precision-recall curve (average precision); chance level = fraction of anomalies."""
    y, s = _check(labels, scores, "auprc")
    return float(average_precision_score(y, s))


def best_f1(labels, scores) -> tuple[float, float]:
    """The best F1 over all thresholds, and that threshold (predict anomaly when score >= threshold)."""
    y, s = _check(labels, scores, "best_f1")
    precision, recall, thresholds = precision_recall_curve(y, s)
    p, r = precision[:-1], recall[:-1]  # the last point (recall 0) has no threshold
    f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)
    i = int(np.argmax(f1))
    return float(f1[i]), float(thresholds[i])


def pixel_auroc(masks, maps) -> float:
    """AUROC over all pixels of all test images: masks (N, 1, H, W) bool, maps of the same shape."""
    m, a = _as_numpy(masks), _as_numpy(maps)
    if m.shape != a.shape:
        raise ValueError(f"pixel_auroc: masks {m.shape} and anomaly maps {a.shape} must have the same shape.")
    return auroc(m.astype(np.int64), a)


def auroc_by_kind(labels, scores, kinds) -> dict[str, float]:
    """AUROC of each kind of anomaly on its own: that kind's anomalies against *all* the normal images.

    kinds: one name per image (``AnomalyTask.kinds``, e.g. "scratch", "stain", or an MNIST-C corruption);
    the normal images' names are ignored. Tells which defects a detector misses.
    """
    y, s = _check(labels, scores, "auroc_by_kind")
    k = np.asarray(list(kinds), dtype=object)
    if k.shape != y.shape:
        raise ValueError(f"auroc_by_kind: {k.size} kinds but {y.size} labels; give one kind per image "
                         f"(AnomalyTask.kinds).")
    normal = y == 0
    return {str(name): auroc(y[normal | (k == name)], s[normal | (k == name)])
            for name in sorted(set(k[~normal]))}


def summary(labels, scores) -> dict[str, float]:
    """AUROC, AUPRC and best F1 in one dict (what the benchmark tables report)."""
    f1, _ = best_f1(labels, scores)
    return {"auroc": auroc(labels, scores), "auprc": auprc(labels, scores), "f1": f1}


def paired_bootstrap_auroc_diff(labels, scores_a, scores_b, *, n_boot: int = 2000, seed: int = 0,
                                level: float = 0.95) -> tuple[float, float, float]:
    """AUROC(b) - AUROC(a) on the test set, and a `level` percentile interval for it.

    Each bootstrap draw resamples the test images with replacement, the normal and the anomalous ones
    separately (so every draw keeps both classes in their numbers), and scores both detectors on the
    *same* draw (paired), so that what the two share (the hard images) cancels in the difference.
    """
    y, a = _check(labels, scores_a, "paired_bootstrap_auroc_diff")
    _, b = _check(labels, scores_b, "paired_bootstrap_auroc_diff")
    if n_boot < 1 or not 0 < level < 1:
        raise ValueError(f"paired_bootstrap_auroc_diff: n_boot={n_boot} must be >= 1 and level={level} in (0, 1).")
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    y_draw = np.r_[np.ones(len(pos), np.int64), np.zeros(len(neg), np.int64)]
    diffs = np.empty(n_boot)
    for i in range(n_boot):
        idx = np.r_[rng.choice(pos, len(pos)), rng.choice(neg, len(neg))]
        diffs[i] = roc_auc_score(y_draw, b[idx]) - roc_auc_score(y_draw, a[idx])
    lo, hi = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    return float(roc_auc_score(y, b) - roc_auc_score(y, a)), float(lo), float(hi)


def delong_diff_se(labels, scores_a, scores_b) -> float:
    """Standard error of AUROC(b) - AUROC(a) on one test set, in closed form (DeLong et al. 1988):
    each AUROC is a mean of placement values, and their covariance follows from those."""
    y, a = _check(labels, scores_a, "delong_diff_se")
    _, b = _check(labels, scores_b, "delong_diff_se")
    pos, neg = y == 1, y == 0

    def placements(s):  # V10: share of normals below each anomaly; V01: share of anomalies above each normal
        cmp = (s[pos][:, None] > s[neg][None, :]) + 0.5 * (s[pos][:, None] == s[neg][None, :])
        return cmp.mean(1), cmp.mean(0)
    (v10a, v01a), (v10b, v01b) = placements(a), placements(b)
    s10, s01 = np.cov(np.stack([v10a, v10b])), np.cov(np.stack([v01a, v01b]))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / pos.sum() + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / neg.sum()
    return float(np.sqrt(max(var, 0.0)))


def pareto_front(cost, quality) -> np.ndarray:
    """Boolean mask of the points that no other point beats: none is at most as costly and at least as
    good, and strictly better in one of the two (lower cost and higher quality are better)."""
    c, q = np.asarray(cost, np.float64).ravel(), np.asarray(quality, np.float64).ravel()
    if c.shape != q.shape:
        raise ValueError(f"pareto_front: {c.size} costs but {q.size} qualities; they must match one to one.")
    beaten = (c[None, :] <= c[:, None]) & (q[None, :] >= q[:, None]) & ((c[None, :] < c[:, None]) | (q[None, :] > q[:, None]))
    return ~beaten.any(1)
