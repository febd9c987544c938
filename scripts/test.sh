#!/usr/bin/env bash
# pytest over all of tests/ (integration included), then ruff. Both always run.
# Exit status: pytest's when it failed (5, "no tests ran", counts as a failure), else ruff's.
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

.venv/bin/ruff check .
lint=$?
if ((lint != 0)); then
    echo "test.sh: ruff found problems (exit $lint)" >&2
fi

if ((status != 0)); then
    exit "$status"
fi
exit "$lint"
