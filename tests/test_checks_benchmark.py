"""The exercise checks of notebook 10, and the library versions they grade against."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from course_lib import metrics
from course_lib.course import checks
from course_lib.course.checks import ExerciseError


def _bootstrap(labels, a, b, n_boot, seed, *, paired=True, stratified=True, replace=True, point="full"):
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)

    def draw():
        if stratified:
            return np.r_[rng.choice(pos, len(pos), replace=replace), rng.choice(neg, len(neg), replace=replace)]
        return rng.choice(len(labels), len(labels), replace=replace)
    diffs = []
    for _ in range(n_boot):
        ia = draw()
        ib = ia if paired else draw()
        diffs.append(roc_auc_score(labels[ib], b[ib]) - roc_auc_score(labels[ia], a[ia]))
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    d = roc_auc_score(labels, b) - roc_auc_score(labels, a) if point == "full" else float(np.mean(diffs))
    return d, lo, hi


def test_paired_bootstrap_check_accepts_the_library_and_a_hand_written_one():
    assert checks.check_paired_bootstrap(lambda y, a, b, n, s: metrics.paired_bootstrap_auroc_diff(y, a, b, n_boot=n, seed=s))
    assert checks.check_paired_bootstrap(_bootstrap)


@pytest.mark.parametrize("wrong, message", [
    (lambda *a: _bootstrap(*a, paired=False), "as wide as it should be"),
    (lambda *a: _bootstrap(*a, stratified=False), "no anomaly at all|raised ValueError"),
    (lambda *a: _bootstrap(*a, replace=False), "is empty|too narrow"),
    (lambda *a: _bootstrap(*a, point="mean"), "whole test set"),
    (lambda y, a, b, n, s: _bootstrap(y, a, b, n, None), "same seed"),
    (lambda y, a, b, n, s: _bootstrap(y, b, a, n, s), "the difference is"),
])
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
def test_paired_bootstrap_check_rejects_typical_mistakes(wrong, message):
    with pytest.raises(ExerciseError, match=message):
        checks.check_paired_bootstrap(wrong)


def test_library_bootstrap_width_matches_delong_and_delong_matches_monte_carlo():
    """DeLong's standard error against the spread of the AUROC difference over many fresh test sets."""
    rng = np.random.default_rng(0)

    def test_set():
        y = np.r_[np.ones(60, np.int64), np.zeros(60, np.int64)]
        a = rng.normal(size=120) + 1.0 * y
        return y, a, a + 0.6 * rng.normal(size=120) + 0.2 * y
    diffs = [roc_auc_score(y, b) - roc_auc_score(y, a) for y, a, b in (test_set() for _ in range(3000))]
    y, a, b = test_set()
    assert metrics.delong_diff_se(y, a, b) == pytest.approx(np.std(diffs), rel=0.2)
    d, lo, hi = metrics.paired_bootstrap_auroc_diff(y, a, b, n_boot=1500, seed=0)
    assert (hi - lo) / 3.92 == pytest.approx(metrics.delong_diff_se(y, a, b), rel=0.2)
    assert lo <= d <= hi and d == pytest.approx(roc_auc_score(y, b) - roc_auc_score(y, a), abs=1e-12)


def _front(cost, quality, *, strict=True):
    cost, quality = np.asarray(cost), np.asarray(quality)
    out = []
    for i in range(len(cost)):
        if strict:
            beaten = ((cost <= cost[i]) & (quality >= quality[i]) & ((cost < cost[i]) | (quality > quality[i]))).any()
        else:   # counts an exact tie as beating
            beaten = ((cost <= cost[i]) & (quality >= quality[i]) & (np.arange(len(cost)) != i)).any()
        out.append(not beaten)
    return np.array(out)


def test_pareto_check_accepts_the_library_and_rejects_mistakes():
    assert checks.check_pareto_front(metrics.pareto_front) and checks.check_pareto_front(_front)
    with pytest.raises(ExerciseError, match="duplicate"):
        checks.check_pareto_front(lambda c, q: _front(c, q, strict=False))
    with pytest.raises(ExerciseError, match="expected"):     # only "cheaper and better", ties ignored
        checks.check_pareto_front(lambda c, q: ~((np.asarray(c)[None] < np.asarray(c)[:, None])
                                                 & (np.asarray(q)[None] > np.asarray(q)[:, None])).any(1))
    with pytest.raises(ExerciseError, match="bool array"):
        checks.check_pareto_front(lambda c, q: _front(c, q).astype(int))


def test_metrics_refuse_bad_input():
    y, s = np.r_[np.ones(5), np.zeros(5)], np.arange(10.0)
    with pytest.raises(ValueError, match="n_boot=0 must be >= 1"):
        metrics.paired_bootstrap_auroc_diff(y, s, s, n_boot=0)
    with pytest.raises(ValueError, match="both normal"):
        metrics.delong_diff_se(np.ones(10), s, s)
    with pytest.raises(ValueError, match="3 costs but 2 qualities"):
        metrics.pareto_front([1, 2, 3], [0.5, 0.6])
