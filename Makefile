# ablab — set-up, demo, tests. Every target installs what it needs first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install dev demo test test-all lint bench bench-quick clean

# `install` (and `demo`): ablab and what it needs to run, nothing else (no Ray, MLflow,
# TensorBoard, pytest or ruff). `dev` (and test, lint): the dev extras on top.
DEV_STAMP := $(VENV)/.installed-dev

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

dev: $(DEV_STAMP)

$(DEV_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(DEV_STAMP)

demo: install
	$(BIN)/ablab run moons-circles-activations --out out/moons-circles-activations --until-decided --max-seeds 5

# The suite without the slow end-to-end tests (under 10 minutes on 2 cores); test-all runs
# every test, the slow ones (whole studies, kills, notebooks, Ray, tuning) included.
test: dev
	$(BIN)/python -m pytest -q -m "not slow"

test-all: dev
	$(BIN)/python -m pytest -q

lint: dev
	$(BIN)/ruff check .
	$(BIN)/lint-imports

clean:
	rm -rf out runs .pytest_cache

bench: install
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/study_speed.py --json benchmarks/results/study_speed.json
	$(BIN)/python benchmarks/scaling.py --json benchmarks/results/scaling.json

bench-quick: install
	$(BIN)/python benchmarks/throughput.py --quick
