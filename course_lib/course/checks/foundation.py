"""Self-checks for the exercises of notebooks 00 (setup and data) and 01 (classical baselines).

Every check calls the learner's function on several small cases and compares it with an
independent reference (sklearn, or values worked out by hand). It prints a ✓ or raises
:class:`~course_lib.course.checks._core.ExerciseError` that says what went wrong and how to fix it.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from course_lib.course.checks._core import call_learner as _call, fail, passed

__all__ = [
    "check_auroc", "check_to_unit_range", "check_one_class_labels",
    "check_standardize", "check_confusion_at_threshold",
]


def _as_array(x, what: str, name: str) -> np.ndarray:
    """The learner's answer as a float64 numpy array (accepts numpy, torch and python numbers)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        fail(what, f"{name} could not be turned into numbers ({err}).",
             "Return a number, a numpy array or a torch tensor.")
        raise  # unreachable: fail() raises



# --- 00: the AUROC by counting pairs ------------------------------------------------------------------
def _auroc_cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(description, labels, scores): hand-made cases, including ties, plus random ones."""
    cases = [
        ("perfect separation", np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])),
        ("perfectly wrong", np.array([0, 0, 1, 1]), np.array([0.8, 0.9, 0.1, 0.2])),
        ("all scores tied (must give 0.5)", np.array([0, 1, 0, 1, 1]), np.full(5, 3.0)),
        ("one tie between an anomaly and a normal", np.array([0, 0, 1, 1]), np.array([0.1, 0.5, 0.5, 0.9])),
    ]
    rng = np.random.default_rng(1234)
    for i in range(4):
        n = int(rng.integers(6, 40))
        labels = np.r_[0, 1, rng.integers(0, 2, n - 2)]
        scores = rng.integers(0, 5, n).astype(float) if i % 2 else rng.normal(size=n) + labels
        cases.append((f"random case {i} ({'many ties' if i % 2 else 'no ties'}, n={n})", labels, scores))
    return cases


def check_auroc(fn: Callable) -> bool:
    """``fn(labels, scores) -> float``: the AUROC as the fraction of (anomaly, normal) pairs in which the
    anomaly scores higher, ties counting 1/2. Compared with ``sklearn.metrics.roc_auc_score``."""
    from sklearn.metrics import roc_auc_score
    what = "auroc"
    for desc, labels, scores in _auroc_cases():
        got = _as_array(_call(fn, what, labels.copy(), scores.copy()), what, "the AUROC")
        want = roc_auc_score(labels, scores)
        if got.size != 1:
            fail(what, f"returned an array of shape {got.shape}, expected one number.",
                 "Divide the number of winning pairs by the number of pairs: a single float.")
        if not np.isclose(float(got), want, atol=1e-9):
            ties = "tie" in desc
            hint = ("A tie between an anomaly and a normal counts as half a win: add 0.5 for each pair "
                    "with equal scores." if ties else
                    "Count the pairs (anomaly i, normal j) with score_i > score_j and divide by "
                    "n_anomalies * n_normals. Labels are 1 for an anomaly.")
            fail(what, f"on '{desc}' you returned {float(got):.4f}, sklearn gives {want:.4f}.\n"
                       f"  labels={labels.tolist()}\n  scores={np.round(scores, 3).tolist()}", hint)
    return passed(what)


# --- 00: uint8 -> [-1, 1] ----------------------------------------------------------------------------
def check_to_unit_range(fn: Callable) -> bool:
    """``fn(images_uint8) -> float tensor``: map uint8 images (0..255) linearly to [-1, 1]
    (0 -> -1, 255 -> +1), keep the shape, return a floating-point torch tensor."""
    what = "to_unit_range"
    rng = np.random.default_rng(7)
    x = rng.integers(0, 256, size=(3, 1, 5, 4), dtype=np.uint8)
    x[0, 0, 0, :3] = [0, 255, 128]
    want = x.astype(np.float64) / 127.5 - 1.0  # independent: 127.5 is the midpoint of 0..255
    out = _call(fn, what, torch.from_numpy(x.copy()))
    if not isinstance(out, torch.Tensor):
        fail(what, f"returned a {type(out).__name__}, expected a torch.Tensor.",
             "Use torch operations, e.g. x.float() / 127.5 - 1.")
    if not out.is_floating_point():
        fail(what, f"returned dtype {out.dtype}; the course's images are floating point.",
             "Convert before dividing: x.float(). Integer arithmetic on uint8 wraps around at 256.")
    if tuple(out.shape) != x.shape:
        fail(what, f"returned shape {tuple(out.shape)}, expected {x.shape} (the input's shape).")
    got = out.detach().double().numpy()
    for j, (value, target) in enumerate(((0, -1.0), (255, 1.0))):  # x[0, 0, 0, :2] = [0, 255]
        if not np.isclose(got[0, 0, 0, j], target, atol=1e-5):
            fail(what, f"pixel value {value} became {got[0, 0, 0, j]:.4f}, expected {target}.",
                 "The map is linear: 0 -> -1 and 255 -> +1. Dividing by 255 gives [0, 1]; "
                 "then multiply by 2 and subtract 1.")
    if not np.allclose(got, want, atol=1e-5):
        i = np.unravel_index(np.argmax(np.abs(got - want)), x.shape)
        fail(what, f"pixel value {x[i]} became {got[i]:.4f}, expected {want[i]:.4f}.",
             "Every value v should become v / 127.5 - 1.")
    return passed(what)


# --- 00: the one-class protocol's labels --------------------------------------------------------------
def check_one_class_labels(fn: Callable) -> bool:
    """``fn(classes, k, protocol) -> labels``: the anomaly labels (1 = anomaly) of images with class ids
    `classes` when class `k` is normal ("one-class") or when class `k` is the anomaly
    ("leave-one-class-out")."""
    what = "one_class_labels"
    rng = np.random.default_rng(3)
    classes = rng.integers(0, 5, 30)
    for k in (0, 3):
        for protocol, want in (("one-class", (classes != k).astype(int)),
                               ("leave-one-class-out", (classes == k).astype(int))):
            got = _as_array(_call(fn, what, classes.copy(), k, protocol), what, "the labels")
            if got.shape != want.shape:
                fail(what, f"returned shape {got.shape} for {classes.shape[0]} images; expected {want.shape}.")
            if not np.array_equal(got, want):
                flipped = np.array_equal(got, 1 - want)
                fail(what, f"wrong labels for protocol={protocol!r}, k={k}"
                           f"{' (exactly flipped)' if flipped else ''}.\n"
                           f"  classes={classes.tolist()}\n  yours  ={got.astype(int).tolist()}\n"
                           f"  want   ={want.tolist()}",
                     "Label 1 means ANOMALY. In 'one-class', class k is normal (label 0) and every other "
                     "class is an anomaly; in 'leave-one-class-out' it is the other way round.")
    return passed(what)


# --- 01: standardize with statistics of the normal training data --------------------------------------
def check_standardize(fn: Callable) -> bool:
    """``fn(x_train, x_test) -> z_test``: subtract the per-feature mean and divide by the per-feature
    standard deviation, both computed on `x_train` (the normal data) only, and apply them to `x_test`.
    A feature that is constant in training (std 0) is divided by 1, as sklearn's StandardScaler does."""
    from sklearn.preprocessing import StandardScaler
    what = "standardize"
    rng = np.random.default_rng(11)
    x_train = rng.normal(loc=[2.0, -1.0, 0.0, 5.0], scale=[1.0, 3.0, 0.5, 1.0], size=(50, 4))
    x_train[:, 3] = 5.0  # a constant feature, like the always-black border pixels of the digits
    x_test = rng.normal(loc=0.0, scale=2.0, size=(20, 4))
    want = StandardScaler().fit(x_train).transform(x_test)
    got = _as_array(_call(fn, what, x_train.copy(), x_test.copy()), what, "z_test")
    if got.shape != want.shape:
        fail(what, f"returned shape {got.shape}, expected {want.shape} (one row per TEST sample).",
             "Return the standardized x_test, not x_train.")
    if not np.isfinite(got).all():
        fail(what, "your output contains NaN or inf.",
             "A pixel that is constant in the training set has std 0. Replace a zero std by 1 "
             "(sklearn does the same), e.g. std = np.where(std == 0, 1, std).")
    if np.allclose(got, StandardScaler().fit(x_test).transform(x_test), atol=1e-6):
        fail(what, "you fitted the mean and std on x_test.",
             "The statistics must come from the normal training data x_train only; using the test set "
             "leaks information about the anomalies (and changes with every test batch).")
    if np.allclose(got[:, :3], (x_test[:, :3] - x_train[:, :3].mean(0)) / x_train[:, :3].std(0, ddof=1), atol=1e-6):
        fail(what, "you used the sample standard deviation (ddof=1).",
             "Use the population std (ddof=0), as StandardScaler does: np.std(x, axis=0).")
    if not np.allclose(got, want, atol=1e-6):
        fail(what, f"the largest difference from sklearn's StandardScaler is {np.abs(got - want).max():.3g}.",
             "Per feature (axis=0): z = (x_test - mean(x_train)) / std(x_train).")
    return passed(what)


