"""The cells of the benchmark: which task, category, method, seed and split each number is, and the
default, full and custom grids. A grid is split between processes by a static partition (`shard`)."""
from __future__ import annotations

from dataclasses import dataclass

from course_lib import config, data
from course_lib.programs.bench.methods import METHODS, of_kind

# The default run: every offline task, its default category, the profile's first seed; the baselines
# everywhere and the U-Net's noise score (the course's best diffusion score) where a model trains in
# minutes (a 64 px U-Net trains for about a quarter of an hour on 2 cores).
QUICK_DIFFUSION_TASKS = ("digits", "digits-c", "textures", "photos")
QUICK_DIFFUSION_METHOD = "ddpm-unet/noise"

POOLED = "all"   # the category of digits-c and mnist-c that pools every corruption

# The --full grid: every offline dataset, with the categories its record names (data.registry: all ten
# digits, digits-c pooled and per corruption, the three textures, three photos, photos-64's astronaut).
FULL_CATEGORIES: dict[str, list[str]] = {name: data.grid_categories(name) for name in data.offline_tasks()}


@dataclass(frozen=True)
class Cell:
    """One number of the benchmark: a method fitted on one task, category and seed, and scored on the
    task's test split (reported) or its validation split (:func:`course_lib.data.load_task`)."""

    task: str
    category: str
    method: str
    seed: int
    split: str = "test"

    @property
    def filename(self) -> str:
        suffix = "" if self.split == "test" else f"__{self.split}"
        return f"{self.task}__{self.category}__{self.method}__{self.seed}{suffix}.json".replace("/", "-")

    @property
    def unit(self) -> str:
        """The work done as one piece: what shares one trained model (a denoiser's scores, on every
        category of a task whose categories share their training images: digits-c, mnist-c), or a
        source (task, category, seed, split) with the baselines."""
        family = METHODS[self.method].family
        shared = family != "baselines" and POOLED in data.TASKS[self.task].categories
        category = POOLED if shared else self.category
        return f"{self.task}__{category}__{self.seed}__{self.split}__{family}".replace("/", "-")


def quick_cells(prof: config.Profile) -> list[Cell]:
    """The default run (see :data:`QUICK_DIFFUSION_TASKS`)."""
    seed, cells = prof.seeds[0], []
    pixels = of_kind("pixels")
    for name in data.offline_tasks():
        cat = data.TASKS[name].default_category
        methods = pixels + ([QUICK_DIFFUSION_METHOD] if name in QUICK_DIFFUSION_TASKS else [])
        cells += [Cell(name, cat, m, seed) for m in methods]
    return cells


def grid_cells(tasks: list[str], methods: list[str], seeds: list[int],
               categories: dict[str, list[str]] | None = None) -> list[Cell]:
    """Every task x category x seed x method; a task's categories from `categories`, else its default
    category (for digits-c, the pooled "all"), seeds outermost within a category so that one
    task is built once per seed."""
    return [Cell(name, str(cat), m, seed) for name in tasks
            for cat in (categories or {}).get(name) or [data.TASKS[name].default_category]
            for seed in seeds for m in methods]


def validation_cells(cells: list[Cell], seed: int) -> list[Cell]:
    """The validation twin of every diffusion cell of `seed`: the same method, scored on the task's
    validation split by a model trained on its validation training images. It shows whether the
    settings, chosen on validation data, carry over to the test images (one more model per cell)."""
    return [Cell(c.task, c.category, c.method, c.seed, "validation") for c in cells
            if c.seed == seed and c.split == "test" and METHODS[c.method].kind == "diffusion"]


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {text!r}.") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard {text}: need 0 <= i < n.")
    return i, n


def shard(cells: list[Cell], index: int, count: int) -> list[Cell]:
    """Process `index` of `count`'s share of `cells`: every count-th unit of work (:attr:`Cell.unit`) in the
    grid's order, from the index-th. The grid lists each task's units together, so every shard gets an
    even share of every task's models; the same grid gives the same partition in every process, so the
    shards need no coordination (one per GPU, per torchrun rank or per job of a cluster array)."""
    units = list(dict.fromkeys(c.unit for c in cells))
    mine = set(units[index::count])
    return [c for c in cells if c.unit in mine]
