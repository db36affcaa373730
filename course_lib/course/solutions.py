"""Reference solutions of the notebooks' code exercises, one function per exercise, named as in the
notebook. A notebook's stub runs its solution only when ``COURSE_SOLUTIONS=1`` (see
:mod:`course_lib.course.exercises`); ``show(name)`` prints one. Every solution passes its check in
``course_lib.course.checks`` (tests/test_solutions.py)."""
from __future__ import annotations

import inspect
import math

import numpy as np
import torch
import torch.nn.functional as F


# --- 00 · setup and data ------------------------------------------------------------------------
def my_auroc(labels, scores) -> float:
    """The AUROC as the share of (anomaly, normal) pairs ranked correctly, ties counting one half."""
    wins, pairs = 0.0, 0
    for yi, si in zip(labels, scores):
        for yj, sj in zip(labels, scores):
            if yi == 1 and yj == 0:
                pairs += 1
                wins += 1.0 if si > sj else 0.5 if si == sj else 0.0
    return wins / pairs


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """uint8 images 0..255 -> float in [-1, 1]."""
    return x.float() / 127.5 - 1.0


def protocol_labels(classes, k, protocol):
    """1 = anomaly: one-class (class k is normal) or one-vs-rest (class k is the anomaly)."""
    classes = np.asarray(classes)
    return (classes != k).astype(int) if protocol == "one-class" else (classes == k).astype(int)


# --- 01 · classical baselines -------------------------------------------------------------------
def standardize(x_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    """Per-feature z-score of x_test with the training statistics; a constant feature is left unscaled."""
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)   # (d,), (d,)
    return (x_test - mean) / np.where(std == 0, 1.0, std)


def confusion_at_threshold(labels, scores, threshold):
    """(tp, fp, tn, fn) when "anomaly" is predicted for score >= threshold."""
    pred, y = np.asarray(scores) >= threshold, np.asarray(labels) == 1
    return int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & ~y).sum()), int((~pred & y).sum())


# --- 02 · forward diffusion ---------------------------------------------------------------------
def alphas_cumprod(betas):
    """abar_t = prod_{s <= t} (1 - beta_s)."""
    return torch.cumprod(1 - betas, dim=0)


def q_sample_closed_form(x0, abar_t, eps):
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps."""
    return math.sqrt(abar_t) * x0 + math.sqrt(1 - abar_t) * eps


# --- 03 · the ELBO -------------------------------------------------------------------------------
def posterior_mean_variance(x0, x_t, beta_t, abar_t, abar_prev):
    """Mean and variance of q(x_{t-1} | x_t, x_0)."""
    alpha_t = 1 - beta_t
    mean = (math.sqrt(abar_prev) * beta_t * x0 + math.sqrt(alpha_t) * (1 - abar_prev) * x_t) / (1 - abar_t)
    variance = (1 - abar_prev) / (1 - abar_t) * beta_t
    return mean, variance


def gaussian_kl(mu1, var1, mu2, var2):
    """KL(N(mu1, var1) || N(mu2, var2)), elementwise, in nats."""
    return 0.5 * (torch.log(var2 / var1) + (var1 + (mu1 - mu2) ** 2) / var2 - 1)


def elbo_term(x0, x_t, eps_theta, beta_t, abar_t, abar_prev):
    """L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t)), the model's variance fixed to tilde beta_t."""
    mean, var = posterior_mean_variance(x0, x_t, beta_t, abar_t, abar_prev)
    mu_theta = (x_t - beta_t / math.sqrt(1 - abar_t) * eps_theta) / math.sqrt(1 - beta_t)
    var = torch.full_like(mean, var)
    return gaussian_kl(mean, var, mu_theta, var)


# --- 04 · sampling and the score ----------------------------------------------------------------
def ddim_update(x_t, eps_hat, abar_t, abar_prev, eta, z):
    """One DDIM step (Song et al. 2021, eq. 12) with sigma_t(eta) of eq. 16."""
    sigma = eta * math.sqrt((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev))
    x0_hat = (x_t - math.sqrt(1 - abar_t) * eps_hat) / math.sqrt(abar_t)
    return math.sqrt(abar_prev) * x0_hat + math.sqrt(1 - abar_prev - sigma ** 2) * eps_hat + sigma * z


