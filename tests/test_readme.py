"""The README's Python example runs as written (in the smoke profile)."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]   # the checkout under test


def test_readme_detector_example_runs(tmp_path, monkeypatch, one_thread):
    text = (REPO / "README.md").read_text()
    section = text.split("## The detector from Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    monkeypatch.setenv("COURSE_CHECKPOINTS", str(tmp_path))
    monkeypatch.chdir(tmp_path)                                  # det.save("grass_detector") writes here
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    task, det, flags = namespace["task"], namespace["det"], namespace["flags"]
    assert namespace["scores"].shape == flags.shape == (len(task.images),)
    assert set(flags.tolist()) <= {0, 1} and namespace["maps"].shape == (len(task.images), 1, *task.image_shape[1:])
    assert namespace["dit"].name == "dit/noise" and det.name == "ddpm-unet/noise"
    assert namespace["iforest"].decision_function(task.images).shape == (len(task.images),)
    assert (tmp_path / "grass_detector" / "detector.json").is_file()
    assert (det.decision_function(task.images) == namespace["scores"]).all()   # the loaded detector scores alike
