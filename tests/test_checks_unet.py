"""The attention exercise check of notebook 05: it passes correct answers and rejects typical wrong ones."""
import math

import pytest
import torch
import torch.nn.functional as F

from course_lib.course import checks
from course_lib.course.checks import ExerciseError


def attention_scaled_by(scale_of_d, dim=-1):
    def fn(q, k, v):
        scores = q @ k.transpose(-1, -2) * scale_of_d(q.shape[-1])
        return scores.softmax(dim=dim) @ v
    return fn


def test_check_attention_accepts_torch_sdpa_and_a_hand_written_version():
    # torch's fused kernel is an implementation independent of the check's float64 numpy reference
    assert checks.check_attention(lambda q, k, v: F.scaled_dot_product_attention(q, k, v))
    assert checks.check_attention(attention_scaled_by(lambda d: 1 / math.sqrt(d)))


@pytest.mark.parametrize("wrong, message", [
    (attention_scaled_by(lambda d: 1.0), "not scaled"),
    (attention_scaled_by(lambda d: 1.0 / d), "instead of sqrt"),
    (attention_scaled_by(lambda d: 1 / math.sqrt(d), dim=-2), "over the queries"),
    (lambda q, k, v: (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])) @ v, "values differ"),
    (lambda q, k, v: (q @ k.transpose(-1, -2)).softmax(-1), "expected an output of shape"),
    (lambda q, k, v: 1 / 0, "raised ZeroDivisionError"),
])
def test_check_attention_rejects_typical_mistakes(wrong, message):
    with pytest.raises(ExerciseError, match=message):
        checks.check_attention(wrong)


def test_hand_computed_single_query():
    # One query, two keys with scores 0 and log(3) after scaling: weights 1/4, 3/4.
    q = torch.tensor([[[[1.0, 0, 0, 0]]]])                                  # (1, 1, 1, 4)
    k = torch.tensor([[[[0.0, 0, 0, 0], [2 * math.log(3), 0, 0, 0]]]])      # scores / sqrt(4) = 0, log 3
    v = torch.tensor([[[[4.0, 0, 0, 0], [0.0, 8, 0, 0]]]])
    out = attention_scaled_by(lambda dd: 1 / math.sqrt(dd))(q, k, v)
    assert torch.allclose(out, torch.tensor([[[[1.0, 6.0, 0, 0]]]]), atol=1e-6)
    assert checks.check_attention(attention_scaled_by(lambda dd: 1 / math.sqrt(dd)))
