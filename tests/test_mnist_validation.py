"""The MNIST settings sweep (course_lib.programs.mnist_validation): bad arguments are refused before any
work, every finished row is kept at once and a rerun skips it, and its table is the rows' means."""
import pandas as pd
import pytest

from course_lib import config
from course_lib.programs import mnist_validation as mv


@pytest.mark.parametrize("argv, word", [(["--classes", "eleven"], "class 'eleven'"),
                                        (["--candidates", "9"], "candidate 9"),
                                        (["--seeds", "-1"], "seed -1")])
def test_bad_arguments_get_one_line_and_exit_2_before_any_work(argv, word, monkeypatch, capsys):
    monkeypatch.setattr(mv, "evaluate", lambda *a: pytest.fail("work started"))
    assert mv.main(argv) == 2
    err = capsys.readouterr().err
    assert word in err and "classes are 0-9" in err and len(err.strip().splitlines()) == 1


def fake_rows(overrides, k, seed, prof, done):
    label = mv.label_of(prof) if not overrides else f"variant {sorted(overrides.items())}"
    return [{"candidate": label, "class": k, "seed": seed, "method": m, "side": 16, "n_train": 10, "steps": 5,
             "val_auroc": 0.5 + 0.1 * (m == mv.DIFFUSION) + 0.01 * int(k), "train_s": 60.0 * (1 + int(k)),
             "n_val": 4}
            for m in mv.of_kind("pixels") + [mv.DIFFUSION] if (label, k, seed, m) not in done]


def test_rows_are_kept_as_they_finish_and_a_rerun_skips_them(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_RESULTS", str(tmp_path))
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    calls = []
    monkeypatch.setattr(mv, "evaluate", lambda *a: calls.append(a[1]) or fake_rows(*a))
    assert mv.main(["--classes", "2", "8", "--candidates", "0"]) == 0
    table = pd.read_csv(tmp_path / "mnist-validation.csv", dtype={"class": str})
    assert len(table) == 2 * (len(mv.of_kind("pixels")) + 1) and calls == ["2", "8"]
    assert mv.main(["--classes", "2", "8", "--candidates", "0"]) == 0      # done: nothing is added
    assert len(pd.read_csv(tmp_path / "mnist-validation.csv")) == len(table)
    assert "0.650" in (tmp_path / "mnist-validation.md").read_text()      # U-Net mean over classes 2 and 8


def test_the_table_gives_means_over_classes_and_the_median_training_minutes():
    prof = config.profile("smoke")
    df = pd.DataFrame([r for k in ("1", "3", "5") for r in fake_rows({}, k, 0, prof, set())])
    md = mv.to_markdown(df, prof)
    row = next(line for line in md.splitlines() if line.startswith(f"| {mv.label_of(prof)}"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:-2] == ["0.530"] * len(mv.of_kind("pixels")) + ["0.630"]   # means over the three classes
    assert cells[-2:] == ["4.0", "3"]                    # median of 2, 4, 6 minutes; three U-Net cells
    assert "classes 1, 3, 5" in md and "**Validation**" in md
