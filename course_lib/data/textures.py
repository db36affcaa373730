"""``textures``: an MVTec-style task (Bergmann et al. 2019) built from scikit-image's real texture
photographs (brick, grass, gravel; 512x512 grey) and synthetic defects with exact pixel masks.

Train = random crops from the left 60 % of the photograph; test = crops from the right 40 %, so no
pixel is shared. Half the test crops stay clean (normal), half get one defect. Every crop covers a
fixed 128 px square of the photograph (about three bricks across) resized to ``texture_size``, so the
physical scale is the same in every profile; defects are drawn at the final size, so masks are exact.

Defects (sizes relative to the side S of the patch):
- ``scratch``: a thin curved line (quadratic Bezier, 30-60 % of S long, ~S/32 wide), 0.4-0.55
  brighter or darker.
- ``hole``: an irregular blob, 10-25 % of S across, 0.45-0.6 darker than the surface around it, in
  which the texture fades to 30 % of its contrast.
- ``stain``: a smooth, irregular brightening or darkening (by 0.35-0.5), 16-30 % of S across, with a
  soft edge.
(Values in [-1, 1] units.) The contrast is kept moderate and every crop gets a random lighting
change, so that raw-pixel baselines (IForest, OCSVM, COPOD on flattened pixels) stay near
0.6-0.7 AUROC while the defects stay plain to the eye.
The mask is True exactly where a pixel changed, and every such pixel changed by at least
``MIN_CHANGE`` (pixels the defect would barely alter, e.g. a dark hole over an already dark
stone, are left as they were and not marked).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable

import numpy as np
import torch
from scipy import ndimage

from ..config import Profile
from .offline import _skimage_file
from .protocols import check_protocol, equal_shares, resize, to_unit_range
from .task import AnomalyTask

TEXTURES: dict[str, Callable[[], np.ndarray]] = {
    "brick": _skimage_file("brick.png", "brick"),
    "grass": _skimage_file("grass.png", "grass"),
    "gravel": _skimage_file("gravel.png", "gravel"),
}
TEXTURE_CLASSES: tuple[str, ...] = tuple(TEXTURES)
DEFECTS: tuple[str, ...] = ("scratch", "hole", "stain")
MIN_CHANGE = 0.1     # smallest change (in [-1, 1] units) that a marked pixel gets
SOURCE_CROP = 128    # side of the square of the photograph behind one patch, px
CONTRAST = (0.8, 1.2)  # range of the random contrast gain of each crop (lighting)
BRIGHTNESS = 0.1      # range (+-) of the random brightness offset of each crop
TRAIN_FRACTION = 0.6  # train crops come from the left 60 % of the photo, test crops from the rest


# --- defects on one (H, W) image in [-1, 1] -----------------------------------------------------------
def _blob(shape: tuple[int, int], centre: np.ndarray, radius: float, rng: np.random.Generator,
          wobble: float = 0.3) -> np.ndarray:
    """Normalised distance to an irregular blob's boundary: < 1 inside. The radius varies with angle
    by a few random harmonics (so the blob is not a perfect disc)."""
    yy, xx = np.mgrid[:shape[0], :shape[1]].astype(np.float64)
    dy, dx = yy - centre[0], xx - centre[1]
    theta = np.arctan2(dy, dx)
    r = np.ones_like(theta)
    for k in (2, 3, 5):
        r += wobble / k * rng.uniform(-1, 1) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return np.hypot(dy, dx) / (radius * r)


def _scratch(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    s = x.shape[0]
    length = rng.uniform(0.3, 0.6) * s
    p0 = rng.uniform(0.2, 0.8, size=2) * s
    a = rng.uniform(0, 2 * np.pi)
    p2 = np.clip(p0 + length * np.array([np.sin(a), np.cos(a)]), 1, s - 2)
    p1 = (p0 + p2) / 2 + rng.uniform(-0.25, 0.25) * length * np.array([np.cos(a), -np.sin(a)])
    t = np.linspace(0, 1, 4 * s)[:, None]
    pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2  # quadratic Bezier
    region = np.zeros(x.shape, bool)
    idx = np.clip(np.round(pts).astype(int), 0, s - 1)
    region[idx[:, 0], idx[:, 1]] = True
    width = max(1, round(s / 32))
    if width > 1:
        region = ndimage.binary_dilation(region, iterations=width // 2)
    sign = rng.choice([-1.0, 1.0])
    return x + sign * rng.uniform(0.4, 0.55), region


def _hole(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    s = x.shape[0]
    d = _blob(x.shape, rng.uniform(0.2, 0.8, size=2) * s, rng.uniform(0.05, 0.125) * s, rng)
    inside = d < 1
    m = x[inside].mean()
    depth = rng.uniform(0.45, 0.6)
    return m - depth + 0.3 * (x - m), inside  # darker, and the texture fades to a faint trace


def _stain(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    s = x.shape[0]
    d = _blob(x.shape, rng.uniform(0.2, 0.8, size=2) * s, rng.uniform(0.08, 0.15) * s, rng)
    profile = np.clip(1.6 * (1 - d ** 2), 0, 1)  # flat top, smooth shoulder, 0 outside
    amplitude = rng.choice([-1.0, 1.0]) * rng.uniform(0.35, 0.5)
    return x + amplitude * profile, profile * abs(amplitude) >= MIN_CHANGE


_DEFECTS = {"scratch": _scratch, "hole": _hole, "stain": _stain}


def add_defect(image: torch.Tensor, kind: str, rng: np.random.Generator,
               max_tries: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """Put one defect of `kind` on a (C, H, W) image in [-1, 1] (same change on every channel).

    Returns (defective image (C, H, W), mask (1, H, W) bool). The mask is True exactly where the
    image changed, and each marked pixel changed by >= MIN_CHANGE. If a placement would change
    fewer than half of the defect's pixels (a dark hole on a dark patch), another is drawn."""
    if kind not in _DEFECTS:
        raise ValueError(f"Unknown defect {kind!r}; valid: {', '.join(DEFECTS)}.")
    x = image.detach().double().numpy()
    grey = x.mean(0)  # (H, W): the defect is shaped on the luminance
    for _ in range(max_tries):
        target, region = _DEFECTS[kind](grey, rng)
        delta = np.clip(target, -1, 1) - grey
        mask = region & (np.abs(delta) >= MIN_CHANGE)
        if mask.sum() >= max(2, 0.5 * region.sum()):
            break
    else:
        raise RuntimeError(f"add_defect: could not place a visible {kind} in {max_tries} tries.")
    y = np.where(mask[None], np.clip(x + delta[None], -1, 1), x)
    return torch.from_numpy(y).to(image.dtype), torch.from_numpy(mask[None])


