#!/usr/bin/env bash
# The whole test suite, from a fresh clone: creates .venv, builds the pinned control-plane
# binaries (cached under ~/.cache/llmroute, so only the first run is slow), lints, and runs
# pytest (unit + e2e). Extra arguments go to pytest, e.g. `bash hack/test.sh tests/unit`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash hack/setup-venv.sh
bash hack/build-tools.sh

echo "[test] ruff" >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check .

echo "[test] pytest" >&2
set +e
.venv/bin/pytest "$@"
status=$?
set -e
if [[ $status -eq 5 ]]; then
  echo "[test] pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit $status
