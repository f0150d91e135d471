#!/usr/bin/env bash
# The local demo: `bash hack/demo.sh` brings up a local cluster, the operator and the
# example route, and prints how to call the gateway; `bash hack/demo.sh down` stops it all.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

command=${1:-up}
if [[ $command == up ]]; then
  bash hack/setup-venv.sh
  bash hack/build-tools.sh
fi
PYTHONPATH="$PWD/hack" exec .venv/bin/python -m localcluster.demo "$command"
