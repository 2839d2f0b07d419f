# latentsweep — `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
TORCH_VERSION ?=
# TORCH=cpu (or a CUDA tag such as cu126): torch from PyTorch's own wheel index for that build
TORCH  ?=
TORCH_INDEX := https://download.pytorch.org/whl/$(TORCH)
PORT   ?= 5000
# := (not ?=): an exported $HOST must not open the UI to the network; `make ui HOST=...` still does
HOST   := 127.0.0.1
# pytest-xdist workers for `make test` (each a file at a time; tests/conftest.py splits the cores)
TEST_WORKERS ?= 2

.DEFAULT_GOAL := help
.PHONY: help install test test-fast lint train sweep analyze ui dashboard ucr-data bench bench-quick bench-storage gpu-check gpu-baseline gpu-wheels clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

install: $(PY) ## .venv + the project and dev tools; TORCH=cpu: CPU torch from PyTorch's index; TORCH_VERSION=x pins torch
	@if [ -n "$(TORCH)" ]; then \
		$(PY) -m pip install -q "torch$(if $(TORCH_VERSION),==$(TORCH_VERSION))" --index-url $(TORCH_INDEX); \
	elif [ -n "$(TORCH_VERSION)" ]; then $(PY) -m pip install -q "torch==$(TORCH_VERSION)"; fi
	$(PY) -m pip install -q -e ".[dev]"

test: ## the whole test suite on TEST_WORKERS=2 processes (CPU; GPU tests skip without CUDA)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-fast: ## unit and in-process tests only, target < 3 min on 2 cores (skips the tests marked slow)
	$(PY) -m pytest -q -m "not slow"

lint: ## ruff
	$(BIN)/ruff check src tests benchmarks train.py analyze.py

train: ## train the default model once (add ARGS="model=rnn_ae trainer.max_epochs=5")
	$(PY) train.py $(ARGS)

sweep: ## Optuna sweep, trials in parallel sized to this machine (ARGS="model=conv_ae ..." or ARGS="'model=choice(rnn_ae,conv_ae)'")
	$(PY) train.py -m hydra/sweeper=optuna hydra/launcher=trials $(ARGS)

analyze: ## latent-space analysis of the best model (ARGS="run=<mlflow run id>")
	$(PY) analyze.py $(ARGS)

ui: ## MLflow UI on http://127.0.0.1:5000 over the local store (loopback only)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --default-artifact-root ./mlruns/artifacts --host $(HOST) --port $(PORT)

dashboard: ## optuna-dashboard on the sweeps' SQLite storage (pip install .[dashboard])
	$(BIN)/optuna-dashboard sqlite:///sweeps/optuna.db --host $(HOST) --port 8080

ucr-data: ## copy the UCR sets the benchmarks use out of aeon's wheel into data/ucr/
	$(PY) -m latentsweep.data.fetch_ucr ArrowHead PickupGestureWiimoteZ --dest data/ucr

bench-quick: ## benchmarks sized for 2 CPU cores (about 35 min: 2,079 s in the last run, docs/benchmarks.md); figures -> benchmarks/results/bench-quick/
	$(PY) -m benchmarks.run --quick

bench: ## full benchmarks (sized for a GPU box); figures -> benchmarks/results/bench/
	$(PY) -m benchmarks.run

bench-storage: ## ask-and-tell latency of 8 workers on SQLite, journal file, gRPC proxy, PostgreSQL (4.4 min here) -> benchmarks/results/cluster/
	$(PY) -m benchmarks.bench_storage

gpu-check: ## CUDA tests + trials-per-GPU table (needs a CUDA GPU, < 5 min; fails without one)
	$(PY) -m benchmarks.gpu_check --require-cuda && $(PY) -m pytest -q -m gpu tests && $(PY) -m benchmarks.gpu_check

gpu-baseline: ## the CPU side of gpu-check's "vs CPU" ratios: its 16-trial sweep on this CPU -> benchmarks/results/gpu-baseline/
	$(PY) -m benchmarks.gpu_check --cpu-baseline

gpu-wheels: ## wheels for an offline GPU box (.whl/; then `bash benchmarks/gpu_box.sh` there)
	$(PY) -m benchmarks.wheelhouse $(ARGS)

clean: ## remove outputs/ and multirun/ (keeps mlruns/ and sweeps/)
	rm -rf outputs multirun
