"""Reproducible performance harnesses (see docs/benchmarks.md).

    .venv/bin/python -m benchmarks.operator_scale --routes 100,500,1000
    .venv/bin/python -m benchmarks.gateway_overhead
    .venv/bin/python -m benchmarks.report

Run from the repository root. The harnesses use the package (operator/) and the local
control plane (hack/), which are source roots rather than installed packages.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# Appended, not prepended: the directory named `operator` must never shadow the stdlib module.
for _source_root in (REPO_ROOT / "operator", REPO_ROOT / "hack"):
    if str(_source_root) not in sys.path:
        sys.path.append(str(_source_root))
