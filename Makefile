# Every target sets up what it needs: a fresh clone runs `make reproduce` or `make test` and nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= $(shell nproc)
STUDY_CONFIG ?= config/config.yaml

PY_SOURCES := pipeline_src tests bench
SNAKE_SOURCES := Snakefile $(wildcard workflow/rules/*.smk)

.PHONY: venv test reproduce lint format bench gpu-check estimate test-slurm slurm-up slurm-down clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: venv
	$(BIN)/python -m pytest -q -m "not slurm"

# lint checks, format applies: ruff for Python, snakefmt for the Snakefile and rules (line length: pyproject).
lint: venv
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)
	$(BIN)/snakefmt --check $(SNAKE_SOURCES)
	$(BIN)/snakemake --lint --configfile $(STUDY_CONFIG)

format: venv
	$(BIN)/ruff format $(PY_SOURCES)
	$(BIN)/snakefmt $(SNAKE_SOURCES)

reproduce: venv
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake --cores $(CORES) --configfile $(STUDY_CONFIG)

bench: venv
	$(BIN)/python bench/bench_step.py

# On a GPU node (<= 5 min, no dataset): WRN-28-10 throughput fp32 vs bf16, SAM/SGD, host syncs, the tiny study on
# CUDA. Figures printed and written to results/gpu_check.json; README "GPUs" says what to expect.
gpu-check: venv
	$(BIN)/python bench/gpu_check.py --json results/gpu_check.json

# The compute bill of a study (FLOPs, GPU-hours, jobs over their runtime) before submitting it; no data needed.
ESTIMATE_CONFIG ?= config/paper.yaml
estimate: venv
	$(BIN)/python -m samrepro estimate --config $(ESTIMATE_CONFIG)

# A single-node SLURM cluster on this machine (root; installs slurm-wlm and munge on first use).
slurm-up:
	scripts/slurm/cluster.sh up

slurm-down:
	scripts/slurm/cluster.sh down

# The workflow through the real SLURM executor: tiny study + preemption/resume (tests/slurm, a few minutes).
test-slurm: venv slurm-up
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q -m slurm tests/slurm

clean:
	rm -rf results reports/*/ .snakemake
