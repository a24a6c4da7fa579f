# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
COVERAGE_FLOOR ?= 95

.PHONY: demo test lint typecheck unit unit-xdist example bench redis-server clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e . --group dev
	touch $(STAMP)

# Debian's redis-server, installed when missing (root on CI; sudo elsewhere).
redis-server:
	@command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || { \
	  echo "installing redis-server (Debian package)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null; }
	@# The Debian package starts a system service; our tests start their own servers.
	@redis-server --version

demo: $(STAMP)
	$(BIN)/remote-cache check

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# coverage runs pytest (rather than pytest-cov starting inside it) because the pytest11
# entry point imports remote_cache before any pytest plugin could start measuring.
unit: $(STAMP) redis-server
	$(BIN)/python -m coverage erase
	$(BIN)/python -m coverage run -m pytest -p no:cacheprovider $(PYTEST_ARGS)
	$(BIN)/python -m coverage report --fail-under=$(COVERAGE_FLOOR)

# The same suite again across two xdist workers: fixtures must hold per worker.
unit-xdist: $(STAMP) redis-server
	$(BIN)/python -m pytest -p no:cacheprovider -n 2 -q $(PYTEST_ARGS)

# The sample downstream project, with the fixtures loaded from the installed package.
example: $(STAMP) redis-server
	cd docs/examples/tinycompiler && ../../../$(BIN)/python -m pytest -p no:cacheprovider -q

test: lint typecheck example unit-xdist unit

bench: $(STAMP) redis-server
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov
