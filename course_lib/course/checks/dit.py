"""Self-checks for the exercises of notebook 08 (the Diffusion Transformer).

* ``check_patchify``: cutting images into p x p patch tokens, compared with a patch-by-patch loop in
  numpy written here (not with course_lib's own ``patchify``).
* ``check_modulate``: adaLN's ``x * (1 + scale) + shift``, one (shift, scale) per image, in float64.
* ``check_fresh_dit_prediction``: a prediction, written before running the cell, of what a freshly
  built adaLN-Zero DiT outputs; the check explains why the answer is exactly 0.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from course_lib.course.checks._core import call_learner as _call, fail, not_done, passed

__all__ = ["check_patchify", "check_modulate", "check_fresh_dit_prediction"]


def _patch_tokens(x: np.ndarray, p: int, *, channel_last: bool = True, row_major: bool = True) -> np.ndarray:
    """(B, C, H, W) -> (B, N, p*p*C) by looping over the patches. The defaults are the DiT layout: patches
    row by row (left to right, then down), each flattened in (row in patch, column in patch, channel)
    order. The other layouts are the typical mistakes the check recognises."""
    B, C, H, W = x.shape
    rows, cols = H // p, W // p
    order = [(i, j) for i in range(rows) for j in range(cols)] if row_major else \
            [(i, j) for j in range(cols) for i in range(rows)]
    out = np.empty((B, rows * cols, p * p * C), dtype=x.dtype)
    for b in range(B):
        for n, (i, j) in enumerate(order):
            patch = x[b, :, i * p:(i + 1) * p, j * p:(j + 1) * p]               # (C, p, p)
            out[b, n] = (patch.transpose(1, 2, 0) if channel_last else patch).reshape(-1)
    return out


def check_patchify(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> bool:
    """``fn(x, p)`` with x of shape (B, C, H, W) -> tokens (B, N, p*p*C), N = (H/p)(W/p): the patches in
    row-major order (left to right, then top to bottom), each flattened in (row, column, channel) order."""
    what = "patchify"
    g = torch.Generator().manual_seed(0)
    for shape, p in (((2, 3, 8, 8), 4), ((1, 3, 12, 12), 2), ((2, 1, 8, 8), 2), ((1, 3, 8, 8), 8)):
        B, C, H, W = shape
        x = torch.randn(shape, generator=g, dtype=torch.float64)
        want_shape = (B, (H // p) * (W // p), p * p * C)
        out = _call(fn, what, x.clone(), p)
        if not isinstance(out, torch.Tensor):
            fail(what, f"return a torch tensor, got {type(out).__name__}.")
        if tuple(out.shape) != want_shape:
            hint = ("Each token holds one whole patch: p*p*C numbers. Reshape to (B, C, H/p, p, W/p, p), "
                    "permute to (B, H/p, W/p, p, p, C), then reshape to (B, N, p*p*C).")
            if out.ndim == 3 and out.shape[1] == want_shape[2] and out.shape[2] == want_shape[1]:
                hint = "The two last axes are swapped: tokens run along axis 1, the patch values along axis 2."
            fail(what, f"for x of shape {shape} and p={p} expected tokens of shape {want_shape} "
                       f"(N = (H/p)*(W/p) = {want_shape[1]} patches of p*p*C = {want_shape[2]} values), "
                       f"got {tuple(out.shape)}.", hint)
        got, xn = out.detach().double().numpy(), x.numpy()
        if np.allclose(got, _patch_tokens(xn, p), atol=1e-12):
            continue
        if C > 1 and np.allclose(got, _patch_tokens(xn, p, channel_last=False), atol=1e-12):
            fail(what, f"each patch is flattened channel-first, (channel, row, column); with C={C} the "
                       "DiT layout is (row, column, channel).",
                 "Move the channel axis last before flattening: permute to (B, H/p, W/p, p, p, C).")
        if H // p > 1 and np.allclose(got, _patch_tokens(xn, p, row_major=False), atol=1e-12):
            fail(what, "the patches are in column-major order: token 1 is the patch *below* the first one.",
                 "Number the patches row by row, as you read: token k is patch (row k // (W/p), column "
                 "k % (W/p)); keep the H/p axis before the W/p axis when you permute.")
        swapped = np.ascontiguousarray(xn.transpose(0, 1, 3, 2))                # each patch transposed
        if p > 1 and np.allclose(got, _patch_tokens(swapped, p, row_major=False), atol=1e-12):
            fail(what, "inside each patch, rows and columns are swapped: flatten (row, column, channel), "
                       "i.e. the first p*C values are the patch's top row.",
                 "After reshaping to (B, C, H/p, p, W/p, p), permute with (0, 2, 4, 3, 5, 1).")
        fail(what, f"for x of shape {shape} and p={p} the tokens differ from the patches; token 0 should "
                   f"start with {np.round(_patch_tokens(xn, p)[0, 0, :3], 4).tolist()}..., yours starts "
                   f"with {np.round(got[0, 0, :3], 4).tolist()}....",
             "Token 0 is x[b, :, :p, :p] (top-left patch) flattened as (row, column, channel); token 1 is "
             "the patch to its right.")
    return passed(what)


def check_modulate(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> bool:
    """``fn(x, shift, scale)`` with x (B, N, D) and shift, scale (B, D) -> x * (1 + scale) + shift, one
    (shift, scale) pair per image, the same for all of its N tokens."""
    what = "modulate (adaLN)"
    g = torch.Generator().manual_seed(1)
    B, N, D = 2, 5, 6                      # B != N, so that a missing token axis shows up
    x = torch.randn(B, N, D, generator=g, dtype=torch.float64)
    shift, scale = (torch.randn(B, D, generator=g, dtype=torch.float64) for _ in range(2))
    try:
        out = fn(x.clone(), shift.clone(), scale.clone())
    except NotImplementedError as err:
        not_done(what, fn, err)
    except Exception as err:  # noqa: BLE001 -- any error in the learner's code is reported as such
        if isinstance(err, RuntimeError) and "must match the size" in str(err):
            fail(what, f"the shapes do not broadcast ({err}).",
                 "shift and scale are (B, D), x is (B, N, D): add the token axis, scale[:, None] and "
                 "shift[:, None], so every token of an image gets its image's pair.")
        fail(what, f"your function raised {type(err).__name__}: {err}",
             "Read the traceback above (the 'During handling' part) and fix the line it names.")
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (B, N, D):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        fail(what, f"for x of shape {(B, N, D)} expected an output of the same shape, got {got}.",
             "Broadcast the (B, D) shift and scale over the tokens: scale[:, None], shift[:, None].")
    xn, sh, sc = x.numpy(), shift.numpy()[:, None], scale.numpy()[:, None]
    got = out.detach().double().numpy()
    if np.allclose(got, xn * (1 + sc) + sh, atol=1e-12):
        return passed(what)
    if np.allclose(got, xn * sc + sh, atol=1e-12):
        fail(what, "you multiplied by scale instead of (1 + scale).",
             "adaLN-Zero starts with scale = 0; x * scale would wipe the tokens out, x * (1 + scale) "
             "leaves them unchanged: the modulation starts as the identity.")
    if np.allclose(got, xn * (1 + sh) + sc, atol=1e-12):
        fail(what, "shift and scale are swapped.", "x * (1 + scale) + shift: scale multiplies, shift adds.")
    if np.allclose(got, (xn + sh) * (1 + sc), atol=1e-12):
        fail(what, "you shifted before scaling, so the shift is scaled too.",
             "Scale first, then shift: x * (1 + scale) + shift.")
    fail(what, f"values differ from x * (1 + scale) + shift by up to {np.abs(got - (xn * (1 + sc) + sh)).max():.3g}.",
         "return x * (1 + scale[:, None]) + shift[:, None]")


def check_fresh_dit_prediction(value) -> bool:
    """``value``: your prediction, before running the next cell, of the mean absolute value of the output
    of a freshly built (untrained) adaLN-Zero DiT, for any noisy image x_t and any timestep t."""
    what = "prediction: a fresh DiT's output"
    why = ("The final layer's linear map (tokens -> patch values) is initialised to zero, weights and bias, so "
           "every output value is 0 whatever the blocks compute; and under adaLN-Zero every gate is 0 too, "
           "so each block is the identity. A fresh DiT predicts eps_theta = 0 exactly, and its first "
           "training loss is E||eps||^2 = 1 per value.")
    if value is None or value is ...:
        fail(what, "write your prediction as a number first (replace the None).",
             "Think about the last layer of the DiT and how it is initialised.")
    try:
        v = float(value.item() if isinstance(value, torch.Tensor) else value)
    except (TypeError, ValueError):
        fail(what, f"give one number, the mean |eps_theta(x_t, t)|, got {value!r}.")
        raise  # unreachable
    if abs(v) <= 1e-12:
        ok = passed(what)
        print(f"  Why: {why}")
        return ok
    if math.isclose(v, math.sqrt(2 / math.pi), abs_tol=0.02) or math.isclose(v, 1.0, abs_tol=0.02):
        fail(what, f"you predicted {v:g}: about the size of x_t or of the noise (E|N(0,1)| = 0.80). The blocks "
                   "start as the identity, but the network's output is not its input.", why)
    if math.isnan(v) or v < 0:
        fail(what, f"a mean absolute value cannot be {v:g}.", why)
    fail(what, f"you predicted {v:g}, but the output does not depend on the (random) weights of the blocks at "
               "all at initialisation.", why)