# --- 01: the confusion matrix at one threshold ----------------------------------------------------------
def check_confusion_at_threshold(fn: Callable) -> bool:
    """``fn(labels, scores, threshold) -> (tp, fp, tn, fn)``: predict "anomaly" when score >= threshold,
    then count true/false positives/negatives (positive = anomaly). Compared with sklearn."""
    from sklearn.metrics import confusion_matrix
    what = "confusion_at_threshold"
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 40)
    scores = np.round(rng.normal(size=40) + labels, 1)  # rounded, so some scores equal the threshold
    for threshold in (-0.5, 0.3, 0.5, 1.0, 10.0):
        tn, fp, fn_, tp = confusion_matrix(labels, (scores >= threshold).astype(int), labels=[0, 1]).ravel()
        out = _call(fn, what, labels.copy(), scores.copy(), threshold)
        try:
            got = tuple(int(v) for v in out)
        except (TypeError, ValueError):
            fail(what, f"returned {out!r}; expected four counts (tp, fp, tn, fn).")
        want = (int(tp), int(fp), int(tn), int(fn_))
        if len(got) != 4 or got != want:
            at_eq = bool((scores == threshold).any())
            hint = ("An image whose score EQUALS the threshold counts as predicted anomaly (>=)."
                    if at_eq and len(got) == 4 and sum(got) == len(labels) else
                    "tp: anomaly predicted anomaly; fp: normal predicted anomaly; tn: normal predicted "
                    "normal; fn: anomaly predicted normal. Return them in the order (tp, fp, tn, fn).")
            fail(what, f"at threshold {threshold} you returned {got}, expected (tp, fp, tn, fn) = {want}.", hint)
    return passed(what)
