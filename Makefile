# One entry point for people and CI. Everything runs inside .venv, built from pyproject.toml
# pinned by constraints.txt, so a cron host installs exactly what CI tested.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test test-stores check format lock clean bench

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "osvi-archiver needs Python >= 3.11; set PYTHON=python3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/osvi-archiver demo

test: $(STAMP)
	$(BIN)/pytest

# The bucket destination against Azure's emulator, Azurite (installed from npm into .stores/),
# besides the S3 server `make test` starts itself: slow tests, kept out of `make test`.
test-stores: $(STAMP)
	@command -v npm >/dev/null || { echo "make test-stores needs npm (Node.js) for Azurite" >&2; exit 2; }
	npm install --silent --no-audit --no-fund --prefix .stores azurite@3
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,stores-test]'
	PATH="$(CURDIR)/.stores/node_modules/.bin:$$PATH" $(BIN)/pytest -m slow tests/destinations/store

# The layers of archiver/ (pyproject.toml's [tool.importlinter]) and the import graph's circles and
# depth (scripts/import_graph.py) are checked here, beside format, lint and types.
check: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python scripts/import_graph.py --check
	$(BIN)/pytest

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Re-pin after changing dependencies in pyproject.toml (needs the package registry).
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --disable-pip-version-check '.[dev]'
	{ echo "# Exact versions CI tested. Regenerate with \`make lock\` after changing pyproject.toml."; \
	  .lock-venv/bin/python -m pip freeze --exclude osvi-archiver; } > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .stores

# The figures of SPEC §11 (several minutes; `.venv/bin/python -m bench --quick` for a try).
bench: $(STAMP)
	$(BIN)/python -m bench
