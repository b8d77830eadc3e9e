# swarmlite developer tasks. Every target is safe to run again.
#   make install       venv + host tools + the fast images (busybox, demo-web)
#   make test          unit, integration and multi-host tests (installs first)
#   make help          all targets

SHELL := /bin/bash
.DEFAULT_GOAL := help

# Debian's optimized python3 when it is new enough (scripts/pick-python.sh says why).
PYTHON ?= $(shell scripts/pick-python.sh)
VENV := .venv
STAMP := $(VENV)/.stamp
BIN := $(VENV)/bin
DEMO_DIR := .cache/demo
# Per-test limit, used only when pytest-timeout is installed (it is not a dependency).
PYTEST_TIMEOUT ?= 300
PYTEST_ARGS ?=

.PHONY: help install deps venv images-base images-node images demo test test-fast test-cluster \
        lint bench clean distclean

help:
	@echo "make install       create $(VENV), install host tools (scripts/install-deps.sh), build busybox + demo-web images"
	@echo "make images        build all images: busybox demo-web nginx python node (debootstrap ones ~1 min each the first time)"
	@echo "make demo          start a one-node cluster in $(DEMO_DIR) and deploy compose-examples/demo"
	@echo "make test          unit, integration (one real node) and multi-host (node containers) tests"
	@echo "make test-fast     unit tests only"
	@echo "make test-cluster  multi-node tests (tests/cluster)"
	@echo "make lint          ruff check, ruff format --check, mypy"
	@echo "make bench         benchmarks (bench/run.py)"
	@echo "make clean         stop the demo cluster, remove stamps and caches (keeps $(VENV) and .cache/rootfs)"
	@echo "make distclean     clean, then remove $(VENV) and all of .cache"

install: deps venv images-base images-node

deps:
	@PYTHON=$(PYTHON) scripts/install-deps.sh

venv: $(STAMP)

# Reinstall only when pyproject.toml changes (or the venv is new).
$(STAMP): pyproject.toml | deps
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

images-base: | deps
	@scripts/build-images.sh busybox demo-web

images-node: | deps
	@scripts/build-images.sh node

images: | deps
	@scripts/build-images.sh all

demo: install
	@scripts/demo.sh

# pytest exits 5 when it collects no tests; an empty tier is not a failure.
define run_pytest
	@timeout_arg=""; \
	if $(BIN)/python -c 'import pytest_timeout' 2>/dev/null; then timeout_arg="--timeout=$(PYTEST_TIMEOUT)"; fi; \
	echo "+ $(BIN)/pytest -q -rfEsR $$timeout_arg $(1) $(PYTEST_ARGS)"; \
	rc=0; $(BIN)/pytest -q -rfEsR $$timeout_arg $(1) $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 0 ]; then echo "== $(2): passed"; \
	elif [ $$rc -eq 5 ]; then echo "== $(2): no tests collected in $(1)"; \
	else echo "== $(2): FAILED (pytest exit $$rc)"; exit $$rc; fi
endef

# Unit tests run once. Tests that drive real daemons, etcd and Docker on this 2-core
# host get one rerun for a failure (pytest-rerunfailures); a real bug fails twice.
REAL_ARGS ?= --reruns 1 --reruns-delay 2

test: install
	$(call run_pytest,tests/unit,make test (unit))
	$(call run_pytest,tests/integration tests/cluster $(REAL_ARGS),make test (integration and multi-host))

test-fast: venv
	$(call run_pytest,tests/unit,make test-fast)

test-cluster: install
	$(call run_pytest,tests/cluster $(REAL_ARGS),make test-cluster)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy swarmlite

bench: install images
	$(BIN)/python bench/run.py

clean:
	-@if [ -x $(BIN)/swarmlite ] && [ -d $(DEMO_DIR) ]; then \
		$(BIN)/swarmlite leave --force --data-dir $(DEMO_DIR) >/dev/null 2>&1 || true; fi
	rm -f $(STAMP)
	rm -rf $(DEMO_DIR) .cache/build .pytest_cache .mypy_cache .ruff_cache build
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
	@if [ -d .cache ]; then if [ "$$(id -u)" -eq 0 ]; then rm -rf .cache; else sudo rm -rf .cache; fi; fi
