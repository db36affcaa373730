# The README's commands. Each installs what it needs into the active Python environment.
PY ?= python3
PIP ?= $(PY) -m pip

.PHONY: install bench test lab execute
install:
	$(PIP) install -q -e ".[dev]"

BENCH_ARGS ?=
bench: install   ## the main job: every detector on every offline task, AUROC table in results/
	$(PY) -m course_lib.bench $(BENCH_ARGS)

test: install    ## unit tests + every notebook under nbval (set COURSE_PROFILE=smoke for speed)
	COURSE_PROFILE=$${COURSE_PROFILE:-smoke} $(PY) -m pytest

lab: install     ## open the course in JupyterLab
	$(PY) -m jupyter lab notebooks/

execute: install ## re-run every notebook in the cpu profile and keep the outputs (for committing)
	COURSE_PROFILE=$${COURSE_PROFILE:-cpu} $(PY) -m jupyter nbconvert --to notebook --execute --inplace \
	  --ExecutePreprocessor.timeout=3600 --ExecutePreprocessor.kernel_name=python3 notebooks/[0-9]*.ipynb
