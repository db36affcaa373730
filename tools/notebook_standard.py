"""The notebook standard of CONTRIBUTING.md ("Notebook standard"), as a check.

Each ``check_*`` function is one rule: it takes a notebook (the nbformat JSON as a dict, or a path)
and returns a list of problems, each a string that names the notebook, the cell, what is wrong and
how to fix it. ``check_notebook`` runs every rule, and

    python -m tools.notebook_standard notebooks/*.ipynb

prints the problems and exits 1 if there are any. The math rule renders every formula with KaTeX
under node (``katex_check.js`` next to this file; ``make katex`` installs KaTeX into
``.cache/node``); where node or KaTeX is missing it is skipped with a warning that says so.
"""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Optional, Union


Notebook = Union[dict, str, os.PathLike]

PROFILES = ("smoke", "cpu", "gpu")
KATEX_JS = Path(__file__).with_name("katex_check.js")
NODE_MODULES = Path(__file__).resolve().parent.parent / ".cache" / "node" / "node_modules"   # where `make katex` installs KaTeX
IMAGE_TYPES = ("image/png", "image/svg+xml", "image/jpeg")

# Code: an ipywidgets call that shows a widget.
WIDGET_CALL = re.compile(r"\b(?:interact|interact_manual|interactive|interactive_output)\s*\(")
WIDGET_REPR = re.compile(r"^[A-Za-z_]\w*\(")  # text/plain of a widget: "IntSlider(...)"; tqdm bars are not
# Markdown: code blocks and code spans (no math in them), math, references, escape damage.
FENCED_CODE = re.compile(r"^[ \t]*(`{3,}|~{3,}).*?(?:^[ \t]*\1[ \t]*$|\Z)", re.S | re.M)
CODE_SPAN = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.S)
MATH = re.compile(
    r"\$\$(?P<display>.+?)\$\$"
    r"|(?P<env>\\begin\{(?P<name>[A-Za-z]+\*?)\}.*?\\end\{(?P=name)\})"
    r"|(?<![\\$])\$(?P<inline>(?:\\.|[^$\\])+?)\$",
    re.S)
NOTEBOOK_REF = re.compile(r"\b[Nn]otebooks?\s+(\d\d(?:\s*(?:,|and|or|to|-|–|—)\s*\d\d)*)(?!\d)")
CONTROL_CHAR = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # all but tab and newline
# A LaTeX command whose backslash a Python string ate: "\nabla" -> newline + "abla", "\theta" -> tab +
# "heta". (\f, \b, \a, \v and \r leave control characters, which CONTROL_CHAR finds.)
LOST_BACKSLASH = re.compile(r"[\n\t](rac|abla|eq|ewline|onumber|heta|au|imes|ext|ilde)(?![a-zA-Z])")


class MathUnavailable(RuntimeError):
    """node, KaTeX or the JS checker is missing, so the math cannot be rendered."""


def _load(nb: Notebook, name: Optional[str] = None) -> tuple[dict, str]:
    """The notebook's JSON, and the name to use in messages."""
    if isinstance(nb, dict):
        return nb, name or "notebook"
    path = Path(nb)
    return json.loads(path.read_text(encoding="utf-8")), name or path.name


def _text(value: Union[str, list]) -> str:
    """nbformat keeps text as a string or a list of lines."""
    return value if isinstance(value, str) else "".join(value)


def _source(cell: dict) -> str:
    return _text(cell.get("source", ""))


def _cells(nb: dict, kind: str) -> list[tuple[int, dict]]:
    """(index, cell) of the cells of one kind; for code, only the cells that hold code."""
    return [(i, c) for i, c in enumerate(nb.get("cells", []))
            if c.get("cell_type") == kind and (kind != "code" or _source(c).strip())]


def _code_text(cell: dict) -> str:
    return re.sub(r"#[^'\"\n]*$", "", _source(cell), flags=re.M)  # without comments (a # in a string stays)


def _short(text: str, n: int = 60) -> str:
    return repr(text if len(text) <= n else text[:n] + "…")


