"""The layers of CONTRIBUTING.md ("The house"), read from every import of every module, those inside
functions too: the library imports only the library; the course support and the programs import the
library and their own layer; nothing in the package imports the repository's tools/."""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]   # the checkout under test
PACKAGE = REPO / "course_lib"

# what each layer may import from course_lib (the library is every module outside these two folders)
ALLOWED = {
    "library": {"library"},
    "course": {"library", "course"},
    "programs": {"library", "programs"},
}
# The one exception: the package's facade loads course_lib.setup() (course support) when first asked for,
# inside its module __getattr__, so that `import course_lib` never imports the course.
FACADE_EXCEPTION = ("course_lib", "course_lib.course.setup")


def layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "tools":
        return "tools"
    if parts[0] != "course_lib":
        return "outside"
    if len(parts) > 1 and parts[1] in ("course", "programs"):
        return parts[1]
    return "library"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports(source: str, module: str, is_package: bool) -> list[str]:
    """Every module that `source` (the text of `module`) imports, relative imports resolved."""
    found = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.append(target)
            # `from course_lib import programs` imports a module too
            found += [f"{target}.{alias.name}" for alias in node.names
                      if (PACKAGE.parent / f"{target}.{alias.name}".replace(".", "/")).with_suffix(".py").exists()
                      or (PACKAGE.parent / f"{target}.{alias.name}".replace(".", "/")).is_dir()]
    return found


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    own = layer(module)
    bad = []
    for target in imports(source, module, is_package):
        theirs = layer(target)
        if theirs == "outside" or (module, target) == FACADE_EXCEPTION:
            continue
        if theirs not in ALLOWED[own]:
            bad.append(f"{module} ({own}) imports {target} ({theirs})")
    return bad


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_layer_imports_only_what_it_may():
    assert len(MODULES) > 40
    problems = [v for path in MODULES
                for v in violations(path.read_text(), module_name(path), path.name == "__init__.py")]
    assert problems == []


def test_the_layers_hold_what_contributing_says():
    names = {module_name(p) for p in MODULES}
    assert {"course_lib.programs.bench", "course_lib.programs.detect", "course_lib.programs.train_cli",
            "course_lib.course.checks", "course_lib.course.exercises", "course_lib.course.solutions",
            "course_lib.course.setup"} <= names
    for library in ("diffusion", "losses", "sampling", "train", "scoring", "detector", "diffusion_detector",
                    "baselines", "metrics", "viz", "config", "data", "nets"):
        assert layer(f"course_lib.{library}") == "library" and f"course_lib.{library}" in names
    assert not any(n.startswith("course_lib.") and n.split(".")[1] in
                   ("notebook_standard", "launch", "devicecheck", "speed_vs_diffusers") for n in names)
    assert (REPO / "tools" / "notebook_standard.py").exists()


@pytest.mark.parametrize("module, source, expected", [
    ("course_lib.scoring", "from course_lib.programs import bench", "course_lib.scoring (library) imports course_lib.programs.bench (programs)"),
    ("course_lib.scoring", "def f():\n    from .course.checks import fail", "course_lib.scoring (library) imports course_lib.course.checks (course)"),
    ("course_lib.data.real", "from ..programs.bench import METHODS", "course_lib.data.real (library) imports course_lib.programs.bench (programs)"),
    ("course_lib.config", "from course_lib import course", "course_lib.config (library) imports course_lib.course (course)"),
    ("course_lib.programs.bench", "import course_lib.course.checks", "course_lib.programs.bench (programs) imports course_lib.course.checks (course)"),
    ("course_lib.course.setup", "from tools import launch", "course_lib.course.setup (course) imports tools (tools)"),
])
def test_an_upward_import_is_found_wherever_it_is_written(module, source, expected):
    assert expected in violations(source, module)


def test_imports_within_a_layer_and_down_pass():
    assert violations("from course_lib import config\nfrom . import bench", "course_lib.programs.detect") == []
    assert violations("from ..metrics import auroc\nfrom ._core import fail", "course_lib.course.checks.benchmark") == []
