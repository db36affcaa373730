"""The exercise checks of notebooks 00 and 01: each passes a correct answer and rejects typical wrong ones."""
import numpy as np
import pytest
import torch

from course_lib.course import checks
from course_lib.course.checks import ExerciseError


# --- check_auroc --------------------------------------------------------------------------------------
def auroc_pairs(labels, scores):
    """Correct: count (anomaly, normal) pairs, ties 1/2."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=float)
    a, n = scores[labels == 1], scores[labels == 0]
    diff = a[:, None] - n[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def auroc_no_ties(labels, scores):
    """Wrong: ties count 0."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=float)
    a, n = scores[labels == 1], scores[labels == 0]
    return float((a[:, None] > n[None, :]).mean())


def auroc_flipped(labels, scores):
    """Wrong: treats label 0 as the anomaly."""
    return auroc_pairs(1 - np.asarray(labels), scores)


def test_check_auroc():
    assert checks.check_auroc(auroc_pairs)
    with pytest.raises(ExerciseError, match="half a win"):
        checks.check_auroc(auroc_no_ties)
    with pytest.raises(ExerciseError, match="sklearn gives"):
        checks.check_auroc(auroc_flipped)
    with pytest.raises(ExerciseError, match="raised ZeroDivisionError"):
        checks.check_auroc(lambda y, s: 1 / 0)


def test_auroc_cases_cover_ties_against_hand_values():
    """The reference cases themselves: the tie case is 0.875 by hand (3.5 winning pairs of 4)."""
    from course_lib.course.checks.foundation import _auroc_cases
    cases = {d: (y, s) for d, y, s in _auroc_cases()}
    y, s = cases["one tie between an anomaly and a normal"]
    assert auroc_pairs(y, s) == pytest.approx(3.5 / 4)
    assert auroc_no_ties(y, s) == pytest.approx(3 / 4)


# --- check_to_unit_range ------------------------------------------------------------------------------
def test_check_to_unit_range():
    assert checks.check_to_unit_range(lambda x: x.float() / 127.5 - 1)
    assert checks.check_to_unit_range(lambda x: 2 * (x.double() / 255) - 1)
    with pytest.raises(ExerciseError, match="0 -> -1"):
        checks.check_to_unit_range(lambda x: x.float() / 255)          # [0, 1], not [-1, 1]
    with pytest.raises(ExerciseError, match="dtype"):
        checks.check_to_unit_range(lambda x: x * 2 - 1)               # uint8 arithmetic wraps
    with pytest.raises(ExerciseError, match="torch.Tensor"):
        checks.check_to_unit_range(lambda x: x.numpy() / 127.5 - 1)
    with pytest.raises(ExerciseError, match="shape"):
        checks.check_to_unit_range(lambda x: (x.float() / 127.5 - 1).flatten())


# --- check_one_class_labels ---------------------------------------------------------------------------
def one_class_labels(classes, k, protocol):
    classes = np.asarray(classes)
    return (classes != k).astype(int) if protocol == "one-class" else (classes == k).astype(int)


def test_check_one_class_labels():
    assert checks.check_one_class_labels(one_class_labels)
    assert checks.check_one_class_labels(lambda c, k, p: torch.as_tensor(one_class_labels(c, k, p)))
    with pytest.raises(ExerciseError, match="exactly flipped"):
        checks.check_one_class_labels(lambda c, k, p: (np.asarray(c) == k).astype(int))
    with pytest.raises(ExerciseError, match="shape"):
        checks.check_one_class_labels(lambda c, k, p: one_class_labels(c, k, p)[:-1])


# --- check_standardize ---------------------------------------------------------------------------------
def standardize(x_train, x_test):
    mean, std = x_train.mean(0), x_train.std(0)
    return (x_test - mean) / np.where(std == 0, 1.0, std)


def test_check_standardize():
    assert checks.check_standardize(standardize)
    with pytest.raises(ExerciseError, match="NaN or inf"):
        with np.errstate(divide="ignore", invalid="ignore"):
            checks.check_standardize(lambda tr, te: (te - tr.mean(0)) / tr.std(0))
    with pytest.raises(ExerciseError, match="fitted the mean and std on x_test"):
        checks.check_standardize(lambda tr, te: standardize(te, te))
    with pytest.raises(ExerciseError, match="ddof=1"):
        checks.check_standardize(
            lambda tr, te: (te - tr.mean(0)) / np.where(tr.std(0) == 0, 1, tr.std(0, ddof=1)))
    with pytest.raises(ExerciseError, match="one row per TEST sample"):
        checks.check_standardize(lambda tr, te: standardize(tr, tr))


# --- check_confusion_at_threshold ---------------------------------------------------------------------
def confusion(labels, scores, threshold):
    pred = np.asarray(scores) >= threshold
    y = np.asarray(labels) == 1
    return int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & ~y).sum()), int((~pred & y).sum())


def test_check_confusion_at_threshold():
    assert checks.check_confusion_at_threshold(confusion)
    with pytest.raises(ExerciseError, match="EQUALS the threshold"):   # > instead of >=
        checks.check_confusion_at_threshold(lambda y, s, t: confusion(y, np.asarray(s) - 1e-9, t))
    with pytest.raises(ExerciseError, match="order"):                  # sklearn's ravel order
        checks.check_confusion_at_threshold(lambda y, s, t: confusion(y, s, t)[::-1])
    with pytest.raises(ExerciseError, match="four counts"):
        checks.check_confusion_at_threshold(lambda y, s, t: 3)


def test_check_confusion_reference_by_hand():
    """The correct answer used above, on a case counted by hand."""
    labels = [0, 0, 1, 1, 1]
    scores = [0.1, 0.5, 0.5, 0.2, 0.9]
    assert confusion(labels, scores, 0.5) == (2, 1, 1, 1)
