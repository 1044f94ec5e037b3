#!/usr/bin/env bash
# Mutation testing with mutmut: does a small change to the code make a test fail?
#
# Usage: scripts/mutation.sh [core|adapters|all|MODULE...]        (default: core)
#   core      the plain logic: processing, submission, aggregation, retry; killed by tests/unit
#   adapters  the embedded SQLite adapters; killed by tests/unit and the conformance suites (SQLite only)
#   MODULE    any module listed in pyproject.toml's [tool.mutmut] only_mutate, e.g. observatory.retry
#
# pyproject.toml's [tool.mutmut] lists every module that can be mutated and every test file; to cover a
# new module, list it there (a module under observatory/adapters/ joins the `adapters` group).
# The conformance suites only run when an adapter is selected; they need the connection variables
# (taken from `scripts/services.sh env`) but no server, as only their SQLite parameters are kept.
#
# One worker by default (MUTATION_CHILDREN=N for more). Results are kept in mutants/ and reused by the
# next run for code and tests that did not change. Survivors that cannot be killed, because they change
# nothing observable, are listed with the reason in scripts/mutation-equivalent.txt (scripts/mutation_summary.py
# also excuses letter-case changes to SQL text); the script exits 1 when any other mutant survives.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python

if ! "$PY" -m pip show -q mutmut >/dev/null 2>&1; then
  "$PY" -m pip install -q -e ".[mutation]"
fi

# The modules listed in pyproject.toml, as dotted names, and the test files there that are not tests/unit.
mapfile -t LISTED < <("$PY" -c '
import tomllib
for p in tomllib.load(open("pyproject.toml", "rb"))["tool"]["mutmut"]["only_mutate"]:
    print(p.removesuffix(".py").replace("/", "."))')
mapfile -t CONFORMANCE < <("$PY" -c '
import tomllib
for p in tomllib.load(open("pyproject.toml", "rb"))["tool"]["mutmut"]["pytest_add_cli_args_test_selection"]:
    if not p.rstrip("/").endswith("tests/unit"):
        print(p)')

MODULES=()
for arg in "${@:-core}"; do
  case "$arg" in
    core) for m in "${LISTED[@]}"; do [[ $m == observatory.adapters.* ]] || MODULES+=("$m"); done ;;
    adapters) for m in "${LISTED[@]}"; do [[ $m == observatory.adapters.* ]] && MODULES+=("$m"); done ;;
    all) MODULES+=("${LISTED[@]}") ;;
    *)
      if [[ " ${LISTED[*]} " != *" $arg "* ]]; then
        echo "$arg is not listed in pyproject.toml's [tool.mutmut] only_mutate" >&2
        exit 2
      fi
      MODULES+=("$arg") ;;
  esac
done

ADDOPTS=()
if [[ " ${MODULES[*]} " == *" observatory.adapters."* ]]; then
  if [ -z "${AMQP_URL:-}" ]; then eval "$(scripts/services.sh env)"; fi
else  # the core logic is covered by tests/unit alone: leave the slower conformance suites out
  for t in "${CONFORMANCE[@]}"; do ADDOPTS+=("--deselect=$t"); done
fi

GLOBS=()
for m in "${MODULES[@]}"; do GLOBS+=("$m.*"); done
echo "mutating: ${MODULES[*]}"
mkdir -p mutants
PYTEST_ADDOPTS="${PYTEST_ADDOPTS:-} ${ADDOPTS[*]}" .venv/bin/mutmut run --max-children "${MUTATION_CHILDREN:-1}" \
  "${GLOBS[@]}" >mutants/run.log 2>&1 || { tail -n 60 mutants/run.log; exit 1; }

"$PY" scripts/mutation_summary.py "${MODULES[@]}"
