"""Train the denoiser of one benchmark cell, in one process or several.

    python -m course_lib.programs.train_cli --task textures --category grass --seed 0
    torchrun --standalone --nproc_per_node 4 -m course_lib.programs.train_cli --task mvtec --category carpet --profile gpu

Under torchrun every process trains on its share of each global batch (``course_lib.distributed``,
``train.train``) and rank 0 writes the checkpoint into the user cache, under the very name that the
benchmark and the notebooks look for, so that they find the model instead of training it again. The
global batch is the profile's ``batch_size`` whatever the number of processes; it must divide evenly.
"""
from __future__ import annotations

import argparse

import torch.distributed as dist

from course_lib import config, data, distributed
from course_lib.denoisers import fit_denoiser


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", required=True, help=f"one of {', '.join(data.TASKS)}")
    ap.add_argument("--category", default=None, help="the task's category (default: its default category)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", choices=("test", "validation"), default="test",
                    help="train on the test task's training images, or on the validation task's")
    ap.add_argument("--denoiser", choices=("unet", "dit"), default="unet", help="the profile's U-Net or DiT")
    ap.add_argument("--profile", default=None, help="smoke | cpu | gpu (default: $COURSE_PROFILE)")
    ap.add_argument("--steps", type=int, default=None, help="training steps (default: the profile's)")
    ap.add_argument("--batch-size", type=int, default=None, help="the global batch (default: the profile's)")
    args = ap.parse_args(argv)
    if args.task not in data.TASKS:
        ap.error(f"unknown task {args.task!r}; valid: {', '.join(data.TASKS)}")
    overrides = {k: v for k, v in (("train_steps", args.steps), ("batch_size", args.batch_size)) if v is not None}
    try:                                 # the settings, the device and the data, checked before any training
        prof = config.profile(args.profile, **overrides)
        device = distributed.init_from_env(config.get_device())
        task = data.load_task(args.task, args.category, seed=args.seed, profile=prof, split=args.split)
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        ap.error(str(err).splitlines()[0])
    try:
        preset = prof.unet_preset if args.denoiser == "unet" else prof.dit_preset
        if distributed.is_main():
            print(f"training {preset} on {task.name} (seed {args.seed}, profile {prof.name}): "
                  f"{distributed.world_size()} process(es), global batch {prof.batch_size}, device {device}")
        _, info = fit_denoiser(task.train, prof, seed=args.seed, preset=preset, device=device,
                               progress=distributed.is_main())
        if distributed.is_main():
            print(f"{'found' if info['loaded'] else 'trained'} {info['path']}: {info['steps']} steps, "
                  f"{info['seconds']:.1f} s")
        return info
    finally:
        if distributed.is_distributed():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
