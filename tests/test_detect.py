"""Your own images: folder layouts load as a task, and `python -m course_lib.programs.detect` runs end to end."""
import csv

import numpy as np
import pytest
from PIL import Image

from course_lib.programs import detect
from course_lib.data.own_images import load_own_task, read_test_images


def _texture(rng, side=24):
    base = rng.normal(0.5, 0.05, (side, side)).clip(0, 1)
    return (np.stack([base] * 3, -1) * 255).astype(np.uint8)


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_mvtec(root, n_train=24, n_good=6, n_bad=6, seed=0):
    """An MVTec-layout folder: flat grey noise is normal, a bright square is a defect (with its mask)."""
    rng = np.random.default_rng(seed)
    for i in range(n_train):
        _write(root / "train" / "good" / f"{i:03d}.png", _texture(rng))
    for i in range(n_good):
        _write(root / "test" / "good" / f"{i:03d}.png", _texture(rng))
    for i in range(n_bad):
        img, mask = _texture(rng), np.zeros((24, 24), np.uint8)
        r, c = rng.integers(2, 14, 2)
        img[r:r + 8, c:c + 8] = 250
        mask[r:r + 8, c:c + 8] = 255
        _write(root / "test" / "square" / f"{i:03d}.png", img)
        _write(root / "ground_truth" / "square" / f"{i:03d}_mask.png", mask)
    return root


def test_an_mvtec_layout_loads_as_a_task_with_labels_kinds_and_masks(tmp_path):
    root = make_mvtec(tmp_path / "part")
    task = load_own_task(root, size=16, channels=1)
    assert task.train.shape == (24, 1, 16, 16) and task.images.shape == (12, 1, 16, 16)
    assert task.labels.tolist() == [0] * 6 + [1] * 6 and set(task.kinds) == {"normal", "square"}
    assert task.masks is not None and task.masks[:6].sum() == 0 and (task.masks[6:].flatten(1).sum(1) > 0).all()
    rgb = load_own_task(root / "train" / "good", root / "test", size=20, channels=3)   # two plain folders
    assert rgb.train.shape[1:] == (3, 20, 20)


def test_bad_folders_get_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load_own_task(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        load_own_task(tmp_path / "empty")
    root = make_mvtec(tmp_path / "part", n_train=3)
    (root / "train" / "good" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read the image .*broken.png"):
        load_own_task(root, size=16)
    flat = tmp_path / "flat"
    _write(flat / "a.png", _texture(np.random.default_rng(1)))
    assert read_test_images(flat, size=16, channels=1).kinds is None
    with pytest.raises(ValueError, match="have no labels"):
        load_own_task(root / "test" / "good", flat, size=16)
    with pytest.raises(ValueError, match="channels must be 1"):
        load_own_task(root / "test" / "good", root / "test", size=16, channels=2)


def test_detect_writes_scores_maps_and_the_auroc(tmp_path, monkeypatch, capsys, one_thread):
    monkeypatch.setenv("COURSE_CHECKPOINTS", str(tmp_path / "ckpt"))
    root = make_mvtec(tmp_path / "part")
    out = tmp_path / "out"
    res = detect.main(["--train", str(root), "--out", str(out), "--size", "16", "--channels", "1",
                       "--profile", "smoke", "--steps", "40"])
    printed = capsys.readouterr().out
    with open(out / "scores.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12 and set(rows[0]) == {"path", "score", "anomaly", "label"}
    assert [int(r["label"]) for r in rows] == [0] * 6 + [1] * 6
    assert np.allclose([float(r["score"]) for r in rows], res["scores"], rtol=1e-5)
    assert [int(r["anomaly"]) for r in rows] == (res["scores"] > res["threshold"]).astype(int).tolist()
    maps = sorted(p.name for p in (out / "maps").glob("*.png"))
    assert len(maps) == 12 and "square__000.png" in maps and "good__000.png" in maps
    assert f"AUROC {res['auroc']:.3f}" in printed and "pixel AUROC" in printed
    assert res["auroc"] > 0.8                       # a bright square on flat noise is easy to see
    # the threshold comes from held-out normal images, so normal test images are not flagged wholesale
    agree = np.mean([int(r["anomaly"]) == int(r["label"]) for r in rows])
    assert agree >= 10 / 12, agree
    # unlabelled images are only scored, and a second run finds the model in the cache
    flat = tmp_path / "flat"
    for i in range(3):
        _write(flat / f"{i}.png", _texture(np.random.default_rng(i + 10)))
    res2 = detect.main(["--train", str(root / "train" / "good"), "--test", str(flat), "--out", str(tmp_path / "o2"),
                        "--size", "16", "--channels", "1", "--profile", "smoke", "--steps", "40", "--no-maps"])
    assert "found in the cache" in capsys.readouterr().out and "auroc" not in res2
    with open(tmp_path / "o2" / "scores.csv", newline="") as fh:
        assert next(csv.reader(fh)) == ["path", "score", "anomaly"]


def test_detect_refuses_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        detect.main(["--train", str(tmp_path / "nope"), "--test", str(tmp_path), "--out", str(tmp_path / "o")])
    assert "is not a folder" in capsys.readouterr().err
    plain = tmp_path / "plain"
    _write(plain / "a.png", _texture(np.random.default_rng(0)))
    with pytest.raises(SystemExit):
        detect.main(["--train", str(plain), "--out", str(tmp_path / "o")])
    assert "--test is needed" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        detect.main(["--train", str(plain), "--test", str(plain), "--out", str(tmp_path / "o")])
    assert "too few to hold out" in capsys.readouterr().err
