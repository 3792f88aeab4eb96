# The README's two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8765
# A local wheel of CPU PyTorch, if the machine has one; the torch tests are skipped without it.
TORCH_WHEELS ?= /opt/wheels
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help install frontend wheel demo examples test chromium services bench bench-peers bench-scale bench-s3 bench-pg lint docs clean

help:
	@echo "make demo   install into .venv, build the dashboard, run the examples, serve on http://127.0.0.1:$(PORT)"
	@echo "make test   install what the tests need and run the whole suite"
	@echo "make bench  run the benchmark suite: against the peers, then speed at scale (see benchmarks/)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml hatch_build.py src/labtrack/_hot.c
	$(BIN)/pip install --quiet -e '.[test]'
	@# The wheel file itself (its dependencies come from PyPI); never a download of torch.
	-@wheel=$$(ls $(TORCH_WHEELS)/torch-*.whl 2>/dev/null | head -1); \
	  if [ -n "$$wheel" ] && $(BIN)/pip install --quiet "$$wheel"; then echo "torch: installed $$wheel"; \
	  else echo "torch: no usable local wheel in $(TORCH_WHEELS); torch tests will be skipped"; fi
	@# The bridges only on top of that torch: without it pip would fetch a CUDA torch for lightning.
	@if $(BIN)/python -c "import torch" 2>/dev/null; then \
	  $(BIN)/pip install --quiet -e '.[bridges]' && echo "bridges: installed lightning, transformers, accelerate, keras"; \
	  else echo "bridges: no torch, so lightning, transformers and keras are not installed; their tests will be skipped"; fi
	touch $@

install: $(VENV)/.installed

# npm 11 can refuse its own lock file in `npm ci` when a dependency has optional
# per-platform packages (rollup's; npm/cli#8726): then install from the lock without saving.
frontend/node_modules/.package-lock.json: frontend/package-lock.json frontend/package.json
	cd frontend && ( npm ci --no-audit --no-fund 2>/dev/null \
	  || { echo "npm ci refused the lock file; installing the locked versions with npm install"; \
	       npm install --no-audit --no-fund --no-save; } )

frontend: frontend/node_modules/.package-lock.json
	cd frontend && npm run build

# A wheel with the dashboard and the C module (hatch_build.py builds what is missing).
wheel: $(BIN)/python
	$(BIN)/pip wheel --no-deps -w dist .

examples: install
	$(BIN)/python examples/run_all.py --root labtrack

demo: install frontend examples
	@echo "Runs are in ./labtrack; try: $(BIN)/labtrack ls"
	$(BIN)/labtrack ui labtrack --host 127.0.0.1 --port $(PORT)

chromium:
	@command -v chromium >/dev/null 2>&1 || ( $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium )

# PostgreSQL and nginx from Debian for the scale-out tests (they start their own throwaway
# cluster and load balancer on free loopback ports; the packages' own services stay off).
services:
	@{ ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v nginx >/dev/null 2>&1; } || \
	  ( $(SUDO) apt-get update && $(SUDO) apt-get install -y postgresql nginx )

test: install frontend chromium services
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: bench-peers bench-scale bench-s3 bench-pg

bench-peers: install
	$(BIN)/python benchmarks/run.py

# Issue 17's rows: cold starts over 10,000 runs, 10M- and 100M-point series (~5 GB of CSV under
# benchmarks/.work/scale/, kept for the next run), `labtrack ls`.
bench-scale: install
	$(BIN)/python benchmarks/scale.py --huge

# Issue 18's bytes uploaded per byte logged, against moto's S3 server on loopback.
bench-s3: install
	$(BIN)/python benchmarks/s3_upload.py

# Issue 18's 100,000 runs listed, filtered and sorted from PostgreSQL against SQLite (a
# throwaway cluster on loopback: `make services` installs PostgreSQL).
bench-pg: install services
	$(BIN)/python benchmarks/pg_index.py

lint: install
	$(BIN)/python -m mypy

# The generated docs: run after changing a setting or a command's --help (tests compare them).
docs: install
	$(BIN)/python -m labtrack._cli.docs > docs/cli.md
	$(BIN)/python -m labtrack._settings > docs/settings.md

clean:
	rm -rf $(VENV) frontend/node_modules src/labtrack/_server/static .pytest_cache .mypy_cache
