# The two commands of the README:
#   make demo  — install and run the service in demo mode on the bundled demo patients (PORT=8090 for another port)
#   make test  — install what the tests need, start the FHIR servers they use, run every check and test
# .ci/run runs `make test`.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8080

.PHONY: demo test bench bench-compare bench-prescreen wheel install install-test lint typecheck unit clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: install
	@scripts/port-free "$(PORT)" "make demo PORT={port}"
	$(BIN)/trial-cds serve --demo --port "$(PORT)"

lint: install-test
	$(BIN)/ruff check cds hooks fhir_mappings tests fixtures benchmarks
	$(BIN)/trial-cds trials validate fhir_mappings/trials/*.yaml

typecheck: install-test
	$(BIN)/mypy cds hooks fhir_mappings

test: install-test
	bash scripts/test.sh

# Benchmarks (docs/performance.md): not part of `make test` or CI. They run the production build: the
# compiled wheel (scripts/build-wheel) installed in its own virtualenv (benchmarks/setup-service).
bench:
	benchmarks/setup-service
	PYTHONPATH=fixtures benchmarks/.venv-service/bin/python benchmarks/run.py $(ARGS)

# `trial-cds prescreen` on cloned Synthea patients (benchmarks/prescreen.py; docs/performance.md): patients/s
# per worker at 1 and 2 workers, peak memory of the process tree, the orjson parse floor. Needs the cached
# Synthea population (scripts/synthea-population) and about 3.5 GB of disk per 1,000 patients. ARGS="--spark 1 2"
# adds Spark local[1] and local[2] (the wheel's spark extra, installed here beside the service's build).
bench-prescreen:
	benchmarks/setup-service
	case "$(ARGS)" in *--spark*) benchmarks/.venv-service/bin/pip install --quiet "$$(scripts/build-wheel)[spark]" ;; esac
	PYTHONPATH=fixtures benchmarks/.venv-service/bin/python benchmarks/prescreen.py $(ARGS)

# The production build of BASE (a git revision) against this tree's, interleaved rounds in one run
# (benchmarks/compare.py): `make bench-compare BASE=main~3`.
bench-compare:
	benchmarks/compare-builds $(BASE) $(ARGS)

# The production wheel (hot path compiled with mypyc; README.md "installing for production", docs/performance.md "Builds"), printed path under build/wheels.
wheel:
	scripts/build-wheel

clean:
	rm -rf $(VENV) var build .mypy_cache .pytest_cache .ruff_cache