def check_header(nb: Notebook, name: Optional[str] = None) -> list[str]:
    """The first cell is markdown: title, Colab and Binder badges, goals, prerequisites, run times."""
    nb, name = _load(nb, name)
    cells = nb.get("cells", [])
    if not cells or cells[0].get("cell_type") != "markdown":
        return [f"{name}: cell 0: the notebook must open with a markdown header (title, badges, learning "
                "goals, prerequisites, run time per profile): add one, as in notebooks/00_*.ipynb"]
    text = _source(cells[0])
    fields = {"a title (first line '# NN · Title')": r"\A\s*#[ \t]+\S",
              "a Colab badge": r"colab\.research\.google\.com",
              "a Binder badge": r"mybinder\.org",
              "the learning goals ('**Learning goals.**' and a list)": r"learning goals.*\n[ \t]*(?:[-*+]|\d+\.)[ \t]+\S",
              "the prerequisites ('**Prerequisites.**')": r"prerequisites"}
    problems = [f"{name}: cell 0: the header has no {field}: add it (CONTRIBUTING.md, Notebook standard 1)"
                for field, pattern in fields.items() if not re.search(pattern, text, re.I)]
    number, title = re.match(r"(\d\d)_", Path(name).name), re.match(r"\A\s*#[ \t]+(\d\d)\b", text)
    if number and title and title.group(1) != number.group(1):
        problems.append(f"{name}: cell 0: the title says {title.group(1)} but the file is number {number.group(1)}: "
                        f"start the title with '# {number.group(1)} · '")
    run_time = re.search(r"run time(.*?)(?:\n[ \t]*\n|\Z)", text, re.I | re.S)
    missing = [p for p in PROFILES if not (run_time and re.search(rf"\b{p}\b", run_time.group(1)))]
    if missing:
        problems.append(f"{name}: cell 0: the header's run time does not cover {', '.join(missing)}: add "
                        "'**Run time.** smoke: … · cpu: … · gpu: …'")
    return problems


def check_setup(nb: Notebook, name: Optional[str] = None) -> list[str]:
    """The first code cell calls course_lib.setup()."""
    nb, name = _load(nb, name)
    code = _cells(nb, "code")
    if not code:
        return [f"{name}: the notebook has no code cell: its first code cell must call course_lib.setup()"]
    i, cell = code[0]
    text = _code_text(cell)
    if re.search(r"\bsetup\s*\(", text) and "course_lib" in text:
        return []
    return [f"{name}: cell {i}: the first code cell does not call course_lib.setup(): add "
            "`import course_lib` and `P = course_lib.setup(seed=0)` (profile, device, seed, plot style)"]


def check_kernel(nb: Notebook, name: Optional[str] = None) -> list[str]:
    """The kernelspec is python3, which nbval, Colab and `make execute` use."""
    nb, name = _load(nb, name)
    kernel = nb.get("metadata", {}).get("kernelspec", {}).get("name")
    if kernel == "python3":
        return []
    return [f"{name}: metadata: the kernel is {kernel!r}: set metadata.kernelspec.name to 'python3'"]


def check_execution(nb: Notebook, name: Optional[str] = None) -> list[str]:
    """The outputs come from one top-to-bottom run: execution counts 1, 2, 3, … with no gap."""
    nb, name = _load(nb, name)
    for expected, (i, cell) in enumerate(_cells(nb, "code"), start=1):
        count = cell.get("execution_count")
        if count != expected:
            return [f"{name}: cell {i}: execution count {count}, expected {expected}: the outputs are not "
                    "from one top-to-bottom run; re-run the whole notebook (`make execute`)"]
    return []


def check_errors(nb: Notebook, name: Optional[str] = None) -> list[str]:
    """No committed error output."""
    nb, name = _load(nb, name)
    return [f"{name}: cell {i}: an error output ({out.get('ename')}: {_short(str(out.get('evalue')))}): "
            "fix the cell and re-run the notebook"
            for i, cell in _cells(nb, "code") for out in cell.get("outputs", [])
            if out.get("output_type") == "error"]


def _python(cell: dict) -> Optional[ast.Module]:
    """The cell's code as a syntax tree (IPython magics and shell lines blanked), or None if it does not parse."""
    text = re.sub(r"^\s*[%!].*$", "", _source(cell), flags=re.M)
    try:
        return ast.parse(text)
    except SyntaxError:
        return None


def _is_stub(fn: ast.FunctionDef) -> bool:
    """An `@exercise` function whose body raises NotImplementedError: the learner writes the body."""
    decorated = any((isinstance(d, ast.Name) and d.id == "exercise") or
                    (isinstance(d, ast.Attribute) and d.attr == "exercise") for d in fn.decorator_list)
    raises = any(isinstance(n, ast.Raise) and n.exc is not None and
                 "NotImplementedError" in {getattr(n.exc, "id", None), getattr(getattr(n.exc, "func", None), "id", None)}
                 for n in ast.walk(fn))
    return decorated and raises


