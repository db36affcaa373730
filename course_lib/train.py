"""One training loop for every denoiser eps_theta(x_t, t): the U-Net and the DiT alike.

Algorithm 1 of Ho et al. 2020 (draw x_0, t ~ U{0..T-1}, eps ~ N(0, I); step on ||eps - eps_theta(x_t, t)||^2)
with the usual engineering: AdamW, linear learning-rate warmup, gradient-norm clipping, an exponential
moving average (EMA) of the weights that is used for scoring, checkpoints that resume bit-exactly on
the CPU, and bf16 autocast / channels_last / torch.compile on CUDA.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from . import distributed
from .checkpoints import check_compatible, data_fingerprint, load_checkpoint, save_checkpoint
from .config import Profile, checkpoint_dir, fast_paths, get_device
from .data.task import check_images


@dataclass(frozen=True)
class TrainConfig:
    """How to train a denoiser. :meth:`from_profile` fills it from the course profile."""

    steps: int = 1000                   # optimizer steps in total
    batch_size: int = 32                # images per step, drawn with replacement from the training set
    lr: float = 1e-3                    # AdamW learning rate after warmup (constant, as in Ho et al.)
    warmup: int = 100                   # steps of linear warmup from lr/warmup to lr (Ho et al.: 5000)
    weight_decay: float = 0.0           # AdamW decoupled weight decay (Loshchilov & Hutter 2019)
    grad_clip: float | None = 1.0       # clip the global gradient norm to this (Ho et al.: 1.0); None = off
    ema_decay: float = 0.999            # EMA decay, warmed up as min(decay, (1+n)/(10+n)) after n updates
    log_every: int = 50                 # update the progress bar's mean loss every this many steps
    seed: int = 0                       # seeds the minibatches, timesteps, noise and dropout
    bf16: bool = False                  # bf16 autocast (CUDA only, unless config.fast_paths says otherwise)
    compile: bool = False               # torch.compile the model (CUDA only; ignored on other devices)
    checkpoint_path: str | None = None  # save a checkpoint here ...
    checkpoint_every: int = 0           # ... every this many steps (0: only at the end)

    def __post_init__(self):
        problems = [f"{name}={getattr(self, name)} must be {rule}" for name, ok, rule in [
            ("steps", self.steps >= 1, ">= 1"), ("batch_size", self.batch_size >= 1, ">= 1"),
            ("lr", self.lr > 0, "> 0"), ("warmup", self.warmup >= 0, ">= 0"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("grad_clip", self.grad_clip is None or self.grad_clip > 0, "> 0 or None"),
            ("ema_decay", 0.0 <= self.ema_decay < 1.0, "in [0, 1)"),
            ("log_every", self.log_every >= 1, ">= 1"), ("checkpoint_every", self.checkpoint_every >= 0, ">= 0"),
        ] if not ok]
        if problems:
            raise ValueError("TrainConfig: " + "; ".join(problems) + ".")

    @classmethod
    def from_profile(cls, P: Profile, **overrides: Any) -> "TrainConfig":
        """Steps, batch size, learning rate, bf16 and compile from the profile; warmup = 5% of the steps;
        a checkpoint every eighth of the run (at least 10 steps apart), so an interrupted run resumes."""
        base = dict(steps=P.train_steps, batch_size=P.batch_size, lr=P.lr, bf16=P.bf16, compile=P.compile,
                    warmup=max(1, P.train_steps // 20), log_every=max(1, min(50, P.train_steps // 10)),
                    checkpoint_every=max(10, P.train_steps // 8))
        return cls(**{**base, **overrides})


# Fields that may change between a run and its resumption (they do not change the numbers).
COSMETIC_FIELDS = ("steps", "log_every", "checkpoint_path", "checkpoint_every", "compile")


@dataclass
class TrainResult:
    """What :func:`train` returns. The trained `model` itself is updated in place."""

    losses: list[float]   # L_simple at every step, from step 1 (including steps before a resume)
    seconds: float        # wall-clock training time, all sessions together
    ema: nn.Module        # the EMA of the weights, in eval mode: score with this one
    steps: int            # optimizer steps done


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warmup over `config.warmup` steps, then constant (Ho et al. 2020, appendix B)."""
    return config.lr * min(1.0, (step + 1) / config.warmup) if config.warmup else config.lr


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """theta_ema <- decay * theta_ema + (1 - decay) * theta; buffers are copied."""
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.lerp_(p.detach(), 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


def _rng_state(data_gen: torch.Generator, noise_gen: torch.Generator, device: torch.device) -> dict:
    state = {"data": data_gen.get_state(), "noise": noise_gen.get_state(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, data_gen: torch.Generator, noise_gen: torch.Generator,
                   device: torch.device) -> None:
    data_gen.set_state(state["data"])
    noise_gen.set_state(state["noise"])
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def diffusion_key(diffusion) -> dict[str, Any]:
    """What of the diffusion a trained model depends on: T, the schedule and the prediction target."""
    return {"T": diffusion.T, "schedule": diffusion.schedule,
            "prediction": getattr(diffusion, "prediction", "eps")}


def training_differences(saved: dict[str, Any], config: TrainConfig) -> list[str]:
    """Fields (other than the cosmetic ones) in which a saved train config differs from `config`."""
    ours = dataclasses.asdict(config)
    return [f"{k}: checkpoint {saved.get(k)!r}, now {ours[k]!r}" for k in ours
            if k not in COSMETIC_FIELDS and saved.get(k) != ours[k]]


def _training_images(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The training set where minibatches are gathered: on the GPU when it takes under a quarter of its free
    memory (no copy per step), else pinned host memory (asynchronous copies); the CPU as it is."""
    if device.type != "cuda":
        return images
    free, _ = torch.cuda.mem_get_info(device)
    if images.numel() * images.element_size() < free // 4:
        return images.to(device)
    return images.pin_memory()


def train(model: nn.Module, diffusion, images: torch.Tensor, config: TrainConfig, *,
          device: str | torch.device | None = None, progress: bool = True,
          resume: str | os.PathLike | None = None) -> TrainResult:
    """Train `model` (in place) to predict the noise, with `diffusion.loss_simple`; return a TrainResult.

    `resume` names a checkpoint written by an earlier, interrupted run with the same config: the run
    continues from its step, and on the CPU ends with exactly the weights of an uninterrupted run.
    The global torch RNG is left as it was (dropout draws from a forked, seeded copy).

    Under torchrun (:mod:`course_lib.distributed`) every process draws the same global batch, its
    timesteps and its noise from the same generators and trains on its own slice of it, with
    DistributedDataParallel averaging the gradients: the run equals one process's with the same
    ``batch_size`` up to the order of floating-point sums (dropout draws per process). Only rank 0 writes
    the checkpoint, which any number of processes can resume. The loss is read back from the device
    every ``log_every`` steps only, where a non-finite loss stops the run.
    """
    images = check_images(images, "train: images")
    device = _this_process_device(device)
    extra = {"data": data_fingerprint(images), "diffusion": diffusion_key(diffusion)}
    model.to(device).train()
    if fast_paths(device):
        model.to(memory_format=torch.channels_last)   # faster convolutions with tensor cores
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    ckpt = _resume(resume, model, optimizer, config, extra) if resume is not None else None
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    if ckpt is not None:
        ema.load_state_dict(ckpt["ema"])
    forward = _wrapped(model, config, device)
    batches = _Batches(images, diffusion, config, device)
    log = _LossLog(config, ckpt["losses"].tolist() if ckpt is not None else [])
    start, seconds = (ckpt["step"], ckpt["seconds"]) if ckpt is not None else (0, 0.0)
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(config.seed + 2 + distributed.rank())                 # dropout, per process
        if ckpt is not None:
            _set_rng_state(ckpt["rng"], batches.data_gen, batches.noise_gen, device)
        bar = tqdm(range(start, config.steps), initial=start, total=config.steps, desc="train",
                   disable=not progress or not distributed.is_main(), leave=False)
        t0 = time.perf_counter()
        for step in bar:                                  # Algorithm 1; this update makes `step + 1` steps done
            x0, t, noise = batches.draw()                 # x_0 ~ the data, t ~ U{0, ..., T-1}, eps ~ N(0, I)
            loss = _gradient_step(forward, model, optimizer, diffusion, (x0, t, noise), lr_at(step, config),
                                  config, device)        # on || eps - eps_theta(x_t, t) ||^2 (or x0 / v)
            ema_update(ema, model, min(config.ema_decay, (1 + step) / (10 + step)))
            done = step + 1
            save = bool(config.checkpoint_path) and ((config.checkpoint_every and done % config.checkpoint_every == 0)
                                                     or done == config.steps)
            if log.add(loss, done, read=save):
                bar.set_postfix(loss=f"{log.recent_mean():.4f}")
            if save and distributed.is_main():
                save_checkpoint(config.checkpoint_path, model, ema, optimizer, done,
                                train_config=dataclasses.asdict(config),
                                rng=_rng_state(batches.data_gen, batches.noise_gen, device), losses=log.losses,
                                seconds=seconds + time.perf_counter() - t0, extra=extra)
        bar.close()
        seconds += time.perf_counter() - t0
    distributed.barrier()                # the other processes wait for rank 0's last checkpoint
    return TrainResult(losses=log.losses, seconds=seconds, ema=ema, steps=max(start, len(log.losses)))


def _this_process_device(device: str | torch.device | None) -> torch.device:
    device = torch.device(device) if device is not None else get_device()
    if distributed.is_distributed() and device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())   # this process's GPU (init_from_env)
    return device


def _resume(path, model: nn.Module, optimizer, config: TrainConfig, extra: dict) -> dict:
    """The checkpoint of an interrupted run of this very run, loaded into `model` and `optimizer`."""
    ckpt = load_checkpoint(path)
    check_compatible(ckpt, model, path)
    diffs = training_differences(ckpt["train_config"], config)
    if ckpt["extra"] != extra:
        diffs.append("the training images or the diffusion schedule differ")
    if diffs:
        raise ValueError(f"Cannot resume from {path}: the run differs ({'; '.join(diffs)}). Only "
                         f"{', '.join(COSMETIC_FIELDS)} may change when resuming.")
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    return ckpt


def _wrapped(model: nn.Module, config: TrainConfig, device: torch.device):
    """What the training step calls: the model, under torchrun inside DistributedDataParallel (which
    averages the gradients over the processes), and compiled on CUDA when the config asks."""
    net = model
    if distributed.is_distributed():
        from torch.nn.parallel import DistributedDataParallel
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return torch.compile(net) if (config.compile and device.type == "cuda") else net


class _Batches:
    """Minibatches for one process: the global batch is drawn alike by every process (which images from
    `data_gen`, t and eps from `noise_gen`), and each keeps its own rows of it."""

    def __init__(self, images: torch.Tensor, diffusion, config: TrainConfig, device: torch.device):
        self.images, self.diffusion, self.config, self.device = images, diffusion, config, device
        self.source = _training_images(images, device)
        self.rows = distributed.shard(config.batch_size)                 # this process's slice of the batch
        self.data_gen = torch.Generator().manual_seed(config.seed)                     # which images
        self.noise_gen = torch.Generator(device=device).manual_seed(config.seed + 1)   # t and eps

    def draw(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n, rows = self.config.batch_size, self.rows
        idx = torch.randint(len(self.images), (n,), generator=self.data_gen)[rows]
        x0 = self.source[idx.to(self.source.device)].to(self.device, non_blocking=True)      # (B, C, H, W)
        if fast_paths(self.device):
            x0 = x0.contiguous(memory_format=torch.channels_last)
        t = self.diffusion.mark_checked(self.diffusion.sample_t(n, generator=self.noise_gen, device=self.device)[rows])
        noise = torch.randn((n, *self.images.shape[1:]), generator=self.noise_gen, device=self.device)[rows]
        return x0, t, noise


def _gradient_step(forward, model: nn.Module, optimizer, diffusion, batch, lr: float, config: TrainConfig,
                   device: torch.device) -> torch.Tensor:
    """One AdamW step on L_simple of `batch` = (x_0, t, eps), the gradient norm clipped; returns the loss."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16 and fast_paths(device)):
        loss = diffusion.loss_simple(forward, *batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    return loss


class _LossLog:
    """The losses of a run. They stay on the device until read back, every ``log_every`` steps (a read is a
    sync on a GPU), averaged over the processes; a non-finite loss stops the run there."""

    def __init__(self, config: TrainConfig, losses: list[float]):
        self.config, self.losses, self.pending = config, losses, []

    def add(self, loss: torch.Tensor, done: int, *, read: bool = False) -> bool:
        """Keep the loss of step `done`; read the pending ones back when it is time (or `read`). True if read."""
        self.pending.append(loss.detach())
        if not (read or done % self.config.log_every == 0 or done == self.config.steps):
            return False
        values = distributed.mean_over_processes(torch.stack(self.pending).float()).tolist()
        self.pending.clear()
        first = done - len(values) + 1
        for i, value in enumerate(values):
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"train: the loss is {value} at step {first + i}; training stopped. Lower the learning "
                    f"rate (lr={self.config.lr}), keep gradient clipping on, or check the model for NaN/inf.")
        self.losses.extend(values)
        return True

    def recent_mean(self) -> float:
        recent = self.losses[-self.config.log_every:]
        return sum(recent) / len(recent)


def train_or_load(name: str, make_model: Callable[[], nn.Module], diffusion, images: torch.Tensor,
                  train_config: TrainConfig, *, directory: str | os.PathLike | None = None,
                  device: str | torch.device | None = None,
                  progress: bool = True) -> tuple[nn.Module, nn.Module, dict[str, Any]]:
    """Reuse the model an earlier notebook trained, or train it now: returns (model, ema, info).

    Loads ``<directory>/<name>.pt`` (default :func:`course_lib.config.checkpoint_dir`) when it holds
    this very model, config, training run and data; resumes it when that run was interrupted; otherwise
    trains from scratch and saves there. Both models come back in eval mode on `device`.
    `info` has: path, loaded (bool), reason, steps, seconds, losses.
    """
    path = Path(directory if directory is not None else checkpoint_dir()) / f"{name}.pt"
    device = torch.device(device) if device is not None else get_device()
    config = dataclasses.replace(train_config, checkpoint_path=str(path))
    model = make_model()
    resume, reason = None, "no checkpoint yet"
    if path.exists():
        try:
            ckpt = load_checkpoint(path)
            check_compatible(ckpt, model, path)
            reason = "; ".join(training_differences(ckpt["train_config"], config))
            if ckpt["train_config"].get("steps") != config.steps:
                reason = f"steps: checkpoint {ckpt['train_config'].get('steps')}, now {config.steps}"
            elif ckpt["extra"].get("data") != data_fingerprint(check_images(images, "train_or_load: images")):
                reason = "the checkpoint was trained on other images"
            elif ckpt["extra"].get("diffusion") != diffusion_key(diffusion):
                reason = "the checkpoint was trained with another diffusion schedule"
        except ValueError as err:
            warnings.warn(f"{err} Training {name!r} again.")
            ckpt, reason = None, str(err)
        if ckpt is not None and not reason:
            if ckpt["step"] >= config.steps:
                model.load_state_dict(ckpt["model"])
                ema = copy.deepcopy(model).requires_grad_(False)
                ema.load_state_dict(ckpt["ema"])
                info = dict(path=path, loaded=True, reason="found a matching checkpoint",
                            steps=ckpt["step"], seconds=ckpt["seconds"], losses=ckpt["losses"].tolist())
                return model.to(device).eval(), ema.to(device).eval(), info
            resume, reason = path, f"resuming an interrupted run at step {ckpt['step']}"
        elif ckpt is not None:
            reason = f"the checkpoint does not match ({reason}); training again"
    result = train(model, diffusion, images, config, device=device, progress=progress, resume=resume)
    info = dict(path=path, loaded=False, reason=reason, steps=result.steps, seconds=result.seconds,
                losses=result.losses)
    return model.eval(), result.ema, info


@dataclass
class StepCost:
    """Time and memory of one training step (forward, backward, AdamW update)."""

    seconds_per_step: float   # mean wall-clock seconds of one step (after warm-up steps)
    peak_bytes: int           # peak memory of one step, see `method`
    method: str               # how peak_bytes was measured


def step_cost(model: nn.Module, diffusion, images: torch.Tensor, batch_size: int, *, steps: int = 5,
              device: str | torch.device | None = None, bf16: bool = False) -> StepCost:
    """Measure seconds per step and peak memory of training `model` at `batch_size` (weights are changed).

    CUDA: ``torch.cuda.max_memory_allocated`` over the measured steps (exact, all tensors).
    CPU/MPS: an estimate from the tensors themselves: weights + gradients + the two AdamW moments
    (4 x parameter bytes) + the activations autograd saves for backward (counted once each through
    ``torch.autograd.graph.saved_tensors_hooks``). The process's ``ru_maxrss`` would instead report the
    high-water mark of everything Python ever held, so it is not used.
    """
    device = torch.device(device) if device is not None else get_device()
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x0 = images[torch.arange(batch_size) % len(images)].to(device)
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    def one_step(count_activations: bool) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and fast_paths(device)):
            if count_activations:
                with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
                    loss = diffusion.loss_simple(model, x0)
            else:
                loss = diffusion.loss_simple(model, x0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    one_step(count_activations=device.type != "cuda")      # warm-up (and the CPU activation count)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        one_step(count_activations=False)
    sync()
    seconds = (time.perf_counter() - t0) / steps
    if device.type == "cuda":
        return StepCost(seconds, torch.cuda.max_memory_allocated(device), "torch.cuda.max_memory_allocated")
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    return StepCost(seconds, 4 * param_bytes + sum(saved.values()),
                    "estimate: 4 x parameter bytes (weights, grads, AdamW moments) + saved activations")
