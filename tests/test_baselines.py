"""The pyod baselines behind the detector contract."""
import numpy as np
import pytest
import torch

from course_lib.baselines import ALL_BASELINES, BASELINES, flatten_pixels, make_baseline
from course_lib.metrics import auroc


def _blobs(n, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    x = 0.3 * torch.randn(n, 1, 4, 4, generator=g) + shift
    return x.clamp(-1, 1)


@pytest.mark.parametrize("name", ALL_BASELINES)
def test_baseline_separates_shifted_data(name):
    """Normal pixels ~ N(0, .3^2); anomalies are shifted by +0.6 in every pixel: easy for any detector."""
    normal = _blobs(200, 0)
    test = torch.cat([_blobs(50, 1), _blobs(50, 2, shift=0.6)])
    labels = np.r_[np.zeros(50), np.ones(50)]
    det = make_baseline(name).fit(normal)
    scores = det.decision_function(test)
    assert scores.shape == (100,)
    assert auroc(labels, scores) > 0.9          # higher = more anomalous
    # deterministic (the deep detectors compute in float32: equal up to its rounding)
    np.testing.assert_allclose(make_baseline(name).fit(normal).decision_function(test), scores, rtol=1e-5)


def test_flatten_pixels_layout():
    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2) / 100
    f = flatten_pixels(x)
    assert f.shape == (2, 12)
    assert f[1, 0] == pytest.approx(float(x[1, 0, 0, 0]))


def test_baseline_refuses_bad_input():
    with pytest.raises(ValueError, match="Unknown baseline.*iforest"):
        make_baseline("lof")
    det = make_baseline("copod")
    with pytest.raises(RuntimeError, match="call fit"):
        det.decision_function(_blobs(3, 0))
    with pytest.raises(ValueError, match="empty"):
        det.fit(torch.zeros(0, 1, 4, 4))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        det.fit(torch.full((3, 1, 4, 4), 5.0))
    with pytest.raises(ValueError, match="shape"):
        det.fit(torch.zeros(3, 4, 4))
    det.fit(_blobs(20, 0))
    with pytest.raises(ValueError, match="fitted on images of shape"):
        det.decision_function(torch.zeros(2, 1, 8, 8))


@pytest.mark.parametrize("name", ALL_BASELINES)
def test_score_of_an_image_does_not_depend_on_its_batch(name):
    normal = _blobs(100, 0)
    test = torch.cat([_blobs(20, 1), _blobs(20, 2, shift=0.6)])
    det = make_baseline(name).fit(normal)
    np.testing.assert_allclose(det.decision_function(test)[:5], det.decision_function(test[:5]),
                               rtol=1e-10 if name in BASELINES else 1e-5)


def test_deep_baselines_leave_the_global_rng_alone():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    make_baseline("deepsvdd", seed=1).fit(_blobs(40, 0))
    assert torch.equal(torch.rand(3), expected)
