"""The textures ablation runner: mirrored crops, one row per variant, per-kind AUROC, clear errors."""
import pytest
import torch

from course_lib import ablations
from course_lib.data.textures import DEFECTS


def test_mirrored_appends_the_three_flips():
    x = torch.arange(2 * 1 * 3 * 4, dtype=torch.float32).view(2, 1, 3, 4)
    m = ablations.mirrored(x)
    assert m.shape == (8, 1, 3, 4)
    assert torch.equal(m[:2], x)                          # the originals come first (calibration uses them)
    assert torch.equal(m[2, 0, :, 0], x[0, 0, :, -1])     # left-right: the first column is the last
    assert torch.equal(m[4, 0, 0], x[0, 0, -1])           # up-down: the first row is the last
    assert torch.equal(m[6, 0], x[0, 0].flip(0).flip(1))  # both
    for i in range(1, 4):                                  # a flip moves pixels, never changes them
        assert torch.equal(m[2 * i:2 * i + 2].flatten(1).sort(1).values, x.flatten(1).sort(1).values)


def test_ablations_write_one_row_per_variant(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("COURSE_CHECKPOINTS", str(tmp_path / "ckpt"))
    rows = ablations.main(["--profile", "smoke", "--categories", "grass", "--variants", "noise score",
                           "noise, 4", "--out", str(tmp_path)])
    assert [r["variant"] for r in rows] == ["noise score (benchmark)", "noise, 4 noise draws"]
    assert rows[1]["nfe"] == 4 * rows[0]["nfe"]
    for r in rows:
        assert {f"auroc[{k}]" for k in DEFECTS} <= set(r)
        assert all(0 <= r[k] <= 1 for k in ("auroc", "pixel_auroc", *(f"auroc[{k}]" for k in DEFECTS)))
    md = (tmp_path / "ablations-textures.md").read_text()
    assert "| grass | noise, 4 noise draws |" in md and "| stain |" in md


def test_ablations_refuse_unknown_names(tmp_path):
    with pytest.raises(SystemExit):
        ablations.main(["--profile", "smoke", "--categories", "carpet", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        ablations.main(["--profile", "smoke", "--variants", "dropout", "--out", str(tmp_path)])
