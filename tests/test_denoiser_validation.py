"""Choosing a denoiser on validation data: one row per candidate, cell and score, from validation tasks."""
from course_lib import data
from course_lib.programs import denoiser_validation


def test_candidates_are_scored_on_validation_tasks_only(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("COURSE_CHECKPOINTS", str(tmp_path / "ckpt"))
    monkeypatch.setattr(denoiser_validation, "CANDIDATES", (("unet-tiny", 1), ("dit-ti4-d2", 2)))
    loaded = []
    monkeypatch.setattr(data, "load_task", lambda *a, **k: loaded.append(a))   # the test split is never read
    out = tmp_path / "dv.md"
    df = denoiser_validation.main(["--profile", "smoke", "--cells", "digits/3", "--out", str(out),
                                   "--scores", "noise", "reconstruction"])
    assert not loaded
    assert len(df) == 2 * 2 and set(df["score"]) == {"noise", "reconstruction"}
    assert df.loc[df["preset"] == "dit-ti4-d2", "steps"].eq(60).all()          # 2x the smoke profile's 30 steps
    assert df["val_auroc"].between(0, 1).all() and (df["train_s"] > 0).all()
    text = out.read_text()
    assert "**Validation** AUROC" in text and "| dit-ti4-d2 | 60 |" in text and "digits/3 noise" in text
