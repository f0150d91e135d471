"""Table output of the cluster commands: the one table formatter and the cells it holds."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

COLUMN_GAP = "   "  # kubectl's: three spaces between columns


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns aligned as kubectl aligns them: left-justified, three spaces apart."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    return "\n".join(
        COLUMN_GAP.join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip()
        for line in [header, *rows]
    )


def money(value: object, *, micro: bool = False) -> str:
    """An amount of US dollars for a cell; "-" when there is none.

    Budgets and the spend counted against them read in cents, "$12.50" (below a cent, to four
    places: "$0.0012"). micro: to the millionth without the sign, for columns headed USD that
    sum per-request costs (one small request costs a few millionths of a dollar).
    """
    if not isinstance(value, (int, float)):
        return "-"
    if micro:
        return f"{value:.6f}"
    return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:.4f}"


def age(timestamp: str | None, now: dt.datetime) -> str:
    """kubectl's AGE: 45s, 12m, 5h, 3d."""
    if not timestamp:
        return "<unknown>"
    try:
        created = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    seconds = max(0, int((now - created).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 120 * 60:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"
