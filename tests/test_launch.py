"""Launch badges: generated from the one repository URL in pyproject.toml, each naming its own notebook."""
import json
import re
import shutil
from pathlib import Path
from urllib.parse import unquote

import pytest

from course_lib.course import committed
from tools import launch

REPO = Path(__file__).resolve().parents[1]   # the checkout under test


def test_every_notebook_carries_its_own_generated_badges_and_install_line():
    notebooks = launch.course_notebooks()
    assert len(notebooks) >= 10
    root = REPO
    for path in notebooks:
        nb = json.loads(path.read_text())
        rel = path.relative_to(root).as_posix()
        header = "".join(nb["cells"][0]["source"])
        assert launch.badges(rel) in header, rel
        colab = re.search(r"\(https://colab\.research\.google\.com/github/[^/]+/[^/]+/blob/main/([^)]+)\)", header)
        binder = re.search(r"\(https://mybinder\.org/v2/gh/[^/]+/[^/]+/main\?labpath=([^)]+)\)", header)
        for found in (colab.group(1), unquote(binder.group(1))):
            assert found == rel and (root / found).is_file()      # the badge opens this very notebook
        code = "".join(next(c for c in nb["cells"] if c["cell_type"] == "code")["source"])
        assert launch.colab_block() in code and launch.install_spec() in code
        assert "--no-deps" in code and '"pyod>=1.1"' in code          # Colab's torch is never touched


def test_colab_installs_only_what_it_lacks():
    missing = launch.colab_missing()
    assert missing == ["pyod>=1.1"]
    assert not any(r.split(">")[0] in ("torch", "torchvision", "ipywidgets") for r in missing)


def test_the_url_is_read_from_pyproject_and_stale_badges_are_found_and_fixed(tmp_path, monkeypatch, capsys):
    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "x"\n\n[project.urls]\n'
                                         'Repository = "https://github.com/someone/fork"\n')
    shutil.copy(REPO / "notebooks" / "00_setup_and_data.ipynb", root / "notebooks")
    shutil.copy(REPO / "README.md", root)
    monkeypatch.setattr(launch, "REPO", root)
    assert launch.repository_url() == "https://github.com/someone/fork"
    assert launch.main(["--check"]) == 1
    assert "out of date: 00_setup_and_data.ipynb, README.md" in capsys.readouterr().out
    assert launch.main([]) == 0
    assert launch.main(["--check"]) == 0
    text = (root / "notebooks" / "00_setup_and_data.ipynb").read_text()
    assert "github/someone/fork/blob/main/notebooks/00_setup_and_data.ipynb" in text
    assert "v2/gh/someone/fork/main?labpath=notebooks%2F00_setup_and_data.ipynb" in text
    assert "git+https://github.com/someone/fork" in text and "diffusion-ad-course" not in text
    readme = (root / "README.md").read_text()
    last = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))[-1].name    # the course map's last row
    assert f"(https://colab.research.google.com/github/someone/fork/blob/main/notebooks/{last})" in readme
    assert "mybinder.org/v2/gh/diffusion-ad-course" not in readme
    (root / "pyproject.toml").write_text('[project.urls]\nRepository = "https://gitlab.com/a/b"\n')
    with pytest.raises(RuntimeError, match="OWNER/NAME"):
        launch.badges("notebooks/00_setup_and_data.ipynb")


def test_the_course_map_has_a_row_per_notebook_with_its_prerequisites_and_own_launch_links():
    root = REPO
    readme = (root / "README.md").read_text()
    rows = re.findall(r"^\| (\d\d) \| \[[^\]]+\]\((notebooks/[^)]+)\) \|.*\| ([^|]+) \| [^|]+ \| "
                      r"\[Colab\]\(([^)]+)\) · \[Binder\]\(([^)]+)\) \|$", readme, re.M)
    assert [r[1] for r in rows] == [p.relative_to(root).as_posix() for p in launch.course_notebooks()]
    for number, path, needs, colab, binder in rows:
        assert colab == launch.colab_url(path) and binder == launch.binder_url(path)
        assert path.startswith(f"notebooks/{number}_")
        earlier = [int(n) for n in re.findall(r"\d\d", needs)]
        assert all(n < int(number) for n in earlier), (number, needs)   # a notebook needs only earlier ones


def test_a_results_file_is_the_clones_own_else_downloaded_once_from_the_main_branch(server, tmp_path, monkeypatch):
    for here in (REPO, REPO / "notebooks"):          # from the clone's root and from its notebooks/
        assert committed.results_file("benchmark.csv", here) == REPO / "results" / "benchmark.csv"
    # installed without the repository (Colab): the file comes from the main branch, into the user cache
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(committed, "raw_url", lambda: server.url("main"))
    (server.folder / "main" / "results").mkdir(parents=True)
    server.put("main/results/benchmark.csv", b"task,auroc\ndigits,0.9\n")
    path = committed.results_file("benchmark.csv")
    assert path == tmp_path / "cache" / "results-main" / "benchmark.csv"
    assert path.read_bytes() == b"task,auroc\ndigits,0.9\n"
    assert committed.results_file("benchmark.csv") == path and len(server.hits) == 1   # not fetched twice
    with pytest.raises(FileNotFoundError, match=r"results/nothing\.md is neither in .*HTTP 404.*Clone"):
        committed.results_file("nothing.md")
    assert not (tmp_path / "cache" / "results-main" / "nothing.md").exists()