def x0_and_v_from_eps(x_t, eps_hat, abar_t):
    """(hat x_0, hat v) implied by a noise prediction: x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps solved for x_0,
    and v = sqrt(abar) eps - sqrt(1 - abar) x_0 (Salimans & Ho 2022)."""
    x0_hat = (x_t - math.sqrt(1 - abar_t) * eps_hat) / math.sqrt(abar_t)
    return x0_hat, math.sqrt(abar_t) * eps_hat - math.sqrt(1 - abar_t) * x0_hat


# --- 05 · the DDPM U-Net ------------------------------------------------------------------------
def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """e(t) = [cos(t f_i)]_i ++ [sin(t f_i)]_i with f_i = 10000^(-i/h), h = dim/2: (B,) -> (B, dim)."""
    half = dim // 2
    freqs = 10000.0 ** (-torch.arange(half, dtype=torch.float64) / half)   # (h,)
    args = t.double()[:, None] * freqs[None, :]                             # (B, h)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1).float()    # (B, dim)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v: (B, heads, N, d) x3 -> (B, heads, N, d)."""
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)   # (B, heads, N, N)
    return weights @ v


def ema_update(ema: torch.Tensor, theta: torch.Tensor, decay: float) -> torch.Tensor:
    """theta_EMA <- decay * theta_EMA + (1 - decay) * theta."""
    return decay * ema + (1 - decay) * theta


def warmup_lr(step: int, lr: float, warmup: int) -> float:
    """lr * min(1, (step + 1) / warmup); no warmup when warmup == 0."""
    return lr * min(1.0, (step + 1) / warmup) if warmup > 0 else lr


# --- 06 · anomaly scores ------------------------------------------------------------------------
def noise_error_map(model, x0, eps, t, abar_t):
    """(eps - eps_theta(x_t, t))^2 averaged over the channels: (B, C, H, W) -> (B, 1, H, W)."""
    x_t = math.sqrt(abar_t) * x0 + math.sqrt(1 - abar_t) * eps              # q(x_t | x_0), notebook 02
    eps_hat = model(x_t, torch.full((x0.shape[0],), t, dtype=torch.long))   # (B, C, H, W)
    return (eps - eps_hat).pow(2).mean(1, keepdim=True)                     # (B, 1, H, W)


def ddim_reconstruct(model, x0, eps, abar, taus):
    """Noise x0 to the code level taus[0], then deterministic DDIM down the levels taus; return hat x_0."""
    a = abar[taus[0]]
    x = a.sqrt() * x0 + (1 - a).sqrt() * eps                                  # x_{t*}, (B, C, H, W)
    for i, tau in enumerate(taus):
        eps_hat = model(x, torch.full((len(x),), tau, dtype=torch.long))
        x0_hat = (x - (1 - abar[tau]).sqrt() * eps_hat) / abar[tau].sqrt()
        if i + 1 == len(taus):
            return x0_hat                                                      # the last step lands on hat x_0
        a_next = abar[taus[i + 1]]
        x = a_next.sqrt() * x0_hat + (1 - a_next).sqrt() * eps_hat


def blur(maps, sigma):
    """Separable Gaussian blur of (B, 1, H, W) maps: radius round(3 sigma), kernel sums to 1, reflect padding."""
    r = max(1, int(round(3 * sigma)))
    x = torch.arange(-r, r + 1, dtype=maps.dtype)
    k = torch.exp(-x ** 2 / (2 * sigma ** 2))
    k = k / k.sum()                                                        # (2r+1,)
    out = F.pad(maps, (r, r, r, r), mode="reflect")                        # (B, 1, H+2r, W+2r)
    out = F.conv2d(out, k.view(1, 1, 1, -1))                               # rows    -> (B, 1, H+2r, W)
    return F.conv2d(out, k.view(1, 1, -1, 1))                              # columns -> (B, 1, H, W)


# --- 07 · better scores -------------------------------------------------------------------------
def z_map(levels, normal_levels, floor):
    """Per level and pixel z = (A - mean) / std over the normal images (std floored), averaged over levels."""
    mean = normal_levels.mean(1, keepdim=True)                              # (L, 1, 1, H, W)
    std = normal_levels.std(1, keepdim=True)                                # over the N normal images
    std = torch.maximum(std, floor * std.mean(dim=(2, 3, 4), keepdim=True))  # floored, per level
    return ((levels - mean) / std).mean(0)                                  # (B, 1, H, W)


