# The README's two commands: `make demo` and `make test`. Each installs uv when missing and
# syncs the locked environment first, so a fresh clone needs nothing else.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
RUN := $(UV) run --locked --no-sync

.PHONY: uv sync demo test lint bench server-start server-deploy server-worker server-stop submit \
	weights

# `make submit`: a run of DEPLOYMENT with each KEY=VALUE of SET changed (no spaces inside one:
# SET="alpha=3 reid.kinds=[ide]"), on the server of `make server-start` (PORT, default 4200).
DEPLOYMENT ?= default
SET ?=

uv:
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv \
		|| python3 -m pip install --quiet --user --break-system-packages uv

sync: uv
	@$(UV) sync --locked --quiet

demo: sync
	$(RUN) augment-market run --config demo.yaml

server-start server-deploy server-worker server-stop: sync
	PREFECT="$(RUN) prefect" scripts/server.sh $(@:server-%=%)

submit: sync
	$(RUN) augment-market submit $(DEPLOYMENT) $(foreach s,$(SET),--set '$(s)')

# Every pretrained weight file (internet needed) into DEST, default the weights folder
# ($$AUGMENT_MARKET_WEIGHTS or ~/.cache/augment-market/weights); `DEST=weights` for docker/.
weights: sync
	$(RUN) python scripts/download_weights.py $(if $(DEST),--dest $(DEST))

test: sync
	$(RUN) pytest -q

lint: sync
	$(RUN) ruff check .
	$(RUN) mypy foundation storage pipeline flows augment_market

bench: sync
	$(RUN) python -m benchmarks.store_io
	$(RUN) python -m benchmarks.segmentation
	$(RUN) python -m benchmarks.san_training
	$(RUN) python -m benchmarks.san_learning
	$(RUN) python -m benchmarks.evaluation
	$(RUN) python -m benchmarks.fanout
	$(RUN) python -m benchmarks.reid
	$(RUN) python -m benchmarks.demo
