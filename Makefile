# ablab — set-up, demo, tests. Every target installs what it needs first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install dev demo test test-slow test-all test-portability lint bench bench-quick clean

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

# The suite without the slow end-to-end tests (under 10 minutes on 2 cores); test-slow
# runs only those (whole studies, kills, notebooks, Ray, tuning; CI runs it after test);
# test-all runs every test. Pytest's exit 5 (no test collected, e.g. every slow test
# deselected by -k) is not a failure.
TEST_FAST := $(BIN)/python -m pytest -q -m "not slow"

test: dev
	$(TEST_FAST)

test-slow: dev
	$(BIN)/python -m pytest -q -m slow || test $$? -eq 5

test-all: dev
	$(BIN)/python -m pytest -q

# `make test` under other summation orders on this one machine (#34; not run by CI): one
# and two threads, and the CPU dispatch forced below this CPU's best -- torch's own
# kernels without SIMD (ATEN_CPU_CAPABILITY=default), oneDNN's conv kernels at SSE4.1
# (ONEDNN_MAX_CPU_ISA), MKL's GEMM on its reproducible path (MKL_CBWR=COMPATIBLE; MKL
# ignores MKL_ENABLE_INSTRUCTIONS on AMD CPUs). Each must pass as `make test` does.
PORTABILITY := "OMP_NUM_THREADS=1" "OMP_NUM_THREADS=2" \
	"ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_CBWR=COMPATIBLE"

test-portability: dev
	@for vars in $(PORTABILITY); do \
		echo "== make test with $$vars"; \
		env $$vars $(TEST_FAST) || exit 1; \
	done

lint: dev
	$(BIN)/ruff check .
	$(BIN)/lint-imports

clean:
	rm -rf out runs .pytest_cache

# `bench`: the measurements, then the #31 figures side by side (benchmarks/summary.py
# reads the JSON files this same run wrote): the whole study against its floor and the
# plain script, the command-line latencies, and how the report and a run's cost grow.
# Quick runs of the plumbing: make bench BENCH_STUDY="--seeds 1" BENCH_CLI="--repeat 1"
# BENCH_SCALING="--sizes 30 60" (figures not comparable with the full ones).
BENCH_RESULTS := benchmarks/results
BENCH_STUDY :=
BENCH_CLI :=
BENCH_SCALING :=

bench: install
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/study_speed.py --json $(BENCH_RESULTS)/study_speed.json $(BENCH_STUDY)
	$(BIN)/python benchmarks/cli_latency.py --json $(BENCH_RESULTS)/cli_latency.json $(BENCH_CLI)
	$(BIN)/python benchmarks/scaling.py --json $(BENCH_RESULTS)/scaling.json $(BENCH_SCALING)
	@echo; echo "== make bench: side by side"
	@$(BIN)/python benchmarks/summary.py $(BENCH_RESULTS)

bench-quick: install
	$(BIN)/python benchmarks/throughput.py --quick
