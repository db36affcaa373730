"""The gpu-profile cost table (tools.gpu_cost): FLOPs counted right on a network whose count is known,
costs that scale with the batch, and a table with a row per denoiser and image shape."""
from dataclasses import replace

import pytest
import torch
from torch import nn

from course_lib import config
from course_lib.diffusion import Diffusion
from tools import devicecheck, gpu_cost


class OneByOne(nn.Module):
    """eps_theta(x, t) = a 1x1 convolution of x: 2 C^2 H W FLOPs forward, and as many backward for the
    weight's gradient (x_t needs none)."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 1, bias=False)

    def forward(self, x, t):
        return self.conv(x)


def test_step_flops_are_forward_and_backward_of_the_network():
    c, h = 3, 8
    flops = gpu_cost.step_flops(OneByOne(c), Diffusion(10), torch.rand(1, c, h, h))
    assert flops == 2 * (2 * c * c * h * h)


def test_a_row_scales_with_the_batch_and_projects_time_from_flops():
    prof = replace(config.profile("smoke"), batch_size=2)
    one, two = (gpu_cost.cost_row(replace(prof, batch_size=b), prof.unet_preset, 1, 16) for b in (2, 4))
    flops_key = lambda p: f"TFLOP / step (batch {p})"        # noqa: E731
    assert two[flops_key(4)] == pytest.approx(2 * one[flops_key(2)])
    assert one["params (M)"] == two["params (M)"] and two["train memory (GB)"] > one["train memory (GB)"]
    t4 = one[f"T4 min / model ({prof.train_steps} steps)"]
    assert t4 == pytest.approx(prof.train_steps * one[flops_key(2)] * 1e12 / (0.4 * 65e12) / 60)


def test_the_table_has_a_row_per_denoiser_and_shape(tmp_path, capsys):
    out = tmp_path / "cost.md"
    assert gpu_cost.main(["--profile", "smoke", "--out", str(out)]) == 0
    text = out.read_text()
    prof = config.profile("smoke")
    for preset in (prof.unet_preset, prof.dit_preset):
        for c, s in devicecheck.image_sizes(prof):
            assert f"| {preset} | {c}x{s}x{s} |" in text
    assert "fits a T4" in text and "40%" in text


def test_the_readme_shows_the_committed_cost_table():
    from pathlib import Path
    repo = Path(__file__).resolve().parents[1]
    rows = [line for line in (repo / "results" / "gpu-cost.md").read_text().splitlines() if line.startswith("| ")]
    readme = (repo / "README.md").read_text()
    assert len(rows) == 11 and all(row in readme for row in rows)
