"""Checkpoints: save and load a denoiser, its EMA, the optimizer and the RNG state, safely.

A checkpoint is a plain dict of tensors, numbers and strings, read back with
``torch.load(..., weights_only=True)`` (no pickled code runs). It carries the model's config as a dict,
so that loading into a model of another shape fails with a message naming the field that differs,
and a SHA-256 digest of its weights, checked on every load, so that a damaged file is never used.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import atomic_write

FORMAT = "course_lib.checkpoint/2"   # /2: with the weights' digest


def model_config_dict(model: nn.Module) -> dict[str, Any] | None:
    """The model's ``config`` dataclass as a dict (tuples kept), or None if it has none."""
    config = getattr(model, "config", None)
    if config is None or not dataclasses.is_dataclass(config):
        return None
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def data_fingerprint(images: torch.Tensor) -> str:
    """A short hash of the training images (shape and float32 values): same data -> same string."""
    h = hashlib.sha256(str(tuple(images.shape)).encode())
    h.update(images.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def weights_digest(*state_dicts: dict[str, torch.Tensor] | None) -> str:
    """SHA-256 of the names, shapes, dtypes and bytes of every tensor in the state dicts (None skipped)."""
    h = hashlib.sha256()
    for sd in state_dicts:
        for key in sorted(sd or {}):
            t = sd[key].detach().cpu().contiguous()
            h.update(f"{key}|{tuple(t.shape)}|{t.dtype}|".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_checkpoint(path: str | os.PathLike, model: nn.Module, ema: nn.Module | None,
                    optimizer: torch.optim.Optimizer | None, step: int, *,
                    train_config: dict[str, Any] | None = None, rng: dict[str, torch.Tensor] | None = None,
                    losses: list[float] | None = None, seconds: float = 0.0,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write state_dicts + model config + train config + step + RNG state to `path`.

    The file is written to a temporary file unique to this process and then renamed
    (:func:`course_lib.atomic.atomic_write`), so an interrupted save never leaves a half-written
    checkpoint behind, and two processes saving the same checkpoint do not collide.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": FORMAT,
        "model_class": type(model).__name__,
        "model_config": model_config_dict(model),
        "model": model.state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "step": int(step),
        "train_config": dict(train_config or {}),
        "rng": dict(rng or {}),
        "losses": torch.tensor(losses or [], dtype=torch.float64),
        "seconds": float(seconds),
        "extra": dict(extra or {}),
    }
    state["digest"] = weights_digest(state["model"], state["ema"])
    with atomic_write(path) as tmp:
        torch.save(state, tmp)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (on the CPU, ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated zip, random bytes, a pickle with code in it, ...
        raise ValueError(f"Could not read the checkpoint {path}: the file is corrupt or not a course_lib "
                         f"checkpoint ({type(err).__name__}: {str(err)[:200]}). Delete it and train "
                         "again.") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else None
        raise ValueError(f"{path} is not a course_lib checkpoint of format {FORMAT!r}"
                         + (f" (it is {found!r}, from another version of course_lib)" if found else "")
                         + ". Delete it and train again.")
    if state.get("digest") != weights_digest(state["model"], state["ema"]):
        raise ValueError(f"The checkpoint {path} is damaged: its weights do not match the digest saved with "
                         "them. Delete it and train again.")
    return state


def check_compatible(checkpoint: dict[str, Any], model: nn.Module, path: str | os.PathLike = "") -> None:
    """Raise a ValueError naming the first difference between the checkpoint's model and `model`."""
    where = f" {path}" if path else ""
    if checkpoint["model_class"] != type(model).__name__:
        raise ValueError(f"The checkpoint{where} holds a {checkpoint['model_class']}, "
                         f"but the model is a {type(model).__name__}.")
    saved, ours = checkpoint["model_config"], model_config_dict(model)
    if saved is not None and ours is not None:
        as_tuple = lambda v: tuple(v) if isinstance(v, list) else v  # noqa: E731
        diffs = [f"checkpoint has {key}={saved.get(key, '<missing>')}, model has {ours.get(key, '<missing>')}"
                 for key in sorted(set(saved) | set(ours)) if as_tuple(saved.get(key)) != as_tuple(ours.get(key))]
        if diffs:
            raise ValueError(f"The checkpoint{where} does not fit this model: {'; '.join(diffs)}. Build the "
                             "model with the checkpoint's config, or train a new one.")
    own = model.state_dict()
    for key in sorted(set(checkpoint["model"]) | set(own)):
        a, b = checkpoint["model"].get(key), own.get(key)
        if a is None or b is None or a.shape != b.shape:
            shape = lambda v: "missing" if v is None else tuple(v.shape)  # noqa: E731
            raise ValueError(f"The checkpoint{where} does not fit this model: weight {key!r} is "
                             f"{shape(a)} in the checkpoint and {shape(b)} in the model.")


def load_into(model: nn.Module, path: str | os.PathLike, which: str = "ema") -> dict[str, Any]:
    """Load the ``"ema"`` (default) or ``"model"`` weights of a checkpoint into `model`; return the dict."""
    if which not in ("ema", "model"):
        raise ValueError(f"which must be 'ema' or 'model', got {which!r}.")
    ckpt = load_checkpoint(path)
    check_compatible(ckpt, model, path)
    if ckpt[which] is None:
        raise ValueError(f"The checkpoint {path} has no {which!r} weights.")
    model.load_state_dict(ckpt[which])
    return ckpt
