# Two set-up commands on a fresh machine (see README and docs/quickstart.md): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU torch by default; on a GPU machine install your CUDA torch into $(VENV) first,
# or run `make TORCH_SPEC=torch venv` with pip pointed at the matching CUDA index.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=
# Test lanes by marker (see [tool.pytest.ini_options]; tests/conftest.py marks `services`).
UNIT_TESTS := not services and not browser and not slow and not gpu
ALL_TESTS := not gpu and not bench

.PHONY: venv demo test test-unit test-bench lint format system-deps bench docs docs-build clean

$(BIN)/rankloop: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e '.[dev,gpu]'
	touch $(BIN)/rankloop

venv: $(BIN)/rankloop

demo: venv
	$(BIN)/rankloop up --simulate 4 --exit-when-done

system-deps:
	bash infra/install-system-deps.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The full lane: lint, then every test but the GPU ones and the load benchmark (the docs site is
# built strictly there too: tests/test_docs.py). Needs PostgreSQL and Redis (see
# docs/explanation/tests.md); starts SeaweedFS, Celery workers and Chromium itself.
test: venv system-deps lint
	$(BIN)/pytest -m "$(ALL_TESTS)" $(PYTEST_ARGS)

# The fast lane: no PostgreSQL, Redis, SeaweedFS, worker process or browser.
test-unit: venv
	$(BIN)/pytest -m "$(UNIT_TESTS)" $(PYTEST_ARGS)

# The load benchmark (`rankloop bench api --quick` under wrk): PostgreSQL, Redis and wrk.
test-bench: venv system-deps
	$(BIN)/pytest -m bench $(PYTEST_ARGS)

bench: venv
	$(BIN)/rankloop bench optimizer --out bench-results/optimizer.json
	$(BIN)/rankloop bench consensus --out bench-results/consensus.json
	$(BIN)/rankloop bench render --out bench-results/render.json

# The documentation site on http://127.0.0.1:8001 (reloads on edits); docs-build writes site/,
# which works offline (open site/index.html).
docs: venv
	$(BIN)/mkdocs serve --dev-addr 127.0.0.1:8001

docs-build: venv
	$(BIN)/mkdocs build --strict

clean:
	rm -rf site $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis test-output
