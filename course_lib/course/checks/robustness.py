"""Self-checks for the exercises of notebook 11 (robustness).

* ``check_pgd_step``: one step of projected gradient descent, against a direct computation, with a hint
  for each usual slip (up the gradient, the raw gradient instead of its sign, no projection, no clamp).
* ``check_false_alarms``: the alarm threshold from clean validation normals and the false-alarm rate
  of other normal images, against numpy, and the slip of taking the threshold on the images it judges.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from course_lib.course.checks._core import call_learner as _call, fail, passed

__all__ = ["check_pgd_step", "check_false_alarms"]


def check_pgd_step(fn: Callable) -> bool:
    """``fn(x, x_start, grad, radius, step) -> x_next``: x - step * sign(grad), projected into the
    L-infinity ball of `radius` around x_start, then into [-1, 1] (all in the images' [-1, 1] units)."""
    what = "PGD step"
    g = torch.Generator().manual_seed(9)
    x_start = torch.rand(4, 1, 8, 8, generator=g) * 2 - 1
    x = (x_start + 0.05 * torch.randn(x_start.shape, generator=g)).clamp(-1, 1)
    grad = torch.randn(x_start.shape, generator=g) * 3
    radius, step = 0.08, 0.06
    out = _call(fn, what, x.clone(), x_start.clone(), grad.clone(), radius, step)
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        fail(what, f"expected a tensor of shape {tuple(x.shape)}, got "
                   f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}.")
    out = out.detach()
    want = torch.minimum(torch.maximum(x - step * grad.sign(), x_start - radius), x_start + radius).clamp(-1, 1)
    if torch.allclose(out, want, atol=1e-6):
        return passed(what)
    if torch.allclose(out, torch.minimum(torch.maximum(x + step * grad.sign(), x_start - radius),
                                         x_start + radius).clamp(-1, 1), atol=1e-6):
        fail(what, "the step goes up the gradient: it makes the anomaly look more anomalous.",
             "The attack lowers the score: subtract step * grad.sign().")
    if float((out - x_start).abs().max()) > radius + 1e-6:
        fail(what, f"a pixel moved {float((out - x_start).abs().max()):.3f} from the start, more than the budget "
                   f"{radius}.", "Project: torch.minimum(torch.maximum(x, x_start - radius), x_start + radius).")
    if float(out.abs().max()) > 1 + 1e-6:
        fail(what, "some pixels left [-1, 1].", "Clamp the result to [-1, 1] after the projection.")
    moved = (out - x).abs()
    if not torch.allclose(moved[moved > 1e-6].max(), moved[moved > 1e-6].min(), atol=1e-6) and \
            torch.allclose(out, torch.minimum(torch.maximum(x - step * grad, x_start - radius),
                                              x_start + radius).clamp(-1, 1), atol=1e-6):
        fail(what, "pixels move by different amounts: the step follows the raw gradient.",
             "An L-infinity attack moves every pixel by the same step: use grad.sign().")
    fail(what, f"the result differs from x - step * sign(grad), projected and clamped, by up to "
               f"{float((out - want).abs().max()):.4f}.")


def check_false_alarms(fn: Callable) -> bool:
    """``fn(val_normal_scores, test_normal_scores, q) -> (threshold, rate)``: the q-th percentile of the
    validation normals' scores, and the share of the test normals scored above it."""
    what = "false alarms at a validation threshold"
    rng = np.random.default_rng(4)
    val = rng.normal(size=300)
    test = rng.normal(loc=0.8, size=200)              # perturbed normals: their scores have moved up
    out = _call(fn, what, val.copy(), test.copy(), 95.0)
    try:
        thr, rate = (float(v) for v in out)
    except (TypeError, ValueError):
        fail(what, f"expected (threshold, rate), two numbers; got {out!r}.")
    want_thr = float(np.percentile(val, 95))
    if abs(thr - float(np.percentile(test, 95))) < 1e-9:
        fail(what, "the threshold is the 95th percentile of the images it judges.",
             "Fix the threshold on the clean validation normals; the test images are only scored against it.")
    if abs(thr - want_thr) > 1e-9:
        fail(what, f"the threshold is {thr:.4f}; the 95th percentile of the validation scores is {want_thr:.4f}.",
             "np.percentile(val_normal_scores, q).")
    want_rate = float(np.mean(test > want_thr))
    if abs(rate - want_rate) > 1e-12:
        hint = "A rate is a share in [0, 1], not a count." if rate > 1 else \
            "Count the test normals strictly above the threshold, divided by how many there are."
        fail(what, f"the false-alarm rate is {rate:.4f}, expected {want_rate:.4f}.", hint)
    return passed(what)