def _check_name(call: ast.Call) -> Optional[str]:
    f = call.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
    return name if name and name.startswith("check_") else None


def check_exercises(nb: Notebook, name: Optional[str] = None, minimum: int = 2) -> list[str]:
    """At least `minimum` exercises that the learner does: distinct `course_lib.course.checks` functions, each called
    on an `@exercise` stub of the notebook whose body raises NotImplementedError."""
    nb, name = _load(nb, name)
    trees = [t for _, c in _cells(nb, "code") if (t := _python(c)) is not None]
    stubs = {n.name for t in trees for n in ast.walk(t) if isinstance(n, ast.FunctionDef) and _is_stub(n)}
    called = {check for t in trees for n in ast.walk(t) if isinstance(n, ast.Call) and (check := _check_name(n))
              and n.args and isinstance(n.args[0], ast.Name) and n.args[0].id in stubs}
    if len(called) >= minimum:
        return []
    return [f"{name}: whole notebook: {len(called)} checked exercise(s) {sorted(called)}, at least {minimum} "
            "needed: add a code exercise the learner completes (an `@exercise` function whose body raises "
            "NotImplementedError), checked by a `course_lib.course.checks.check_*` call on it"]


def _shows_widget(cell: dict) -> bool:
    return bool(WIDGET_CALL.search(_code_text(cell))) or any(
        "application/vnd.jupyter.widget-view+json" in out.get("data", {})
        and WIDGET_REPR.match(_text(out["data"].get("text/plain", "")))
        for out in cell.get("outputs", []))


def _has_image(cell: dict) -> bool:
    return any(kind in out.get("data", {}) for out in cell.get("outputs", []) for kind in IMAGE_TYPES)


def check_widgets(nb: Notebook, name: Optional[str] = None) -> list[str]:
    """At least one widget, and a static figure in the widget's cell or the next code cell."""
    nb, name = _load(nb, name)
    code = _cells(nb, "code")
    widgets = [k for k, (_, cell) in enumerate(code) if _shows_widget(cell)]
    if not widgets:
        return [f"{name}: whole notebook: no ipywidgets widget: add one to explore the main idea "
                "(e.g. `interact` with a slider), followed by a static figure"]
    return [f"{name}: cell {code[k][0]}: a widget with no static figure after it (widgets do not render on "
            "GitHub or in CI): make the next code cell draw the same view as a plain figure"
            for k in widgets if not (_has_image(code[k][1]) or (k + 1 < len(code) and _has_image(code[k + 1][1])))]


def math_spans(markdown: str) -> list[tuple[str, bool]]:
    """(TeX, display mode) of each $…$, $$…$$ and \\begin{…}…\\end{…} outside code."""
    text = CODE_SPAN.sub(" ", FENCED_CODE.sub(" ", markdown))
    spans = []
    for m in MATH.finditer(text):
        if m.group("inline") is not None and re.search(r"\n[ \t]*\n", m.group("inline")):
            continue  # a $ each in two paragraphs is not math
        tex = m.group("display") or m.group("env") or m.group("inline")
        spans.append((tex, m.group("inline") is None))
    return spans


def check_control_chars(nb: Notebook, name: Optional[str] = None) -> list[str]:
    """No control characters in markdown, and no LaTeX command whose backslash became one."""
    nb, name = _load(nb, name)
    problems = []
    for i, cell in _cells(nb, "markdown"):
        text = _source(cell)
        for m in CONTROL_CHAR.finditer(text):
            problems.append(f"{name}: cell {i}: control character {m.group()!r} in markdown, before "
                            f"{_short(text[m.end():m.end() + 20])}: a Python escape ate a LaTeX backslash "
                            "(\\f of \\frac, \\b of \\beta, …): restore the command (write sources as raw strings)")
        for tex, _ in math_spans(text):
            for m in LOST_BACKSLASH.finditer(tex):
                command = "frac" if m.group(1) == "rac" else {"\n": "n", "\t": "t"}[m.group()[0]] + m.group(1)
                problems.append(f"{name}: cell {i}: the math {_short(tex)} has {m.group()!r}, the LaTeX command "
                                f"\\{command} after a Python escape ate its backslash: write \\{command}")
    return problems


def notebook_numbers(folder: Union[str, os.PathLike]) -> set[str]:
    """The numbers ("00", "01", …) of the course notebooks NN_name.ipynb in a folder."""
    return {p.name[:2] for p in Path(folder).glob("[0-9][0-9]_*.ipynb")}


