"""The exercise checks of notebook 07: they pass correct answers and reject typical wrong ones."""
import math

import pytest
import torch

from course_lib.course import checks
from course_lib.anomaly_maps import calibrate_maps, standardize_maps
from course_lib.course.checks import ExerciseError


def z_map(levels, normal, floor, *, unbiased=True, use_floor=True, per_level=True, pooled=False):
    mean = normal.mean(1, keepdim=True)
    if pooled:
        std = normal.std(dim=(1, 3, 4), keepdim=True)
    else:
        std = normal.std(1, keepdim=True, unbiased=unbiased)
    if use_floor:
        scale = std.mean(dim=(2, 3, 4), keepdim=True) if per_level else std.mean()
        std = torch.maximum(std, floor * scale)
    return ((levels - mean) / std).mean(0)


def test_z_map_check_accepts_the_library_and_a_hand_written_map():
    assert checks.check_z_map(lambda lv, nl, f: standardize_maps(lv, calibrate_maps(nl, f)).mean(0))
    assert checks.check_z_map(z_map)
    assert checks.check_z_map(lambda lv, nl, f: z_map(lv.float(), nl.float(), f))


@pytest.mark.parametrize("wrong, message", [
    (lambda lv, nl, f: z_map(lv, nl, f, unbiased=False), "divides by N"),
    (lambda lv, nl, f: z_map(lv, nl, f, use_floor=False), "inf or NaN"),
    (lambda lv, nl, f: z_map(lv, nl, f, per_level=False), "each level needs its own floor"),
    (lambda lv, nl, f: z_map(lv, nl, f, pooled=True), "one per pixel"),
    (lambda lv, nl, f: z_map(lv, nl, 2 * f), "differs from the calibrated z-map"),
    (lambda lv, nl, f: z_map(lv, nl, f).mean(1), "expected an output of shape"),
    (lambda lv, nl, f: z_map(lv, nl, f, use_floor=False).nan_to_num(posinf=0.0, neginf=0.0), "differs"),
])
def test_z_map_check_rejects_typical_mistakes(wrong, message):
    with pytest.raises(ExerciseError, match=message):
        checks.check_z_map(wrong)


def even_map(model, x0, eps, t, abar_t, *, kind="even", second=-1.0, halve=True, reduce="mean"):
    def r(e):
        x_t = math.sqrt(abar_t) * x0 + math.sqrt(1 - abar_t) * e
        return e - model(x_t, torch.full((x0.shape[0],), t, dtype=torch.long))
    r_plus, r_minus = r(eps), r(second * eps)
    if kind == "mean of squares":
        m = (r_plus ** 2 + r_minus ** 2) / 2
    elif kind == "odd":
        m = ((r_plus - r_minus) / 2) ** 2
    else:
        m = ((r_plus + r_minus) / (2 if halve else 1)) ** 2
    return m.mean(1, keepdim=True) if reduce == "mean" else m.sum(1, keepdim=True)


def test_even_residual_check_accepts_a_correct_map_also_in_float32():
    assert checks.check_even_residual_map(even_map)
    assert checks.check_even_residual_map(lambda m, x0, eps, t, a: even_map(m, x0.float(), eps.float(), t, a))


@pytest.mark.parametrize("wrong, message", [
    (lambda *a: even_map(*a, kind="mean of squares"), "even² \\+ odd²"),
    (lambda *a: even_map(*a, kind="odd"), "odd part"),
    (lambda *a: even_map(*a, second=1.0), "one draw's squared residual"),
    (lambda *a: even_map(*a, reduce="sum"), "summed over the 3 channels"),
    (lambda *a: even_map(*a, halve=False), "without halving"),
    (lambda m, x0, eps, t, a: even_map(m, x0, eps, t + 1, a), "differs"),
    (lambda *a: even_map(*a)[:, 0], "expected an output of shape"),
])
def test_even_residual_check_rejects_typical_mistakes(wrong, message):
    with pytest.raises(ExerciseError, match=message):
        checks.check_even_residual_map(wrong)
