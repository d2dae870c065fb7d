# jaxopt_lab developer commands. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= runs/report
# master seed of the studies: every tuning seed, final seed and random draw derives from it
SEED ?= 0
# pytest-xdist workers of `make test` (one per core of the 2-core CI machine)
TEST_WORKERS ?= 2

# Offline MNIST: TFDS reads the four original .gz files from this manual directory.
export MNIST_DIR ?= $(abspath ../shared/data/mnist)
# One folder of original files per dataset (mnist, fashion_mnist); each prepares from its own.
export JAXOPT_LAB_DATA ?= $(abspath ../shared/data)
# Where TFDS keeps prepared datasets (kept out of git, reused between runs).
export TFDS_DATA_DIR ?= $(CURDIR)/.tfds

.PHONY: help install test test-quick lint train bench bench-optim bench-keras bench-lbfgs bench-sweep experiments experiments-quick experiments-medium experiments-hypergradient clean

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $@

install: ## create .venv and install jaxopt_lab editable with the dev and bench extras
	rm -f $(BIN)/.installed
	$(MAKE) $(BIN)/.installed

test: $(BIN)/.installed ## run the whole test suite (real MNIST included), on $(TEST_WORKERS) workers
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup

test-quick: $(BIN)/.installed ## run the tests not marked slow
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup -m "not slow"

lint: $(BIN)/.installed ## ruff check and the import-layer contracts (lint-imports)
	$(BIN)/ruff check jaxopt_lab tests experiments benchmarks
	$(BIN)/lint-imports

train: $(BIN)/.installed ## the seed job: 784-128-10 MLP, Adam, 5 epochs, batch 32
	$(BIN)/jaxopt-lab train --optimizer adam --learning-rate 1e-3 --epochs 5 --batch-size 32 --seed 0 --out runs/seed --overwrite

bench: $(BIN)/.installed ## optimizer steps 1e5..1e8 params vs optax + MNIST throughput -> runs/bench/
	$(BIN)/jaxopt-lab bench --out runs/bench/bench.json

bench-optim: $(BIN)/.installed ## the 10M-parameter update+apply table, ours/optax per optimizer
	$(BIN)/jaxopt-lab bench --sizes 1e7 --repeats 20 --skip-training --out runs/bench/optim.json

bench-keras: $(BIN)/.installed ## the seed job in Keras vs jaxopt-lab train, and time to 97/98%
	$(BIN)/python benchmarks/keras_baseline.py --out runs/bench/keras.json

bench-lbfgs: $(BIN)/.installed ## L-BFGS vs scipy, optax, optimistix, jaxopt on CUTEst (sif2jax); L-BFGS-B vs scipy and jaxopt on bounded CUTEst
	$(BIN)/python benchmarks/bench_lbfgs.py --out runs/bench/lbfgs.json
	$(BIN)/python benchmarks/bench_lbfgsb.py --out runs/bench/lbfgsb.json

bench-sweep: $(BIN)/.installed ## 8 learning rates x 3 seeds of the MNIST MLP: one vmapped program vs one run after another
	$(BIN)/python benchmarks/bench_sweep.py --out runs/bench/sweep.json

experiments: $(BIN)/.installed ## the six optimizer studies, full budget -> $(OUT)/REPORT.md + figures (hours on a CPU)
	$(BIN)/python -m experiments --budget full --seed $(SEED) --out $(OUT)

experiments-medium: $(BIN)/.installed ## the committed report: 10k training images, 10 final seeds (about 41 min on 2 CPU cores) -> $(OUT)
	$(BIN)/python -m experiments --budget medium --seed $(SEED) --out $(OUT)

experiments-quick: $(BIN)/.installed ## every code path at small budgets (CI runs the same report in tests; 5.5 CPU-minutes, 12 min on the shared machine) -> $(OUT)
	$(BIN)/python -m experiments --budget quick --seed $(SEED) --out $(OUT)

experiments-hypergradient: $(BIN)/.installed ## L2 penalty of MNIST logistic regression by hypergradients vs grid search; NNLS with bounds -> runs/hypergradient
	$(BIN)/python -m experiments.hypergradient --budget quick --out runs/hypergradient

clean:
	rm -rf runs .pytest_cache .ruff_cache