def check_references(nb: Notebook, existing_numbers: Iterable, name: Optional[str] = None) -> list[str]:
    """Every 'notebook NN' (and 'notebooks NN and MM', 'NN-MM') names a notebook that exists."""
    nb, name = _load(nb, name)
    existing = {f"{int(n):02d}" for n in existing_numbers}
    problems = []
    for i, cell in enumerate(nb.get("cells", [])):
        for m in NOTEBOOK_REF.finditer(_source(cell)):
            for number in re.findall(r"\d\d", m.group(1)):
                if number not in existing:
                    problems.append(f"{name}: cell {i}: {_short(m.group())} refers to notebook {number}, which "
                                    "does not exist: name the topic or say 'a later notebook' until it does")
    return problems


def render_math(notebooks: list[list[tuple[str, bool]]]) -> list[list[Optional[str]]]:
    """KaTeX's error (None where it renders) for each (TeX, display) span, in one node process.
    Definitions (\\newcommand) hold within a notebook's list. Raises MathUnavailable."""
    node = shutil.which("node")
    if node is None or not KATEX_JS.exists():
        raise MathUnavailable("node is not installed" if node is None else f"{KATEX_JS} is missing")
    node_path = os.pathsep.join(filter(None, [str(NODE_MODULES), os.environ.get("NODE_PATH")]))
    payload = json.dumps([[{"tex": tex, "display": display} for tex, display in spans] for spans in notebooks])
    run = subprocess.run([node, str(KATEX_JS)], input=payload, capture_output=True, text=True,
                         encoding="utf-8", env=dict(os.environ, NODE_PATH=node_path), timeout=300)
    if run.returncode == 3:
        raise MathUnavailable(run.stderr.strip())
    if run.returncode != 0:
        raise RuntimeError(f"{KATEX_JS.name} failed ({run.returncode}): {run.stderr.strip()}")
    return json.loads(run.stdout)


@lru_cache(maxsize=None)
def math_unavailable() -> Optional[str]:
    """Why the math rule cannot run here (no node, no KaTeX), or None where it can."""
    try:
        render_math([[("x", False)]])
    except MathUnavailable as e:
        return str(e)
    return None


def check_math(nb: Notebook, name: Optional[str] = None) -> list[str]:
    """Every math span of the markdown renders in KaTeX. Raises MathUnavailable."""
    nb, name = _load(nb, name)
    spans = [(i, tex, display) for i, cell in _cells(nb, "markdown") for tex, display in math_spans(_source(cell))]
    errors = render_math([[(tex, display) for _, tex, display in spans]])[0]
    return [f"{name}: cell {i}: the math {_short(tex)} does not render ({error}): fix the LaTeX"
            for (i, tex, _), error in zip(spans, errors) if error]


RULES = {"header": check_header, "setup": check_setup, "kernel": check_kernel, "execution": check_execution,
         "errors": check_errors, "exercises": check_exercises, "widgets": check_widgets,
         "control_chars": check_control_chars, "references": check_references, "math": check_math}


def problems_by_rule(path: Union[str, os.PathLike], existing_numbers: Optional[Iterable] = None,
                     math: bool = True) -> dict[str, list[str]]:
    """{rule: problems} for the rules that fail. `existing_numbers` defaults to the notebooks next to
    `path`. With math=False the math rule is skipped; without node or KaTeX too, with a warning."""
    nb, name = _load(path)
    if existing_numbers is None:
        existing_numbers = notebook_numbers(Path(path).parent)
    found = {}
    for rule, check in RULES.items():
        if rule == "references":
            found[rule] = check(nb, existing_numbers, name)
        elif rule != "math":
            found[rule] = check(nb, name)
        elif math:
            try:
                found[rule] = check(nb, name)
            except MathUnavailable as e:
                warnings.warn(f"{name}: math not checked: {e}", stacklevel=2)
    return {rule: problems for rule, problems in found.items() if problems}


def check_notebook(path: Union[str, os.PathLike], existing_numbers: Optional[Iterable] = None) -> list[str]:
    """Every problem of one notebook, rule by rule."""
    return [p for problems in problems_by_rule(path, existing_numbers).values() for p in problems]


def main(argv: Optional[list[str]] = None) -> int:
    paths = (argv if argv is not None else sys.argv[1:]) or sorted(map(str, Path("notebooks").glob("[0-9][0-9]_*.ipynb")))
    problems = [p for path in paths for p in check_notebook(path)]
    print("\n".join(problems) if problems else f"{len(paths)} notebook(s) meet the standard")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
