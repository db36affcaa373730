"""The exercise checks of notebook 11 pass the reference and catch the usual slips, each with its hint."""
import numpy as np
import pytest
import torch

from course_lib.course import checks, solutions
from course_lib.programs import robustness
from course_lib.course.checks import ExerciseError


def test_the_reference_pgd_step_passes_and_is_the_library_attacks_step():
    assert checks.check_pgd_step(solutions.pgd_step)
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    w = torch.randn(1, 8, 8)
    # one library step from the start equals one reference step (step 2.5 eps, radius 2 eps in [-1, 1] units)
    eps = 3 / 255
    lib = robustness.pgd_attack(lambda z: (z * w).flatten(1).sum(1), x, eps, steps=1)
    ref = solutions.pgd_step(x, x, w.expand_as(x), 2 * eps, 2 * 2.5 * eps)
    assert torch.allclose(lib, ref, atol=1e-6)


@pytest.mark.parametrize("slip, message", [
    (lambda x, s, g, r, a: torch.minimum(torch.maximum(x + a * g.sign(), s - r), s + r).clamp(-1, 1), "up the gradient"),
    (lambda x, s, g, r, a: (x - a * g.sign()).clamp(-1, 1), "more than the budget"),
    (lambda x, s, g, r, a: torch.minimum(torch.maximum(x - a * g, s - r), s + r).clamp(-1, 1), "raw gradient"),
    (lambda x, s, g, r, a: torch.minimum(torch.maximum(x - a * g.sign(), s - r), s + r), "left"),
])
def test_pgd_step_slips_get_their_hint(slip, message):
    with pytest.raises(ExerciseError, match=message):
        checks.check_pgd_step(slip)


@pytest.mark.parametrize("slip, message", [
    (lambda v, t, q: (np.percentile(t, q), np.mean(t > np.percentile(t, q))), "percentile of the images it judges"),
    (lambda v, t, q: (np.percentile(v, 100 - q), 0.0), "the threshold is"),
    (lambda v, t, q: (np.percentile(v, q), np.sum(t > np.percentile(v, q))), "not a count"),
    (lambda v, t, q: (np.percentile(v, q), np.mean(t < np.percentile(v, q))), "expected"),
])
def test_false_alarm_slips_get_their_hint(slip, message):
    assert checks.check_false_alarms(solutions.false_alarms)
    with pytest.raises(ExerciseError, match=message):
        checks.check_false_alarms(slip)