# --- the task -----------------------------------------------------------------------------------------
@lru_cache(maxsize=len(TEXTURES))
def load_texture(name: str) -> torch.Tensor:
    """(1, 512, 512) float32 in [-1, 1]."""
    return to_unit_range(TEXTURES[name]()[None], 255.0)


def texture_crops(photo: torch.Tensor, split: str, n: int, size: int,
                  rng: np.random.Generator, rows: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """n random (C, size, size) crops of SOURCE_CROP px from the train (left) or test (right) region,
    within the band `rows` (fractions of the height; the validation split cuts the train region in two).

    Each crop gets a random lighting change (contrast x0.8-1.2 about its mean, brightness +-0.1), as
    photographs of one surface taken at different times would: so that a defect cannot be found from
    the patch's global statistics (mean, std) alone."""
    _, h, w = photo.shape
    cut = int(TRAIN_FRACTION * w)
    lo, hi = (0, cut - SOURCE_CROP) if split == "train" else (cut, w - SOURCE_CROP)
    top, bottom = int(rows[0] * h), int(rows[1] * h) - SOURCE_CROP
    if bottom < top:
        raise ValueError(f"texture_crops: the rows {rows} leave no room for a {SOURCE_CROP} px crop.")
    out = torch.empty(n, photo.shape[0], size, size)
    for i in range(n):
        y0, x0 = int(rng.integers(top, bottom + 1)), int(rng.integers(lo, hi + 1))
        out[i] = resize(photo[None, :, y0:y0 + SOURCE_CROP, x0:x0 + SOURCE_CROP], size)[0]
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    gain = torch.as_tensor(rng.uniform(*CONTRAST, size=(n, 1, 1, 1)), dtype=out.dtype)
    offset = torch.as_tensor(rng.uniform(-BRIGHTNESS, BRIGHTNESS, size=(n, 1, 1, 1)), dtype=out.dtype)
    return (mean + gain * (out - mean) + offset).clamp_(-1, 1)


def build_textures(category: str, *, protocol: str, seed: int, profile: Profile,
                   image_size: int | None = None) -> AnomalyTask:
    check_protocol(protocol, "textures", ("one-class",))
    size = image_size or profile.texture_size
    photo = load_texture(category)
    rng = np.random.default_rng([seed, 4, TEXTURE_CLASSES.index(category)])
    train = texture_crops(photo, "train", profile.n_train, size, rng)
    n_norm = n_anom = profile.n_test // 2
    test = texture_crops(photo, "test", n_norm + n_anom, size, rng)
    masks = torch.zeros(len(test), 1, size, size, dtype=torch.bool)
    kinds = ["normal"] * n_norm + equal_shares(DEFECTS, n_anom, rng)
    for i in range(n_norm, n_norm + n_anom):
        test[i], masks[i] = add_defect(test[i], kinds[i], rng)
    labels = np.r_[np.zeros(n_norm, np.int64), np.ones(n_anom, np.int64)]
    perm = torch.as_tensor(rng.permutation(len(test)))
    return AnomalyTask(
        name=f"textures/{category}",
        description=f"{size}px patches of scikit-image's {category} photo; test patches may carry a "
                    f"scratch, hole or stain (pixel masks given).",
        train=train, images=test[perm], labels=torch.as_tensor(labels)[perm], masks=masks[perm],
        kinds=[kinds[i] for i in perm.tolist()], extent="local")
