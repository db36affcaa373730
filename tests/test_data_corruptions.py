"""MNIST-C corruptions on known images: generic contract, then one property per corruption checked
with an independent computation (moments, Monte Carlo statistics, pixel counts)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib.data import CORRUPTIONS, corrupt
from course_lib.data.corruptions import DETERMINISTIC

S = 28


def _digit_like() -> torch.Tensor:
    """(3, 1, S, S) in [-1, 1]: a ring, a bar and a square of ink (1) on background (-1)."""
    yy, xx = np.mgrid[:S, :S] - (S - 1) / 2
    ring = np.abs(np.hypot(yy, xx) - 8) < 2
    bar = (np.abs(yy) < 2) & (np.abs(xx) < 9)
    square = (np.abs(yy) < 6) & (np.abs(xx) < 6)
    return torch.tensor(np.stack([ring, bar, square])[:, None] * 2.0 - 1.0, dtype=torch.float32)


def _unit(x: torch.Tensor) -> np.ndarray:
    return ((x.double() + 1) / 2).numpy()


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_corruption_contract(name):
    x = _digit_like()
    y = corrupt(name, x, seed=3)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y.min() >= -1 and y.max() <= 1
    for i in range(len(x)):   # every image is changed, by more than rounding
        assert (y[i] - x[i]).abs().max() > 0.25, f"{name} left image {i} (nearly) unchanged"
    assert torch.equal(y, corrupt(name, x, seed=3))
    if name not in DETERMINISTIC:
        assert not torch.equal(y, corrupt(name, x, seed=4))
    assert torch.equal(x, _digit_like())   # input untouched


def test_unknown_corruption_lists_valid():
    with pytest.raises(ValueError, match="valid: shot_noise, impulse_noise"):
        corrupt("snow", _digit_like())


def _centroid_and_angle(img: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Intensity centroid, principal-axis angle (degrees, from the column axis) and mass."""
    w = np.clip(img, 0, None)
    yy, xx = np.mgrid[:img.shape[0], :img.shape[1]]
    m = w.sum()
    cy, cx = (w * yy).sum() / m, (w * xx).sum() / m
    myy, mxx = (w * (yy - cy) ** 2).sum() / m, (w * (xx - cx) ** 2).sum() / m
    mxy = (w * (yy - cy) * (xx - cx)).sum() / m
    return np.array([cy, cx]), np.degrees(0.5 * np.arctan2(2 * mxy, mxx - myy)), m


def test_geometric_corruptions_move_mass_as_promised():
    bar = _digit_like()[1:2].repeat(20, 1, 1, 1)       # 20 copies of a horizontal bar
    c0, a0, m0 = _centroid_and_angle(_unit(bar[0, 0]))
    assert abs(a0) < 1e-6
    for img in _unit(corrupt("rotate", bar, seed=0))[:, 0]:
        _, a, _ = _centroid_and_angle(img)
        assert 33 <= abs(a) <= 72
    for img in _unit(corrupt("translate", bar, seed=0))[:, 0]:
        c, _, _ = _centroid_and_angle(img)
        assert 0.18 * S <= np.linalg.norm(c - c0) <= 0.32 * S
    for img in _unit(corrupt("scale", bar, seed=0))[:, 0]:
        _, _, m = _centroid_and_angle(img)
        assert 0.4 ** 2 <= m / m0 <= 0.7 ** 2            # area shrinks by f^2, f in [0.45, 0.65]
    for img in _unit(corrupt("motion_blur", bar, seed=0))[:, 0]:
        assert abs(img.sum() - m0) < 1e-6 * m0             # a normalised kernel keeps the ink


def test_shot_noise_is_poisson_with_eight_photons():
    grey = torch.zeros(1, 1, 64, 64)                       # 0.5 in [0, 1] units
    y = _unit(corrupt("shot_noise", grey, seed=0)).ravel()
    # Poisson(lam x) / lam: mean x = 0.5, variance x / lam = 0.0625 (values above 1 are clipped: rare)
    assert abs(y.mean() - 0.5) < 0.02
    assert abs(y.var() - 0.0625) < 0.0625 * 0.15


def test_impulse_noise_hits_fifteen_percent():
    y = _unit(corrupt("impulse_noise", torch.zeros(1, 1, 64, 64), seed=0)).ravel()
    hit = np.isclose(y, 0) | np.isclose(y, 1)
    assert abs(hit.mean() - 0.15) < 0.03 and abs(np.isclose(y, 1).mean() - 0.075) < 0.02


def test_stripe_inverts_one_band_of_columns():
    y = _unit(corrupt("stripe", -torch.ones(10, 1, S, S), seed=0))[:, 0]   # black images
    for img in y:
        cols = np.flatnonzero(img.max(0) > 0.5)
        assert (img[:, cols] == 1).all() and np.array_equal(cols, np.arange(cols[0], cols[-1] + 1))
        assert round(0.2 * S) <= len(cols) <= round(0.3 * S)


def test_brightness_raises_the_background():
    y = _unit(corrupt("brightness", _digit_like()))
    assert np.allclose(y[_unit(_digit_like()) == 0], 0.4) and np.allclose(y[_unit(_digit_like()) == 1], 1)


def test_canny_edges_trace_the_square_outline():
    y = _unit(corrupt("canny_edges", _digit_like()[2:3]))[0, 0]
    edges = np.argwhere(y > 0.5) - (S - 1) / 2
    assert len(edges) > 30 and set(np.unique(y)) <= {0.0, 1.0}
    assert (np.abs(np.abs(edges).max(1) - 6) <= 1.5).all()   # on the boundary |y|, |x| < 6 of the square


def test_line_occluders_draw_white_pixels_on_background():
    black = -torch.ones(5, 1, S, S)
    for name in ("dotted_line", "zigzag", "spatter"):
        y = _unit(corrupt(name, black, seed=1))
        assert ((y == 0) | (y >= 0.75)).all() and ((y > 0).reshape(5, -1).sum(1) >= S // 4).all(), name
