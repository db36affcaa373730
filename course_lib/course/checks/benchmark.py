"""Self-checks for the exercises of notebook 10 (reading a benchmark).

* ``check_paired_bootstrap``: the interval for a difference of two AUROCs, checked against sklearn for
  the point estimate and against DeLong's closed-form standard error (an independent route) for its width.
* ``check_pareto_front``: which methods no other method beats on both cost and AUROC, checked against a
  pairwise comparison of every two methods, with ties.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from sklearn.metrics import roc_auc_score

from course_lib.metrics import delong_diff_se
from course_lib.course.checks._core import call_learner as _call, fail, passed

__all__ = ["check_paired_bootstrap", "check_pareto_front"]


def _triple(out, what: str) -> tuple[float, float, float]:
    try:
        d, lo, hi = (float(v) for v in out)
    except (TypeError, ValueError):
        fail(what, f"expected (difference, low, high), three numbers; got {out!r}.")
    return d, lo, hi


def check_paired_bootstrap(fn: Callable) -> bool:
    """``fn(labels, scores_a, scores_b, n_boot, seed) -> (diff, low, high)``: AUROC(b) - AUROC(a) on the
    whole test set and a 95 % percentile interval from `n_boot` stratified, paired resamples."""
    what = "paired bootstrap interval"
    rng = np.random.default_rng(5)
    y = np.r_[np.ones(100, np.int64), np.zeros(100, np.int64)]
    a = rng.normal(size=200) + 1.0 * y
    b = a + 0.5 * rng.normal(size=200) + 0.3 * y          # b: a with a little more signal, strongly correlated
    d, lo, hi = _triple(_call(fn, what, y.copy(), a.copy(), b.copy(), 500, 0), what)
    want = roc_auc_score(y, b) - roc_auc_score(y, a)
    if abs(d - want) > 1e-9:
        fail(what, f"the difference is {d:.4f}, but AUROC(b) - AUROC(a) on the whole test set is {want:.4f}.",
             "The point estimate uses all the test images once; the resamples only give the interval.")
    if not lo <= d <= hi or not lo < hi:
        fail(what, f"the interval [{lo:.4f}, {hi:.4f}] does not contain the difference {d:.4f} or is empty.",
             "Take the 2.5 % and 97.5 % quantiles of the resampled differences.")
    width, se = (hi - lo) / (2 * 1.96), delong_diff_se(y, a, b)
    if width > 1.5 * se:
        fail(what, f"the interval is {width / se:.1f}x as wide as it should be (its half-width / 1.96 is "
                   f"{width:.4f}; DeLong's standard error of the difference is {se:.4f}).",
             "Pair the resamples: draw one set of image indices per resample and score both detectors on it, "
             "so that the images both find hard cancel in the difference.")
    if width < 0.66 * se:
        fail(what, f"the interval is too narrow ({width:.4f} against DeLong's standard error {se:.4f}).",
             "Resample with replacement (rng.choice(idx, len(idx))), as many images as the test set has.")
    again = _triple(_call(fn, what, y.copy(), a.copy(), b.copy(), 500, 0), what)
    if again != (d, lo, hi):
        fail(what, "two calls with the same seed gave different intervals.", "Draw from np.random.default_rng(seed).")
    same = _triple(_call(fn, what, y.copy(), a.copy(), a.copy(), 100, 1), what)
    if max(abs(v) for v in same) > 1e-12:
        fail(what, f"a detector against itself gives {same}, not (0, 0, 0).", "Score both on the same resample.")
    few = np.r_[np.ones(4, np.int64), np.zeros(150, np.int64)]        # 4 anomalies: a plain resample loses them
    s = rng.normal(size=154) + 2.0 * few
    d, lo, hi = _triple(_call(fn, what, few, s, s + 0.1 * rng.normal(size=154), 300, 2), what)
    if not np.isfinite([d, lo, hi]).all():
        fail(what, f"with 4 anomalies among 154 images the result is {(d, lo, hi)}: some resamples had no anomaly "
                   "at all, so their AUROC is undefined.",
             "Stratify: resample the anomalies and the normal images separately, each as many as there are.")
    return passed(what)


def _front_reference(cost: np.ndarray, quality: np.ndarray) -> np.ndarray:
    keep = np.ones(len(cost), bool)
    for i in range(len(cost)):
        for j in range(len(cost)):
            if cost[j] <= cost[i] and quality[j] >= quality[i] and (cost[j] < cost[i] or quality[j] > quality[i]):
                keep[i] = False
    return keep


def check_pareto_front(fn: Callable) -> bool:
    """``fn(cost, quality) -> bool array``: True for the points that no other point beats (at most as costly,
    at least as good, strictly better in one of the two)."""
    what = "Pareto front"
    cases = {
        "a simple trade-off": ([1.0, 2.0, 3.0, 2.5], [0.6, 0.8, 0.9, 0.7]),
        "an exact duplicate (neither beats the other)": ([1.0, 1.0, 2.0], [0.7, 0.7, 0.9]),
        "equal cost, better AUROC": ([1.0, 1.0, 5.0], [0.6, 0.8, 0.8]),
        "equal AUROC, lower cost": ([0.5, 2.0, 3.0], [0.9, 0.9, 0.95]),
    }
    rng = np.random.default_rng(3)
    cases["twenty random methods"] = (rng.uniform(0, 10, 20).round(1).tolist(), rng.uniform(0.5, 1, 20).round(2).tolist())
    for name, (c, q) in cases.items():
        c, q = np.array(c), np.array(q)
        got = np.asarray(_call(fn, what, c.copy(), q.copy()))
        want = _front_reference(c, q)
        if got.shape != want.shape or got.dtype != bool:
            fail(what, f"expected a bool array of shape {want.shape}, got {got.dtype} of shape {got.shape}.")
        if not np.array_equal(got, want):
            fail(what, f"on {name} (cost {c.tolist()}, AUROC {q.tolist()}) you marked {got.tolist()}, expected "
                       f"{want.tolist()}.",
                 "A point is beaten when another is at most as costly AND at least as good AND strictly better "
                 "in one of the two; a tie in both beats nobody.")
    return passed(what)
