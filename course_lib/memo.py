"""Work done once per tensor rather than once per call: a schedule coefficient's copy on a device, and
the record that a timestep tensor was range-checked. On a GPU each would otherwise cost a transfer or a
device sync at every step of a chain. Both forget a tensor when it is freed.

Kept out of :class:`course_lib.diffusion.Diffusion`, so that the diffusion is a plain value (it pickles,
and the math reads without them).
"""
from __future__ import annotations

import weakref

import torch

_DEVICE_COPIES: dict[tuple[int, torch.device], tuple[weakref.ref, torch.Tensor]] = {}
_CHECKED: weakref.WeakValueDictionary[tuple[int, int], torch.Tensor] = weakref.WeakValueDictionary()


def on_device(coef: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`coef` on `device`: the tensor itself where it already is, else one copy made on first use."""
    if coef.device == device:
        return coef
    source, copy = _DEVICE_COPIES.get((id(coef), device), (None, None))
    if source is None or source() is not coef:                 # not made yet, or made for a freed tensor
        copy, key = coef.to(device), (id(coef), device)
        # dropped with its source tensor, so that a freed schedule leaves no copy behind
        _DEVICE_COPIES[key] = (weakref.ref(coef, lambda _, key=key: _DEVICE_COPIES.pop(key, None)), copy)
    return copy


def mark_checked(t: torch.Tensor, T: int) -> torch.Tensor:
    """Record that the timesteps `t` lie in [0, T-1]; returns `t`."""
    _CHECKED[(T, id(t))] = t
    return t


def is_checked(t: torch.Tensor, T: int) -> bool:
    """True when this very tensor was recorded by :func:`mark_checked` for a chain of length T."""
    return _CHECKED.get((T, id(t))) is t
