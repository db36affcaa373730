"""The MNIST-C corruptions (Mu & Gilmer 2019, "MNIST-C: A Robustness Benchmark for Computer Vision"),
re-implemented for small grey digits so that ``digits-c`` needs no download.

``corrupt(name, images, seed)`` takes float (N, C, H, W) images in [-1, 1] (ink bright, background
dark, as in MNIST) and returns corrupted images of the same shape, still in [-1, 1]. Parameters are
scaled to the image side, so a 16 px digit is corrupted about as visibly as a 28 px MNIST digit at
the paper's chosen severity. Every random choice comes from ``np.random.default_rng(seed)``.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from scipy import ndimage
from skimage import draw, feature

CORRUPTIONS: tuple[str, ...] = (
    "shot_noise", "impulse_noise", "glass_blur", "motion_blur", "shear", "scale", "rotate",
    "translate", "brightness", "stripe", "fog", "spatter", "dotted_line", "zigzag", "canny_edges",
)
# These use no random numbers: the same image comes out for every seed.
DETERMINISTIC: tuple[str, ...] = ("brightness", "canny_edges")

Corruption = Callable[[np.ndarray, np.random.Generator], np.ndarray]  # (H, W) in [0, 1] -> (H, W)


# --- noise ----------------------------------------------------------------------------------------
def shot_noise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Poisson photon noise: Poisson(lam * x) / lam, lam = 8 photons at full brightness."""
    lam = 8.0
    return rng.poisson(x * lam) / lam


def impulse_noise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Salt-and-pepper noise: 15 % of pixels set to 0 or 1."""
    y = x.copy()
    hit = rng.random(x.shape) < 0.15
    y[hit] = rng.integers(0, 2, size=int(hit.sum())).astype(x.dtype)
    return y


# --- blur -----------------------------------------------------------------------------------------
def glass_blur(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur, then swap each pixel with a random neighbour one pixel away, blur again."""
    h, w = x.shape
    y = ndimage.gaussian_filter(x, sigma=0.5)
    for i in range(h - 1, 0, -1):
        for j in range(w - 1, 0, -1):
            di, dj = rng.integers(-1, 1, size=2)
            y[i, j], y[i + di, j + dj] = y[i + di, j + dj], y[i, j]
    return ndimage.gaussian_filter(y, sigma=0.5)


