# ablab — set-up, demo, tests. Every target installs what it needs first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-all lint bench bench-quick clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/ablab run moons-circles-activations --out out/moons-circles-activations --until-decided

# The suite without the slow end-to-end tests (under 10 minutes on 2 cores); test-all runs
# every test, the slow ones (whole studies, kills, notebooks, Ray, tuning) included.
test: install
	$(BIN)/python -m pytest -q -m "not slow"

test-all: install
	$(BIN)/python -m pytest -q

lint: install
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
