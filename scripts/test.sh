#!/usr/bin/env bash
# Every check and test, as `make test` and CI (.ci/run) run them:
#   1. ruff, mypy --strict, trial-file validation;
#   2. pytest: engine, API, security, browser tests (headless Chromium from Debian's package), the store,
#      replay-cache and feedback tests also on PostgreSQL (scripts/postgres: Debian's package, a throwaway
#      cluster on 127.0.0.1, started here once and stopped on exit), and the Synthea population
#      (scripts/synthea-population, generated once and cached outside the clone), on the editable pure-Python install, then again on the production wheel (scripts/build-wheel, mypyc);
#   3. the integration suite against real FHIR servers, started here and stopped on exit:
#      - FHIR_BASE_URL set: that server only (any FHIR R4 server; FHIR_BEARER_TOKEN if it needs one);
#      - CI (CI=true) or TEST_HAPI=1: HAPI FHIR JPA (sandbox/hapi, built with Maven), then SEKMET;
#      - otherwise: HAPI if it already runs (scripts/fhir-servers start-hapi), else SEKMET (fast).
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
status=0
step() { printf '\n== %s\n' "$*"; }
fail() { echo "FAILED: $*"; status=1; }

step "ruff"
$BIN/ruff check cds hooks fhir_mappings tests fixtures benchmarks || fail ruff
step "mypy --strict"
$BIN/mypy cds hooks fhir_mappings || fail mypy
step "trial files"
$BIN/trial-cds trials validate fhir_mappings/trials/*.yaml || fail "trial files"

step "browser for the browser tests"
if [[ ! -x /usr/bin/chromium ]]; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "could not install chromium: the browser tests will say so and be skipped"
  else
    echo "no /usr/bin/chromium and not root: install Debian's chromium package to run the browser tests"
  fi
fi
[[ -x /usr/bin/chromium ]] && /usr/bin/chromium --version

# Synthea's patients (tests/population): generated on first use (about 5 minutes), then reused from
# the cache outside the clone; the tests find them through TRIAL_CDS_SYNTHEA_POPULATION. Without it they
# skip, except in CI, where they fail.
step "Synthea population (scripts/synthea-population)"
if population="$(scripts/synthea-population)"; then
  export TRIAL_CDS_SYNTHEA_POPULATION="$population"
  echo "$population"
else
  fail "the Synthea population could not be generated; see var/logs/synthea.log"
fi

# PostgreSQL for the store, replay-cache and feedback tests (tests/database_support.py): without it they
# skip, except in CI, where they fail.
step "PostgreSQL (scripts/postgres)"
stop_services() {
  scripts/fhir-servers stop all >/dev/null 2>&1
  scripts/postgres stop >/dev/null 2>&1
}
trap stop_services EXIT
if postgres_url="$(scripts/postgres start)"; then
  export TRIAL_CDS_TEST_POSTGRES_URL="$postgres_url"
  echo "$postgres_url"
else
  fail "PostgreSQL could not be started; see var/logs/postgres.log"
fi

step "pytest (unit, API, security, browser, PostgreSQL, Synthea population)"
TRIAL_CDS_EXPECT_BUILD=pure-python $BIN/pytest -q -p no:cacheprovider -m "not integration" || fail pytest

# The production build runs the same source compiled with mypyc (setup.py): the same tests again, with the
# wheel's modules first on the path (TRIAL_CDS_EXPECT_BUILD makes tests/packaging/test_build.py check they are used).
step "pytest against the production wheel (hot path compiled with mypyc)"
if wheel="$(scripts/build-wheel)"; then
  site="build/site-$(basename "$(dirname "$wheel")")"
  if [[ ! -d "$site" ]]; then
    rm -rf build/site-*
    $BIN/python -m zipfile -e "$wheel" "$site"
  fi
  TRIAL_CDS_EXPECT_BUILD=compiled PYTHONPATH="$PWD/$site" $BIN/pytest -q -p no:cacheprovider -m "not integration" \
    || fail "pytest (compiled build)"
else
  fail "the compiled build (scripts/build-wheel)"
fi

integration() {  # $1: label, $2: base URL
  step "integration suite against $1 ($2)"
  FHIR_BASE_URL="$2" $BIN/pytest -q -p no:cacheprovider -m integration tests/integration || fail "integration ($1)"
}

if [[ -n "${FHIR_BASE_URL:-}" ]]; then
  integration "FHIR_BASE_URL" "$FHIR_BASE_URL"
else
  if [[ "${CI:-}" == "true" || "${TEST_HAPI:-}" == "1" ]]; then
    step "HAPI FHIR JPA server (sandbox/hapi)"
    if hapi_url="$(scripts/fhir-servers start-hapi)"; then
      integration "HAPI FHIR" "$hapi_url"
      scripts/fhir-servers stop hapi
    else
      fail "HAPI FHIR could not be built or started; see var/logs/hapi-build.log and var/logs/hapi.log"
      tail -n 40 var/logs/hapi-build.log var/logs/hapi.log 2>/dev/null
    fi
    if sekmet_url="$(scripts/fhir-servers start-sekmet)"; then
      integration "SEKMET" "$sekmet_url"
    else
      fail "SEKMET could not be started; see var/logs/sekmet.log"
    fi
  else
    if base_url="$(scripts/fhir-servers ensure)"; then
      integration "local FHIR server" "$base_url"
    else
      fail "no FHIR server could be started (scripts/fhir-servers ensure)"
    fi
  fi
fi

echo
if [[ $status -eq 0 ]]; then echo "ALL CHECKS PASSED"; else echo "SOME CHECKS FAILED"; fi
exit $status
