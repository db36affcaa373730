"""How fast is a training step of course_lib's networks against diffusers', built the same?

    pip install -e ".[speed]"                       # diffusers: an optional extra, never a core dependency
    python -m tools.speed_vs_diffusers         # U-Net and DiT at 16 and 32 px, batch 32, 1 channel

For each size it builds the profile's U-Net (``unet-small``) and DiT (``dit-ti4-d6``) and the closest
diffusers model (``UNet2DModel``; ``DiTTransformer2DModel`` with one class and an output of the input's
channels), checks that the parameter counts agree within a few percent, lists what still differs, then
times one training step (forward, backward, AdamW) of each, interleaved over repeated rounds with the
order swapped every round. It prints the median of the per-round ratio ours / diffusers with its
quartiles; never a best-of-N. Ratios below 1 mean course_lib is faster.
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.nets import build_denoiser, denoiser_config
from course_lib.nets.dit import TIME_FREQUENCY_DIM


def _diffusers():
    try:
        import diffusers
    except ImportError:
        raise SystemExit("diffusers is not installed: pip install -e \".[speed]\" (or pip install diffusers).") from None
    return diffusers


@dataclass
class Pair:
    name: str
    ours: nn.Module
    theirs: nn.Module
    ours_call: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    theirs_call: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    differences: list[str]
    duplicated: int = 0      # diffusers parameters that repeat ours (left out of the parameter comparison)


def unet_pair(channels: int, size: int, preset: str = "unet-small") -> Pair:
    """Our U-Net and a UNet2DModel with the same widths, blocks, attention levels, heads and norms."""
    cfg = denoiser_config(preset, in_channels=channels, image_size=size)
    ours = build_denoiser(cfg)
    widths = tuple(cfg.base_channels * m for m in cfg.channel_mult)
    attn = [size // 2 ** i in cfg.attention_resolutions for i in range(len(widths))]
    head_dim = widths[-1] // cfg.num_heads      # the middle block's heads; every attention level here is that wide
    theirs = _diffusers().UNet2DModel(
        sample_size=size, in_channels=channels, out_channels=channels, block_out_channels=widths,
        layers_per_block=cfg.num_res_blocks,
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attn),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)),
        attention_head_dim=head_dim, norm_num_groups=cfg.norm_groups, dropout=cfg.dropout,
        resnet_time_scale_shift="scale_shift" if cfg.scale_shift else "default",
        time_embedding_dim=cfg.time_embed_dim or 4 * cfg.base_channels, downsample_type="conv",
        upsample_type="conv", act_fn="silu", norm_eps=1e-5)
    sinusoid = (cfg.time_embed_dim or 4 * cfg.base_channels) // 4
    differences = ([f"time sinusoid width: ours {sinusoid} (a quarter of the embedding), diffusers {widths[0]} "
                    "(the first level's width)"] if sinusoid != widths[0] else []) + [
        "attention projections: ours one 1x1 conv for q, k, v; diffusers three linear layers (same parameters)",
        "diffusers divides each residual block's and attention's output by output_scale_factor / rescale_output_factor "
        "(1.0): an elementwise op more per block",
    ]
    return Pair(f"U-Net {preset}", ours, theirs, lambda x, t: ours(x, t), lambda x, t: theirs(x, t).sample,
                differences)


def dit_pair(channels: int, size: int, preset: str = "dit-ti4-d6") -> Pair:
    """Our DiT and a DiTTransformer2DModel with one class, the same width, depth, heads and patch."""
    cfg = denoiser_config(preset, in_channels=channels, image_size=size)
    ours = build_denoiser(cfg)
    theirs = _diffusers().DiTTransformer2DModel(
        num_attention_heads=cfg.num_heads, attention_head_dim=cfg.hidden_size // cfg.num_heads,
        in_channels=channels, out_channels=channels, num_layers=cfg.depth, sample_size=size,
        patch_size=cfg.patch_size, num_embeds_ada_norm=1, norm_type="ada_norm_zero", activation_fn="gelu-approximate")
    labels: dict[int, torch.Tensor] = {}

    def theirs_call(x, t):
        if x.shape[0] not in labels:
            labels[x.shape[0]] = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        return theirs(x, timestep=t, class_labels=labels[x.shape[0]]).sample

    per_block = sum(p.numel() for p in theirs.transformer_blocks[0].norm1.emb.parameters())
    differences = [
        f"every diffusers block embeds t (and the class) with its own MLP ({per_block:,} parameters each), where "
        f"ours embeds t once for all blocks: the {cfg.depth - 1} extra copies are left out of the parameter "
        "comparison; they cost one small MLP on (B, 256) per block",
        "diffusers needs class labels: one class (num_embeds_ada_norm=1), a 2 x D label table added to the "
        "time embedding",
        "attention: ours has biases on q, k, v; diffusers only on the output projection",
        f"patch embedding a p x p stride-p conv and time sinusoid {TIME_FREQUENCY_DIM} wide in both; attention "
        "through SDPA in both (diffusers via its Attention processor)",
    ]
    return Pair(f"DiT {preset}", ours, theirs, lambda x, t: ours(x, t), theirs_call, differences,
                duplicated=(cfg.depth - 1) * per_block)


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def time_steps(pair: Pair, batch: int, channels: int, size: int, rounds: int, device: torch.device
               ) -> list[float]:
    """Per-round ratios (our step time / diffusers' step time), steps interleaved, order swapped each round."""
    g = torch.Generator().manual_seed(0)
    x0 = (torch.rand(batch, channels, size, size, generator=g) * 2 - 1).to(device)
    t = torch.randint(0, 1000, (batch,), generator=g).to(device)
    noise = torch.randn(x0.shape, generator=g).to(device)
    x_t = 0.7 * x0 + 0.7 * noise
    runs = {}
    for side, model, call in (("ours", pair.ours, pair.ours_call), ("theirs", pair.theirs, pair.theirs_call)):
        model.to(device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step(model=model, call=call, optimizer=optimizer) -> None:
            loss = F.mse_loss(call(x_t, t).float(), noise)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        runs[side] = step

    def timed(step) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    for _ in range(3):                                   # warm-up: allocator, kernels, caches
        runs["ours"](), runs["theirs"]()
    ratios = []
    for r in range(rounds):
        order = ("ours", "theirs") if r % 2 == 0 else ("theirs", "ours")
        seconds = {side: timed(runs[side]) for side in order}
        ratios.append(seconds["ours"] / seconds["theirs"])
    return ratios


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 32])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=30, help="interleaved steps of each model")
    ap.add_argument("--nets", nargs="+", choices=("unet", "dit"), default=["unet", "dit"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, diffusers {_diffusers().__version__}, "
          f"threads {torch.get_num_threads()}, batch {args.batch}, {args.channels} channel(s), {args.rounds} rounds")
    rows = []
    for size in args.sizes:
        for net in args.nets:
            torch.manual_seed(0)
            pair = (unet_pair if net == "unet" else dit_pair)(args.channels, size)
            ours_n, theirs_n = count(pair.ours), count(pair.theirs) - pair.duplicated
            if abs(ours_n - theirs_n) > 0.05 * theirs_n:
                raise SystemExit(f"{pair.name} at {size} px: {ours_n:,} parameters against diffusers' {theirs_n:,}, "
                                 "more than 5 % apart: the two are not built alike.")
            ratios = time_steps(pair, args.batch, args.channels, size, args.rounds, device)
            q1, med, q3 = statistics.quantiles(ratios, n=4)
            rows.append(dict(net=pair.name, size=size, ours_params=ours_n, diffusers_params=theirs_n,
                             median_ratio=med, q1=q1, q3=q3))
            print(f"\n{pair.name} at {size} px: parameters {ours_n:,} (ours) vs {theirs_n:,} (diffusers"
                  + (f", {pair.duplicated:,} repeated ones left out" if pair.duplicated else "") + ")")
            for d in pair.differences:
                print(f"  differs: {d}")
    print("\n| network | px | params ours / diffusers | step time ours / diffusers: median [quartiles] |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['net']} | {r['size']} | {r['ours_params']:,} / {r['diffusers_params']:,} | "
              f"{r['median_ratio']:.2f} [{r['q1']:.2f}, {r['q3']:.2f}] |")
    return rows


if __name__ == "__main__":
    main()
