"""What the gpu profile costs, before anyone runs it on a GPU.

    python -m tools.gpu_cost                 # prints the table, writes results/gpu-cost.md
    python -m tools.gpu_cost --profile cpu   # the same for another profile

For each denoiser and image shape the profile trains at (``devicecheck.image_sizes``), measured here on
the CPU:

- the parameter count;
- the FLOPs of one training step at the profile's batch: torch's ``FlopCounterMode`` over the forward and
  backward pass of ``loss_simple`` at batch 1, times the batch (the count is linear in it);
- the memory of one training step at the profile's batch: the weights, their gradients and AdamW's two
  moments (4 x the parameter bytes), plus the activations autograd saves for the backward pass, measured
  at batch 1 in float32 (``train.step_cost``) and scaled by the batch. Under bf16 autocast many of them
  are kept in half precision, so this is an upper bound;
- the projected time to train one model for the profile's steps on a T4 and on an H200, at an assumed
  40 % of their peak: the T4 at its fp16 tensor-core peak (it has no bf16; 65 TFLOP/s), the H200 at its
  dense bf16 peak (989 TFLOP/s). A projection from FLOPs, not a measurement: small models run far below
  40 % of a GPU's peak, so read these as lower bounds.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from course_lib import config
from course_lib.atomic import write_text_atomic
from course_lib.diffusion import Diffusion
from course_lib.nets import make_denoiser
from course_lib.train import step_cost
from tools.devicecheck import image_sizes

UTILISATION = 0.4
GPUS = {"T4": (65e12, 16), "H200": (989e12, 141)}        # name: (peak FLOP/s, memory GB)


def step_flops(model: torch.nn.Module, diffusion: Diffusion, image: torch.Tensor) -> int:
    """FLOPs of the forward and backward pass of L_simple on one image."""
    with FlopCounterMode(display=False) as counter:
        diffusion.loss_simple(model, image).backward()
    return counter.get_total_flops()


def cost_row(prof: config.Profile, preset: str, channels: int, side: int) -> dict:
    diffusion = Diffusion(prof.timesteps)
    image = torch.rand(1, channels, side, side) * 2 - 1
    model = make_denoiser(preset, in_channels=channels, image_size=side)
    params = sum(p.numel() for p in model.parameters())
    flops = step_flops(model, diffusion, image) * prof.batch_size
    fixed = 4 * 4 * params                                     # float32 weights, gradients, AdamW moments
    one = step_cost(make_denoiser(preset, in_channels=channels, image_size=side), diffusion, image, 1,
                    steps=1, device="cpu")
    memory = fixed + (one.peak_bytes - fixed) * prof.batch_size
    row = {"denoiser": preset, "image": f"{channels}x{side}x{side}", "params (M)": params / 1e6,
           f"TFLOP / step (batch {prof.batch_size})": flops / 1e12, "train memory (GB)": memory / 1e9}
    for name, (peak, _) in GPUS.items():
        row[f"{name} min / model ({prof.train_steps} steps)"] = prof.train_steps * flops / (UTILISATION * peak) / 60
    row["fits a T4"] = "yes" if memory / 1e9 < GPUS["T4"][1] else "no"
    return row


def to_markdown(rows: list[dict], prof: config.Profile) -> str:
    keys = list(rows[0])
    lines = [f"Profile `{prof.name}`: batch {prof.batch_size}, {prof.train_steps} training steps per model. Measured "
             "on the CPU with `python -m tools.gpu_cost` (FLOPs by torch's FlopCounterMode; memory at batch 1 in "
             "float32, scaled to the batch: an upper bound under bf16); times projected at "
             f"{UTILISATION:.0%} of the T4's fp16 peak (65 TFLOP/s) and the H200's bf16 peak (989 TFLOP/s).", "",
             "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k]) for k in keys) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="gpu", help="smoke | cpu | gpu (default: gpu)")
    ap.add_argument("--out", type=Path, default=None, help="where to write the table (default results/gpu-cost.md "
                                                            "for the gpu profile, else nowhere)")
    args = ap.parse_args(argv)
    prof = config.profile(args.profile)
    rows = [cost_row(prof, preset, c, s) for preset in (prof.unet_preset, prof.dit_preset)
            for c, s in image_sizes(prof)]
    text = to_markdown(rows, prof)
    print(text)
    out = args.out or (Path(__file__).resolve().parent.parent / "results" / "gpu-cost.md" if prof.name == "gpu" else None)
    if out is not None:
        write_text_atomic(out, text)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
