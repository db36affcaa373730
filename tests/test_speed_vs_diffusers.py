"""The speed comparison builds diffusers' models like ours (parameter counts agree) and reports ratios."""
import pytest
import torch

pytest.importorskip("diffusers")
from tools import speed_vs_diffusers as speed  # noqa: E402


@pytest.mark.parametrize("size", [16, 32])
def test_the_diffusers_models_are_built_like_ours(size):
    for make in (speed.unet_pair, speed.dit_pair):
        pair = make(1, size)
        ours, theirs = speed.count(pair.ours), speed.count(pair.theirs) - pair.duplicated
        assert abs(ours - theirs) <= 0.01 * theirs, (pair.name, ours, theirs)
        x, t = torch.randn(2, 1, size, size), torch.tensor([3, 700])
        assert pair.ours_call(x, t).shape == pair.theirs_call(x, t).shape == x.shape


def test_main_prints_a_median_ratio_per_network(capsys, one_thread):
    rows = speed.main(["--sizes", "16", "--rounds", "3", "--batch", "4", "--device", "cpu"])
    assert [r["net"] for r in rows] == ["U-Net unet-small", "DiT dit-ti4-d6"]
    assert all(r["q1"] <= r["median_ratio"] <= r["q3"] and r["median_ratio"] > 0 for r in rows)
    out = capsys.readouterr().out
    assert "| U-Net unet-small | 16 |" in out and "differs:" in out
