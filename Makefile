# Two entry points for a fresh Debian/Ubuntu machine (run as root or with sudo):
#   make demo   install what is missing, create the embedded-default profile, run the main job
#   make test   install what is missing, start PostgreSQL + RabbitMQ where absent, run ruff and the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# verdi (started by the daemon fixtures) and the console scripts must be on PATH
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
PYTEST_ARGS ?=

.PHONY: demo test lint docs bench system-packages services install clean

demo: install
	$(BIN)/aiida-polyhydride demo

test: install services
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# the API reference and every page, warnings as errors (as the test suite builds them)
docs: install
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

bench: install
	$(BIN)/aiida-polyhydride setup
	$(BIN)/python benchmarks/run.py

install: system-packages $(STAMP)

system-packages:
	@bash .ci/system-packages.sh

services:
	@bash .ci/services.sh
	@bash .ci/slurm.sh

# torch first and pinned: an unpinned torch resolves to a multi-GB CUDA build.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[tests]'
	$(BIN)/python -m pip check
	@touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
