"""Check the accelerator code path and time the profile's training and scoring: one short script to
run when a GPU is available, so that the run goes to measuring rather than exploring.

    python -m tools.devicecheck                       # CUDA: every check and the timing table
    python -m tools.devicecheck --compile             # ... also time torch.compile (slow to compile)
    python -m tools.devicecheck --profile smoke --device cpu --steps 3   # the same code at toy sizes

It checks, on the chosen device (default: the best one present):
1. training with the profile's settings (on CUDA: bf16 autocast and channels_last) lowers the loss
   and stays finite, and a checkpoint written there reloads to identical outputs;
2. scoring under bf16 autocast ranks images like scoring in float32 (Spearman correlation);
then times one training step (fp32 and, on CUDA, bf16) and the two scores of the U-Net and the DiT for each image size the
profile trains at, and projects the time of a full training run. It prints a markdown table and
writes it to ``--out`` (default ``results/devicecheck-<device>.md``). It exits with status 1 if a
check fails.
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from course_lib import config
from course_lib.atomic import write_text_atomic
from course_lib.checkpoints import load_into
from course_lib.diffusion import Diffusion
from course_lib.nets import make_denoiser
from course_lib.nets.unet import UNet, unet_config
from course_lib.scoring import noise_prediction_error, reconstruction_error
from course_lib.train import TrainConfig, step_cost, train


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, repeats: int = 3) -> float:
    """Seconds of one call of `fn` (after one warm-up call), the median of `repeats`."""
    fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return (f"{p.name}, {p.total_memory / 2**30:.0f} GiB, compute capability {p.major}.{p.minor}, "
                f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}; torch {torch.__version__}, "
                f"CUDA {torch.version.cuda}")
    return f"{device.type} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads); " \
           f"torch {torch.__version__}"


def check_training(prof: config.Profile, device: torch.device, steps: int, size: int) -> list[str]:
    """Train the profile's U-Net briefly on smooth random images; return the failures (empty = passed)."""
    failures = []
    g = torch.Generator().manual_seed(0)
    images = torch.nn.functional.interpolate(torch.rand(64, 1, 8, 8, generator=g) * 2 - 1, size=size,
                                             mode="bilinear", align_corners=False)
    diffusion = Diffusion(prof.timesteps)
    model = UNet(unet_config(prof.unet_preset, in_channels=1, image_size=size))
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "check.pt"
        tc = TrainConfig.from_profile(prof, steps=steps, lr=min(prof.lr, 1e-3), warmup=max(1, steps // 10),
                                      checkpoint_path=str(ckpt), log_every=max(1, steps // 5))
        result = train(model, diffusion, images, tc, device=device, progress=False)
        losses = np.asarray(result.losses)
        if not np.isfinite(losses).all():
            failures.append("training: the loss became NaN or inf")
        k = max(1, steps // 5)
        if steps >= 10 and not losses[-k:].mean() < losses[:k].mean():
            failures.append(f"training: the loss did not fall ({losses[:k].mean():.3f} -> {losses[-k:].mean():.3f})")
        reloaded = UNet(unet_config(prof.unet_preset, in_channels=1, image_size=size))
        load_into(reloaded, ckpt, which="ema")
        reloaded.to(device).eval()
        x, t = images[:4].to(device), torch.full((4,), 100, device=device)
        with torch.no_grad():   # (on CUDA the trained copy is channels_last: other kernels, float rounding)
            same = torch.allclose(result.ema(x, t), reloaded(x, t), rtol=0, atol=1e-4)
        if not same:
            failures.append("checkpoint: the reloaded EMA model gives other outputs")
    return failures


def check_bf16_scoring(prof: config.Profile, device: torch.device, size: int) -> tuple[float, list[str]]:
    """Spearman correlation between float32 and bf16-autocast noise scores of 64 images (1.0 off CUDA)."""
    if device.type != "cuda":
        return 1.0, []
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(64, 1, size, size, generator=g) * 2 - 1).to(device)
    x[32:, :, size // 4: size // 2, size // 4: size // 2] = 1.0      # half the images get a bright square
    diffusion = Diffusion(prof.timesteps)
    model = UNet(unet_config(prof.unet_preset, in_channels=1, image_size=size)).to(device).eval()
    with torch.no_grad():                    # the zero-initialised output layers would make every score equal
        for p in model.parameters():
            if p.dim() > 1 and not p.any():
                p.normal_(0, 0.02)
    fp32 = noise_prediction_error(diffusion, model, x, prof.noise_timesteps).scores
    with torch.autocast("cuda", dtype=torch.bfloat16):
        bf16 = noise_prediction_error(diffusion, model, x, prof.noise_timesteps).scores
    rho = float(spearmanr(fp32.float().cpu(), bf16.float().cpu()).statistic)
    return rho, ([] if rho > 0.98 else [f"bf16 scoring: Spearman correlation with float32 only {rho:.3f}"])


def time_size(prof: config.Profile, device: torch.device, size: int, channels: int, compile_: bool,
              preset: str | None = None) -> dict:
    """Seconds per training step (fp32, bf16, compiled) and ms per image of both scores at one image size,
    for the denoiser `preset` (default: the profile's U-Net)."""
    preset = preset or prof.unet_preset
    diffusion = Diffusion(prof.timesteps)
    images = torch.rand(prof.batch_size, channels, size, size) * 2 - 1
    row = {"denoiser": preset, "image": f"{channels}x{size}x{size}", "batch": prof.batch_size}
    make = lambda: make_denoiser(preset, in_channels=channels, image_size=size)  # noqa: E731
    row["params (M)"] = sum(p.numel() for p in make().parameters()) / 1e6
    cost = step_cost(make(), diffusion, images, prof.batch_size, device=device, steps=5)
    row["s/step fp32"], row["peak GiB fp32"] = cost.seconds_per_step, cost.peak_bytes / 2**30
    best = cost.seconds_per_step
    if device.type == "cuda":
        cost = step_cost(make().to(memory_format=torch.channels_last), diffusion, images, prof.batch_size,
                         device=device, steps=5, bf16=True)
        row["s/step bf16"], row["peak GiB bf16"] = cost.seconds_per_step, cost.peak_bytes / 2**30
        best = min(best, cost.seconds_per_step)
        if compile_:
            t0 = time.perf_counter()
            compiled = torch.compile(make().to(device).to(memory_format=torch.channels_last))
            cost = step_cost(compiled, diffusion, images, prof.batch_size, device=device, steps=5, bf16=True)
            row["compile s"] = time.perf_counter() - t0
            row["s/step bf16+compile"] = cost.seconds_per_step
            best = min(best, cost.seconds_per_step)
    row[f"train {prof.train_steps} steps (min)"] = best * prof.train_steps / 60
    model = make().to(device).eval()
    x = images[:min(64, len(images))].to(device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=prof.bf16 and device.type == "cuda"):
        noise_s = _timed(lambda: noise_prediction_error(diffusion, model, x, prof.noise_timesteps,
                                                        n_noise=prof.noise_pairs, antithetic=True,
                                                        coarse_sigma=prof.noise_coarse_sigma), device)
        recon_s = _timed(lambda: reconstruction_error(diffusion, model, x, prof.t_stars, steps=prof.ddim_steps,
                                                      n_noise=prof.n_noise), device, repeats=1)
    row["noise ms/img"] = 1000 * noise_s / len(x)
    row["recon ms/img"] = 1000 * recon_s / len(x)
    return row


def image_sizes(prof: config.Profile) -> list[tuple[int, int]]:
    """(channels, side) of the images the profile trains on: digits and MNIST, photos and CIFAR-10 (RGB),
    textures, MVTec-AD (RGB at the texture side), photos-64 and Mini-ImageNet (RGB, at least 64 px)."""
    return sorted({(1, prof.digits_size), (3, prof.photo_size), (1, prof.texture_size), (3, prof.texture_size),
                   (3, max(64, prof.photo_size))}, key=lambda cs: (cs[1], cs[0]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default=None, help="smoke | cpu | gpu (default: $COURSE_PROFILE, else by device)")
    ap.add_argument("--device", default=None, help="cuda | mps | cpu (default: the best one present)")
    ap.add_argument("--steps", type=int, default=200, help="training steps of the training check")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (CUDA only)")
    ap.add_argument("--out", type=Path, default=None, help="where to write the markdown table")
    args = ap.parse_args(argv)
    prof = config.profile(args.profile)
    device = config.get_device(args.device)
    lines = [f"# Device check: profile `{prof.name}`", "", f"Device: {describe_device(device)}.", ""]
    print("\n".join(lines), flush=True)
    smallest = image_sizes(prof)[0][1]
    failures = check_training(prof, device, args.steps, smallest)
    rho, bad = check_bf16_scoring(prof, device, smallest)
    failures += bad
    lines += [f"- training {args.steps} steps at {smallest} px"
              f"{' (bf16, channels_last)' if device.type == 'cuda' else ''}: "
              f"{'ok' if not any(f.startswith(('training', 'checkpoint')) for f in failures) else 'FAILED'}",
              "- bf16 vs float32 noise scores, Spearman correlation: "
              + (f"{rho:.4f}" if device.type == "cuda" else "not checked (bf16 autocast is used on CUDA only)"), ""]
    rows = []
    for preset in (prof.unet_preset, prof.dit_preset):
        for channels, size in image_sizes(prof):
            rows.append(time_size(prof, device, size, channels, args.compile, preset))
            print(f"timed {preset} at {channels}x{size}x{size}", flush=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[k]:.3g}" if isinstance(r.get(k), float) else str(r.get(k, "–"))
                                       for k in keys) + " |")
    lines += ["", "Failures: " + ("none" if not failures else "; ".join(failures))]
    text = "\n".join(lines) + "\n"
    print(text)
    out = args.out or Path(__file__).resolve().parent.parent / "results" / f"devicecheck-{device.type}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, text)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
