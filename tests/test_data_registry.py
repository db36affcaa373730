"""One record per dataset: load_task, the validation split, the downloader and the benchmark's grid are
all derived from course_lib.data.registry.TASKS, so a new dataset is one record and one builder."""
import pytest
import torch

from course_lib import config, data
from course_lib.data import download as dl
from course_lib.data import registry
from course_lib.data.task import AnomalyTask

SMOKE = config.profile("smoke")


def _build_squares(category, *, protocol, seed, profile, image_size=None):
    """A new dataset's one builder: dark squares are normal, bright (category "bright") or striped ones not."""
    side = image_size or 8
    g = torch.Generator().manual_seed(seed)
    train = -0.5 + 0.1 * torch.rand(10, 1, side, side, generator=g)
    if category == "bright":
        odd = 0.5 * torch.ones(4, 1, side, side)
    else:                                                     # every other row white
        odd = train[:4].clone().index_fill_(2, torch.arange(0, side, 2), 1.0)
    test = torch.cat([train[:4] + 0.01, odd])
    return AnomalyTask(name=f"squares/{category}", description="toy squares", train=train, images=test,
                       labels=torch.tensor([0] * 4 + [1] * 4))


def test_a_new_dataset_is_one_record_and_one_builder(monkeypatch):
    record = registry.Dataset("squares", _build_squares, ("bright", "striped"), "bright", "toy squares.",
                              "synthetic-defects", grid=("bright",))
    monkeypatch.setitem(registry.TASKS, "squares", record)
    task = data.load_task("squares", profile=SMOKE, image_size=6)
    assert task.name == "squares/bright" and task.image_shape == (1, 6, 6)
    assert data.load_task("squares", 1, profile=SMOKE).name == "squares/striped"     # an index into categories
    assert "squares" in data.offline_tasks() and data.grid_categories("squares") == ["bright"]
    val = data.load_task("squares", "striped", profile=SMOKE, split="validation")   # from the training images alone
    assert val.split == "validation" and len(val.train) == 6 and (val.labels == 1).sum() == 2
    with pytest.raises(ValueError, match=r"unknown category 'round'; valid: bright, striped"):
        data.load_task("squares", "round", profile=SMOKE)
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['colour'\]; valid: \['image_size'\]"):
        data.load_task("squares", profile=SMOKE, colour="red")


def test_every_list_of_datasets_comes_from_the_records():
    assert list(data.TASKS) == list(registry.TASKS)
    assert data.offline_tasks() == [n for n, d in registry.TASKS.items() if d.folder is None]
    assert list(dl.DATASETS) == ["cifar10", "mnist", "mnist-corrupted", "mnist-c", "mvtec", "mini-imagenet"]
    assert dl.RESOURCES["mnist"] == registry.TASKS["mnist"].resources and dl.RESOURCES["mini-imagenet"] == ()
    assert [n for n, d in registry.TASKS.items() if d.downloads_itself] == ["cifar10", "mnist", "mnist-corrupted",
                                                                             "mnist-c"]
    assert [n for n, d in registry.TASKS.items() if d.reads] == ["mnist-corrupted"]
    assert registry.TASKS["mnist-corrupted"].resources == registry.TASKS["mnist"].resources
    for name, d in registry.TASKS.items():
        assert d.default_category in d.categories and set(data.grid_categories(name)) <= set(d.categories)
        assert callable(d.validation) == d.offline                      # offline: its own validation builder
        assert d.offline or d.validation in ("class-split", "synthetic-defects")
    assert [n for n, d in registry.TASKS.items() if d.resources] == ["cifar10", "mnist", "mnist-corrupted", "mnist-c",
                                                                      "mvtec"]


def test_an_unknown_dataset_is_named_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"Unknown task 'imagenet'\. Valid tasks: digits, digits-c"):
        data.load_task("imagenet")
