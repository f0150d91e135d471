"""Draw the dashboard's panels from a real Prometheus's answers: one small chart per panel.

The input is what tests/e2e/test_observability.py writes when LLMROUTE_DASHBOARD_DATA names a
file: every panel query of charts/llmroute/dashboards/llmroute.json, evaluated over the test's
traffic against the local Prometheus. docs/operations.md has the command that made
docs/dashboard-panels.png. Needs matplotlib (`.venv/bin/pip install matplotlib`), which is
not a dependency of the project.

    python hack/dashboard-png.py DATA.json docs/dashboard-panels.png
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path
from typing import Any

COLUMNS = 4


def legend(template: str, labels: dict[str, str]) -> str:
    """Grafana's legendFormat: {{label}} replaced by the series' value of that label."""
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m[1], ""), template).strip()


def draw(data: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Targets of one panel (its title) share a chart.
    panels: dict[str, list[dict[str, Any]]] = {}
    for query in data["panels"]:
        panels.setdefault(query["title"], []).append(query)
    rows = math.ceil(len(panels) / COLUMNS)
    figure, axes = plt.subplots(rows, COLUMNS, figsize=(4.2 * COLUMNS, 2.9 * rows), squeeze=False)
    for axis in axes.flat[len(panels) :]:
        axis.set_visible(False)
    for axis, (title, queries) in zip(axes.flat, panels.items(), strict=False):
        start = min(
            (float(v[0]) for q in queries for s in q["result"] for v in s["values"]), default=0
        )
        for query in queries:
            for series in query["result"]:
                times = [(float(t) - start) / 60 for t, _ in series["values"]]
                values = [float(v) for _, v in series["values"]]
                axis.plot(times, values, label=legend(query["legend"], series["metric"]))
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("minutes", fontsize=7)
        axis.tick_params(labelsize=7)
        axis.legend(fontsize=6, loc="upper left")
        axis.grid(alpha=0.3)
    figure.suptitle("llmroute dashboard, answered by a real Prometheus (e2e traffic)", fontsize=11)
    figure.tight_layout()
    figure.savefig(out, dpi=80)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    draw(json.loads(args.data.read_text()), args.out)


if __name__ == "__main__":
    main()
