#!/usr/bin/env bash
# Creates .venv with the project, the operator's dependencies and the tests' (the extras
# operator and test); a no-op when pyproject.toml is unchanged since the last install.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python=${PYTHON:-python3}
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [[ -f $stamp ]]; then
  exit 0
fi
echo "[setup-venv] installing llmroute[operator,test] into .venv (1-2 min)" >&2
[[ -x .venv/bin/python ]] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[operator,test]'
rm -f .venv/.installed-*
touch "$stamp"
