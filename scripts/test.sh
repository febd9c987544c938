#!/usr/bin/env bash
# pytest over all of tests/ (integration included), then ruff, lint-imports (the import contracts in
# pyproject.toml) and mypy (core). All always run. Exit status: pytest's when it failed (5, "no
# tests ran", counts as a failure), else 1 when a checker found problems.
# Extra arguments go to pytest. VMM_TEST_TIMEOUT (seconds) bounds a hung run.
set -uo pipefail
cd "$(dirname "$0")/.."

timeout --kill-after=30 "${VMM_TEST_TIMEOUT:-2400}" .venv/bin/python -m pytest -ra "$@"
status=$?
case $status in
    0) ;;
    5) echo "test.sh: pytest collected no tests (exit 5): that is a failure" >&2 ;;
    124 | 137) echo "test.sh: pytest did not finish within ${VMM_TEST_TIMEOUT:-2400} s" >&2 ;;
    *) echo "test.sh: pytest failed (exit $status)" >&2 ;;
esac

lint=0
for check in "ruff check ." "lint-imports" "mypy"; do  # style; the import contracts; types (core)
    read -r tool args <<<"$check"
    # shellcheck disable=SC2086 # $args is the checker's arguments, split on purpose
    if ! ".venv/bin/$tool" $args; then
        echo "test.sh: $tool found problems" >&2
        lint=1
    fi
done

if ((status != 0)); then
    exit "$status"
fi
exit "$lint"
