"""Self-checks for the exercises of notebook 05 (the DDPM U-Net and its training loop).

Each check calls the learner's function on small cases and compares it with values computed here
directly from the formula in float64 (not with course_lib's own implementation).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from course_lib.course.checks._core import call_learner as _call, fail, passed

__all__ = ["check_timestep_embedding", "check_ema_update", "check_warmup_lr", "check_attention"]



def _embedding_reference(t: list[float], dim: int) -> torch.Tensor:
    """[cos(t f_0), ..., cos(t f_{h-1}), sin(t f_0), ..., sin(t f_{h-1})], f_i = 10000^(-i/h), h = dim/2."""
    half = dim // 2
    rows = []
    for ti in t:
        freqs = [10000.0 ** (-i / half) for i in range(half)]
        rows.append([math.cos(ti * f) for f in freqs] + [math.sin(ti * f) for f in freqs])
    return torch.tensor(rows, dtype=torch.float64)


def check_timestep_embedding(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> bool:
    """`fn(t, dim)` -> (B, dim): the sinusoidal embedding, cosines first, then sines (even dim)."""
    what = "timestep embedding"
    t = torch.tensor([0, 1, 10, 250, 999])
    for dim in (4, 16, 64):
        out = _call(fn, what, t, dim)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(t), dim):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            fail(what, f"for t of shape ({len(t)},) and dim={dim} expected shape ({len(t)}, {dim}), "
                       f"got {shape}.",
                 "Compute t[:, None] * freqs[None, :] (B, dim/2), then concatenate cos and sin along dim=1.")
        out, ref = out.detach().double(), _embedding_reference(t.tolist(), dim)
        if torch.allclose(out, ref, atol=1e-4):
            continue
        half = dim // 2
        if torch.allclose(out, torch.cat([ref[:, half:], ref[:, :half]], 1), atol=1e-4):
            fail(what, "sines and cosines are swapped.", "Put the cosines first: torch.cat([cos, sin], dim=1).")
        if torch.allclose(out[0], ref[0], atol=1e-4):
            fail(what, f"t = 0 is right but t > 0 is not (dim={dim}).",
                 "Frequencies are f_i = 10000 ** (-i / (dim // 2)) for i = 0 .. dim//2 - 1.")
        first = lambda row: [round(v, 4) for v in row[:4].tolist()]  # noqa: E731
        fail(what, f"values differ from the formula (dim={dim}); for t=1 expected {first(ref[1])}..., "
                   f"got {first(out[1])}...",
             "emb[:, i] = cos(t * f_i), emb[:, half + i] = sin(t * f_i), f_i = 10000 ** (-i / half).")
    return passed(what)


def check_ema_update(fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]) -> bool:
    """`fn(ema, theta, decay)` -> the new EMA value decay * ema + (1 - decay) * theta."""
    what = "EMA update"
    g = torch.Generator().manual_seed(0)
    for decay in (0.0, 0.5, 0.9, 0.999):
        ema, theta = torch.randn(5, generator=g, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)
        out = _call(fn, what, ema.clone(), theta.clone(), decay)
        expected = decay * ema + (1 - decay) * theta
        if not isinstance(out, torch.Tensor) or out.shape != ema.shape:
            fail(what, "return a tensor of the same shape as the weights.", "Return decay * ema + (1 - decay) * theta.")
        if torch.allclose(out.double(), expected, atol=1e-6):
            continue
        if torch.allclose(out.double(), (1 - decay) * ema + decay * theta, atol=1e-6):
            fail(what, f"with decay={decay} the weights are swapped: the EMA moves almost all the way to theta.",
                 "decay multiplies the OLD average: decay * ema + (1 - decay) * theta.")
        fail(what, f"with decay={decay} expected {expected[:2].tolist()}..., got {out[:2].tolist()}...",
             "new_ema = decay * ema + (1 - decay) * theta.")
    return passed(what)


def check_warmup_lr(fn: Callable[[int, float, int], float]) -> bool:
    """`fn(step, lr, warmup)` -> lr * min(1, (step + 1) / warmup) for 0-based steps (lr if warmup == 0)."""
    what = "linear warmup"
    for lr, warmup in ((1.0, 4), (1e-3, 10), (0.5, 1), (0.1, 0)):
        for step in range(0, 15):
            expected = lr * min(1.0, (step + 1) / warmup) if warmup else lr
            got = _call(fn, what, step, lr, warmup)
            try:
                ok = math.isclose(float(got), expected, rel_tol=1e-9, abs_tol=1e-12)
            except (TypeError, ValueError):
                ok = False
            if not ok:
                hint = ("The first step (step = 0) already uses lr / warmup, not 0." if step == 0 else
                        "Ramp linearly: lr * (step + 1) / warmup, then stay at lr; warmup = 0 means no ramp.")
                fail(what, f"step={step}, lr={lr}, warmup={warmup}: expected {expected:.6g}, got {got!r}.", hint)
    return passed(what)


def _attention_reference(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float, axis: int) -> np.ndarray:
    """softmax(q k^T * scale) v in float64, row by row, the softmax taken along `axis` of the scores."""
    scores = np.einsum("bhnd,bhmd->bhnm", q, k) * scale           # (B, heads, N, N)
    weights = np.exp(scores - scores.max(axis=axis, keepdims=True))
    weights /= weights.sum(axis=axis, keepdims=True)
    return np.einsum("bhnm,bhmd->bhnd", weights, v)                # (B, heads, N, d)


def check_attention(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> bool:
    """`fn(q, k, v)` with q, k, v of shape (B, heads, N, d) -> softmax(q k^T / sqrt(d)) v, (B, heads, N, d)."""
    what = "scaled dot-product attention"
    g = torch.Generator().manual_seed(0)
    for shape in ((2, 1, 5, 4), (1, 3, 7, 16)):
        q, k, v = (torch.randn(shape, generator=g, dtype=torch.float64) * 2 for _ in range(3))
        out = _call(fn, what, q.float(), k.float(), v.float())
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            fail(what, f"for q, k, v of shape {shape} expected an output of shape {shape}, got {got}.",
                 "weights = softmax(q @ k.transpose(-1, -2) / sqrt(d), dim=-1) has shape (B, heads, N, N); "
                 "return weights @ v.")
        out = out.detach().double().numpy()
        qn, kn, vn, d = q.numpy(), k.numpy(), v.numpy(), shape[-1]
        if np.allclose(out, _attention_reference(qn, kn, vn, d ** -0.5, -1), atol=1e-4):
            continue
        if np.allclose(out, _attention_reference(qn, kn, vn, 1.0, -1), atol=1e-4):
            fail(what, "the scores are not scaled.", "Divide q k^T by sqrt(d), d = q.shape[-1] (the head width).")
        if np.allclose(out, _attention_reference(qn, kn, vn, 1.0 / d, -1), atol=1e-4):
            fail(what, "the scores are divided by d instead of sqrt(d).", "Scale by 1 / math.sqrt(d).")
        if np.allclose(out, _attention_reference(qn, kn, vn, d ** -0.5, -2), atol=1e-4):
            fail(what, "the softmax runs over the queries (dim=-2).",
                 "Each query's weights over the keys must sum to 1: softmax(..., dim=-1).")
        fail(what, f"values differ from softmax(q k^T / sqrt(d)) v for q, k, v of shape {shape}.",
             "scores = q @ k.transpose(-1, -2) / math.sqrt(d); weights = scores.softmax(dim=-1); "
             "return weights @ v.")
    return passed(what)
