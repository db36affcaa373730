# The README's commands. Each installs what it needs into the active Python environment.
PY ?= python3
PIP ?= $(PY) -m pip

.PHONY: install katex bench bench-full test lab execute
install:
	$(PIP) install -q -e ".[dev]"

BENCH_ARGS ?=
bench: install   ## the main job: every offline task, one category and seed, the baselines and the U-Net (minutes)
	$(PY) -m course_lib.programs.bench $(BENCH_ARGS)

bench-full: install  ## the complete grid behind results/ (cpu profile: hours, resumable from the user cache)
	COURSE_PROFILE=$${COURSE_PROFILE:-cpu} $(PY) -m course_lib.programs.bench --full

# KaTeX renders the notebooks' math in tests/test_notebook_standard.py (git-ignored, installed once).
KATEX_VERSION = 0.19.1
KATEX_DIR = .cache/node
katex:           ## install KaTeX for the notebook math check, unless this version is already there
	@if grep -qs '"version": "$(KATEX_VERSION)"' $(KATEX_DIR)/node_modules/katex/package.json; then :; \
	elif command -v npm >/dev/null; then npm install --no-audit --no-fund --prefix $(KATEX_DIR) katex@$(KATEX_VERSION); \
	else echo "npm not found: the notebook math check will be skipped"; fi

# COURSE_SOLUTIONS=1: an exercise stub the learner has not filled in runs its reference solution.
test: install katex  ## unit tests + every notebook under nbval (set COURSE_PROFILE=smoke for speed)
	COURSE_PROFILE=$${COURSE_PROFILE:-smoke} COURSE_SOLUTIONS=1 $(PY) -m pytest

lab: install     ## open the course in JupyterLab (as root, in a container, too)
	$(PY) -m jupyter lab notebooks/ $$(test "$$(id -u)" = 0 && echo --allow-root)

execute: install ## re-run every notebook in the cpu profile and keep the outputs (for committing; a cell may train models for over an hour on 2 cores)
	COURSE_PROFILE=$${COURSE_PROFILE:-cpu} COURSE_SOLUTIONS=1 $(PY) -m jupyter nbconvert --to notebook --execute --inplace \
	  --ExecutePreprocessor.timeout=10800 --ExecutePreprocessor.kernel_name=python3 notebooks/[0-9]*.ipynb
