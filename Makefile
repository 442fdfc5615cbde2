# Two set-up commands on a fresh machine: `make run` and `make test` (see README).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
ARCH := $(shell uname -m)
# torch/torchvision releases that install from the local disk on the project machines (x86_64 builds are CUDA
# builds that also run on the CPU); elsewhere pip fetches them from PyPI.
ifeq ($(ARCH),aarch64)
TORCH_PINS := torch==2.9.1 torchvision==0.24.1
else
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
endif
# Preferred port of the test PostgreSQL; scripts/test-services.sh picks the next free one when it is taken and
# writes the database URL to var/test-pg-url, which `make test` uses unless LOOKALIKE_TEST_PG_URL is given.
PG_PORT ?= 54329

.PHONY: install dev run serve index test lint bench clean services

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_PINS)
	$(PIP) install -q -e '.[cpu]'
	touch $@

$(VENV)/.dev: $(VENV)/.installed
	$(PIP) install -q -e '.[cpu,dev]'
	touch $@

install: $(VENV)/.installed

dev: $(VENV)/.dev

# Create .venv, install, migrate, index the default catalog (catalog.default_csv, else ../shared's full catalog,
# else data/fashion-product-images from `manage.py fetch-data`, else the demo catalog in data/demo-catalog; `index`
# prints which, and how to get the full one), retrain the outfit model only if it no longer fits the served model
# (docs/outfits.md), serve on 127.0.0.1:5000.
run: install
	$(PY) manage.py db upgrade
	$(PY) manage.py index
	$(PY) manage.py train-outfits --if-stale
	$(PY) manage.py serve

serve: install
	$(PY) manage.py serve

index: install
	$(PY) manage.py index

services:
	bash scripts/test-services.sh $(PG_PORT)

# Install dev deps and the test services (PostgreSQL, Chromium), then run the whole suite.
test: dev services
	$(VENV)/bin/ruff check .
	LOOKALIKE_TEST_PG_URL="$${LOOKALIKE_TEST_PG_URL:-$$(cat var/test-pg-url 2>/dev/null)}" $(PY) -m pytest

lint: dev
	$(VENV)/bin/ruff check .

clean:
	rm -rf var test-artifacts .pytest_cache