def even_residual_map(model, x0, eps, t, abar_t):
    """((r(eps) + r(-eps)) / 2)^2 averaged over the channels, r(e) = e - eps_theta(x_t(e), t)."""
    t_batch = torch.full((x0.shape[0],), t, dtype=torch.long)

    def residual(e):
        return e - model(math.sqrt(abar_t) * x0 + math.sqrt(1 - abar_t) * e, t_batch)

    even = (residual(eps) + residual(-eps)) / 2
    return even.pow(2).mean(1, keepdim=True)


# --- 08 · the Diffusion Transformer -------------------------------------------------------------
def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, p*p*C): row-major patches, each flattened in (row, column, channel) order."""
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // p, p, W // p, p)              # (B, C, i, a, j, b)
    x = x.permute(0, 2, 4, 3, 5, 1)                         # (B, i, j, a, b, C)
    return x.reshape(B, (H // p) * (W // p), p * p * C)    # (B, N, p*p*C)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x * (1 + scale) + shift, the same (shift, scale) for all N tokens of an image: (B, N, D)."""
    return x * (1 + scale[:, None]) + shift[:, None]


# --- 10 · the benchmark ---------------------------------------------------------------------------
def paired_bootstrap(labels, scores_a, scores_b, n_boot, seed):
    """AUROC(b) - AUROC(a), and the 2.5 % and 97.5 % quantiles of it over stratified, paired resamples."""
    from sklearn.metrics import roc_auc_score
    labels, a, b = np.asarray(labels), np.asarray(scores_a), np.asarray(scores_b)
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    diffs = []
    for _ in range(n_boot):
        idx = np.r_[rng.choice(pos, len(pos)), rng.choice(neg, len(neg))]   # the same images for a and b
        diffs.append(roc_auc_score(y, b[idx]) - roc_auc_score(y, a[idx]))
    low, high = np.quantile(diffs, [0.025, 0.975])
    return roc_auc_score(labels, b) - roc_auc_score(labels, a), low, high


def pareto_front(cost, quality):
    """True where no other point is at most as costly, at least as good, and strictly better in one."""
    cost, quality = np.asarray(cost), np.asarray(quality)
    keep = np.ones(len(cost), dtype=bool)
    for i in range(len(cost)):
        at_least_as_good = (cost <= cost[i]) & (quality >= quality[i])
        strictly_better = (cost < cost[i]) | (quality > quality[i])
        keep[i] = not (at_least_as_good & strictly_better).any()
    return keep


# --- 11 · robustness ----------------------------------------------------------------------------
def pgd_step(x, x_start, grad, radius, step):
    """Down the sign of the gradient, then back into the L-infinity ball around the start and into [-1, 1]."""
    x = x - step * grad.sign()
    x = torch.minimum(torch.maximum(x, x_start - radius), x_start + radius)
    return x.clamp(-1, 1)


def false_alarms(val_normal_scores, test_normal_scores, q):
    """The threshold from clean validation normals; the share of other normal images above it."""
    threshold = float(np.percentile(val_normal_scores, q))
    return threshold, float(np.mean(np.asarray(test_normal_scores) > threshold))


NAMES: tuple[str, ...] = (
    "my_auroc", "to_unit_range", "protocol_labels", "standardize", "confusion_at_threshold", "alphas_cumprod",
    "q_sample_closed_form", "posterior_mean_variance", "gaussian_kl", "elbo_term", "ddim_update",
    "x0_and_v_from_eps", "sinusoidal_embedding", "attention", "ema_update", "warmup_lr", "noise_error_map",
    "ddim_reconstruct", "blur", "z_map", "even_residual_map", "patchify", "modulate",
    "paired_bootstrap", "pareto_front", "pgd_step", "false_alarms",
)


def show(name: str) -> None:
    """Print the reference solution of an exercise."""
    if name not in NAMES:
        raise KeyError(f"no exercise named {name!r}; the exercises are: {', '.join(NAMES)}")
    print(inspect.getsource(globals()[name]))
