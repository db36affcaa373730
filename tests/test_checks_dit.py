"""The exercise checks of notebook 08: they pass correct answers and reject typical wrong ones."""
import math

import pytest
import torch

from course_lib.course import checks
from course_lib.course.checks import ExerciseError
from course_lib.nets.dit import DiT, DiTConfig, modulate, patchify


def patchify_by_unfold(x, p):
    """An independent correct answer: F.unfold gives (B, C*p*p, N) in channel-first order."""
    B, C = x.shape[:2]
    cols = torch.nn.functional.unfold(x, kernel_size=p, stride=p)             # (B, C*p*p, N)
    return cols.reshape(B, C, p * p, -1).permute(0, 3, 2, 1).reshape(B, -1, p * p * C)


def channel_first(x, p):
    B, C, H, W = x.shape
    return x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5).reshape(B, -1, C * p * p)


def column_major(x, p):
    B, C, H, W = x.shape
    return x.reshape(B, C, H // p, p, W // p, p).permute(0, 4, 2, 3, 5, 1).reshape(B, -1, p * p * C)


def rows_cols_swapped(x, p):
    B, C, H, W = x.shape
    return x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 5, 3, 1).reshape(B, -1, p * p * C)


def test_check_patchify_accepts_the_library_and_an_unfold_version():
    assert checks.check_patchify(patchify)
    assert checks.check_patchify(patchify_by_unfold)


@pytest.mark.parametrize("wrong, message", [
    (channel_first, "channel-first"),
    (column_major, "column-major"),
    (rows_cols_swapped, "rows and columns are swapped"),
    (lambda x, p: patchify(x, p).transpose(1, 2), "axes are swapped"),
    (lambda x, p: patchify(x, p)[:, :, :-1], "expected tokens of shape"),
    (lambda x, p: patchify(x, p).flip(1), "tokens differ from the patches"),
    (lambda x, p: x.numpy(), "return a torch tensor"),
    (lambda x, p: x.reshape(1, 2, 3), "raised RuntimeError"),
])
def test_check_patchify_rejects_typical_mistakes(wrong, message):
    with pytest.raises(ExerciseError, match=message):
        checks.check_patchify(wrong)


def test_check_modulate_accepts_the_formula():
    assert checks.check_modulate(modulate)
    assert checks.check_modulate(lambda x, shift, scale: torch.addcmul(shift[:, None], x, 1 + scale[:, None]))


@pytest.mark.parametrize("wrong, message", [
    (lambda x, shift, scale: x * scale[:, None] + shift[:, None], r"instead of \(1 \+ scale\)"),
    (lambda x, shift, scale: x * (1 + shift[:, None]) + scale[:, None], "swapped"),
    (lambda x, shift, scale: (x + shift[:, None]) * (1 + scale[:, None]), "shifted before scaling"),
    (lambda x, shift, scale: x * (1 + scale) + shift, "do not broadcast"),
    (lambda x, shift, scale: (x * (1 + scale[:, None]) + shift[:, None]).mean(1), "expected an output"),
    (lambda x, shift, scale: x * (1 + scale[:, None]) - shift[:, None], "values differ"),
])
def test_check_modulate_rejects_typical_mistakes(wrong, message):
    with pytest.raises(ExerciseError, match=message):
        checks.check_modulate(wrong)


def test_fresh_dit_prediction_is_right_for_an_actual_fresh_dit():
    # the answer the check accepts is what a freshly built DiT really outputs
    torch.manual_seed(0)
    net = DiT(DiTConfig(3, 8, patch_size=2, hidden_size=32, depth=2, num_heads=2))
    out = net(torch.randn(4, 3, 8, 8), torch.tensor([0, 10, 500, 999]))
    assert checks.check_fresh_dit_prediction(out.abs().mean())
    assert checks.check_fresh_dit_prediction(0)


@pytest.mark.parametrize("wrong, message", [
    (None, "write your prediction"),
    (math.sqrt(2 / math.pi), "size of x_t or of the noise"),
    (1.0, "size of x_t or of the noise"),
    (0.3, "does not depend on the"),
    (-1.0, "cannot be"),
    ("zero", "give one number"),
])
def test_fresh_dit_prediction_rejects_wrong_answers(wrong, message):
    with pytest.raises(ExerciseError, match=message):
        checks.check_fresh_dit_prediction(wrong)
