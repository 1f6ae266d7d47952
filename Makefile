# The README's two commands: `make demo` and `make test`. Each installs uv when missing and
# syncs the locked environment first, so a fresh clone needs nothing else.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
RUN := $(UV) run --locked --no-sync
DEMO_DIR ?= demo_output

.PHONY: uv sync demo test lint bench

uv:
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv \
		|| python3 -m pip install --quiet --user --break-system-packages uv

sync: uv
	@$(UV) sync --locked --quiet

demo: sync
	$(RUN) augment-market synth $(DEMO_DIR)/synthetic --ids 24 --images-per-id 8 --seed 0
	$(RUN) augment-market ingest market1501 $(DEMO_DIR)/synthetic --store $(DEMO_DIR)/store \
		--annotations $(DEMO_DIR)/synthetic/annotations --overwrite
	$(RUN) augment-market info $(DEMO_DIR)/store

test: sync
	$(RUN) pytest -q

lint: sync
	$(RUN) ruff check .
	$(RUN) mypy storage pipeline flows augment_market

bench: sync
	$(RUN) python -m benchmarks.store_io
