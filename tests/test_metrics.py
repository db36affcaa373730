"""Metrics against hand-computed values (not against sklearn, which implements them)."""
import numpy as np
import pytest
import torch

from course_lib import metrics


def test_auroc_hand_computed():
    # anomalies score 0.9, 0.4; normals 0.1, 0.5, 0.3. Pairs (a > n): 0.9 beats all 3; 0.4 beats 0.1, 0.3.
    labels = [1, 1, 0, 0, 0]
    scores = [0.9, 0.4, 0.1, 0.5, 0.3]
    assert metrics.auroc(labels, scores) == pytest.approx(5 / 6)


def test_auroc_ties_count_half():
    assert metrics.auroc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    assert metrics.auroc([1, 1, 0], [2.0, 1.0, 1.0]) == pytest.approx((1 + 0.5) / 2)


def test_auroc_perfect_and_reversed():
    assert metrics.auroc([0, 0, 1, 1], [1, 2, 3, 4]) == 1.0
    assert metrics.auroc([0, 0, 1, 1], [4, 3, 2, 1]) == 0.0


def test_auprc_hand_computed():
    # ranked: 0.9 (anomaly), 0.5 (normal), 0.4 (anomaly) ... AP = sum (R_k - R_{k-1}) P_k = 0.5*1 + 0.5*(2/3)
    labels = [1, 1, 0, 0, 0]
    scores = [0.9, 0.4, 0.1, 0.5, 0.3]
    assert metrics.auprc(labels, scores) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_best_f1_hand_computed():
    labels = [1, 1, 0, 0, 0]
    scores = [0.9, 0.4, 0.1, 0.5, 0.3]
    # threshold 0.9: P=1, R=.5 -> F1=2/3; threshold 0.4: P=2/3, R=1 -> F1=0.8 (best)
    f1, thr = metrics.best_f1(labels, scores)
    assert f1 == pytest.approx(0.8)
    assert thr == pytest.approx(0.4)


def test_pixel_auroc_flattens_all_pixels():
    masks = torch.zeros(2, 1, 2, 2, dtype=torch.bool)
    masks[0, 0, 0, 0] = True
    maps = torch.zeros(2, 1, 2, 2)
    maps[0, 0, 0, 0] = 1.0     # the one anomalous pixel is the one highest score
    maps[1, 0, 1, 1] = 0.5
    assert metrics.pixel_auroc(masks, maps) == 1.0
    maps[1, 0, 1, 1] = 2.0     # now one normal pixel outranks it: 1 of 7 pairs lost
    assert metrics.pixel_auroc(masks, maps) == pytest.approx(6 / 7)


def test_auroc_by_kind_hand_computed():
    # normals 0.1, 0.5, 0.3; stains 0.9, 0.4 (5 of 6 pairs won); the scratch 0.2 beats only 0.1 (1 of 3)
    labels = [1, 1, 0, 0, 0, 1]
    scores = [0.9, 0.4, 0.1, 0.5, 0.3, 0.2]
    kinds = ["stain", "stain", "normal", "normal", "normal", "scratch"]
    assert metrics.auroc_by_kind(labels, scores, kinds) == pytest.approx({"scratch": 1 / 3, "stain": 5 / 6})
    with pytest.raises(ValueError, match="one kind per image"):
        metrics.auroc_by_kind(labels, scores, kinds[:-1])


def test_metrics_refuse_bad_input():
    with pytest.raises(ValueError, match="both normal"):
        metrics.auroc([1, 1], [0.2, 0.3])
    with pytest.raises(ValueError, match="must match"):
        metrics.auroc([0, 1, 1], [0.2, 0.3])
    with pytest.raises(ValueError, match="NaN"):
        metrics.auroc([0, 1], [np.nan, 0.3])
    with pytest.raises(ValueError, match="same shape"):
        metrics.pixel_auroc(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 3, 3))