def motion_blur(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Average along a line of length ~ H/4 at a random angle (a camera shake)."""
    length = max(3, round(x.shape[0] / 4)) | 1  # odd
    k = np.zeros((length, length))
    c = length // 2
    angle = rng.uniform(0.0, np.pi)
    dx, dy = np.cos(angle) * c, np.sin(angle) * c
    rr, cc = draw.line(round(c - dy), round(c - dx), round(c + dy), round(c + dx))
    k[rr, cc] = 1.0
    return ndimage.convolve(x, k / k.sum(), mode="constant")


# --- geometry (affine maps about the image centre) ------------------------------------------------
def _affine(x: np.ndarray, matrix: np.ndarray, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Output pixel p takes the input at matrix @ (p - centre) + centre - shift (bilinear)."""
    centre = (np.array(x.shape) - 1) / 2.0
    offset = centre - matrix @ centre - np.asarray(shift)
    return ndimage.affine_transform(x, matrix, offset=offset, order=1, mode="constant", cval=0.0)


def shear(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Horizontal shear by a factor in +-[0.4, 0.7]."""
    s = rng.uniform(0.4, 0.7) * rng.choice([-1, 1])
    return _affine(x, np.array([[1.0, 0.0], [s, 1.0]]))


def scale(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shrink the digit about the centre to 45-65 % of its size."""
    f = rng.uniform(0.45, 0.65)
    return _affine(x, np.eye(2) / f)


def rotate(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotate by +-[35, 70] degrees."""
    a = np.deg2rad(rng.uniform(35, 70) * rng.choice([-1, 1]))
    return _affine(x, np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]))


def translate(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shift by 20-30 % of the side in a random direction."""
    d = rng.uniform(0.2, 0.3) * x.shape[0]
    a = rng.uniform(0, 2 * np.pi)
    return _affine(x, np.eye(2), shift=(d * np.sin(a), d * np.cos(a)))


# --- brightness and occluders ---------------------------------------------------------------------
def brightness(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add 0.4 to every pixel (clipped): the background turns grey."""
    return x + 0.4


def stripe(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Invert a vertical band of columns, 20-30 % of the width."""
    w = x.shape[1]
    width = max(2, round(rng.uniform(0.2, 0.3) * w))
    start = int(rng.integers(0, w - width + 1))
    y = x.copy()
    y[:, start:start + width] = 1.0 - y[:, start:start + width]
    return y


def _smooth_noise(shape: tuple[int, int], rng: np.random.Generator, octaves: int = 3) -> np.ndarray:
    """A plasma-like fractal: random grids at 2, 4, 8 cells, upsampled and summed, scaled to [0, 1]."""
    h, w = shape
    total = np.zeros(shape)
    for o in range(octaves):
        cells = 2 ** (o + 1)
        grid = rng.random((cells + 1, cells + 1))
        total += ndimage.zoom(grid, ((h - 1) / cells + 1e-9, (w - 1) / cells + 1e-9), order=1,
                              grid_mode=False)[:h, :w] / 2 ** o
    return (total - total.min()) / (np.ptp(total) + 1e-12)


def fog(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add a smooth fractal haze of strength 0.8, then rescale (as MNIST-C's fog)."""
    strength = 0.8
    return (x + strength * _smooth_noise(x.shape, rng)) / (1.0 + strength * 0.5)


def spatter(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bright droplets: thresholded, smoothed noise covering about 8 % of the image."""
    noise = ndimage.gaussian_filter(rng.normal(size=x.shape), sigma=x.shape[0] / 16)
    drops = noise > np.quantile(noise, 0.92)
    return np.where(drops, np.maximum(x, 0.75), x)


def _random_border_point(h: int, w: int, rng: np.random.Generator) -> tuple[int, int]:
    side = rng.integers(0, 4)
    t = int(rng.integers(0, max(h, w)))
    return [(0, min(t, w - 1)), (h - 1, min(t, w - 1)), (min(t, h - 1), 0), (min(t, h - 1), w - 1)][side]


def dotted_line(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A white dotted line (every other pixel) between two random points on different borders."""
    h, w = x.shape
    while True:
        (r0, c0), (r1, c1) = _random_border_point(h, w, rng), _random_border_point(h, w, rng)
        if abs(r0 - r1) + abs(c0 - c1) >= max(h, w) // 2:
            break
    rr, cc = draw.line(r0, c0, r1, c1)
    y = x.copy()
    y[rr[::2], cc[::2]] = 1.0
    return y


def zigzag(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A white zig-zag polyline of 3-5 segments across the image."""
    h, w = x.shape
    n = int(rng.integers(3, 6))
    cols = np.linspace(0, w - 1, n + 1).round().astype(int)
    rows = rng.integers(0, h, size=n + 1)
    y = x.copy()
    for i in range(n):
        rr, cc = draw.line(int(rows[i]), int(cols[i]), int(rows[i + 1]), int(cols[i + 1]))
        y[rr, cc] = 1.0
    return y


def canny_edges(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Replace the digit by its Canny edge map (Canny 1986), as MNIST-C does."""
    return feature.canny(x, sigma=0.8).astype(np.float64)


_FUNCTIONS: dict[str, Corruption] = {name: globals()[name] for name in CORRUPTIONS}


def corrupt(name: str, images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Apply the MNIST-C corruption `name` to every image of (N, C, H, W) in [-1, 1].

    Each image gets its own random parameters, drawn from ``default_rng(seed)``; all channels of an
    image share them (an RGB image is shifted as a whole). The result has the same shape and dtype,
    clipped to [-1, 1]."""
    if name not in _FUNCTIONS:
        raise ValueError(f"Unknown corruption {name!r}; valid: {', '.join(CORRUPTIONS)}.")
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError("corrupt expects a float tensor of shape (N, C, H, W) in [-1, 1], "
                         f"got {type(images).__name__} {tuple(getattr(images, 'shape', ()))}.")
    rng = np.random.default_rng(seed)
    fn = _FUNCTIONS[name]
    unit = ((images.detach().cpu().double() + 1.0) / 2.0).clamp(0, 1).numpy()  # (N, C, H, W) in [0, 1]
    out = np.empty_like(unit)
    image_seeds = rng.integers(0, 2**63, size=unit.shape[0])
    for i in range(unit.shape[0]):
        for c in range(unit.shape[1]):
            out[i, c] = fn(unit[i, c].copy(), np.random.default_rng(image_seeds[i]))
    return torch.from_numpy(np.clip(out, 0.0, 1.0) * 2.0 - 1.0).to(images.dtype)
