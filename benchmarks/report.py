"""Markdown tables and the latency plot of docs/benchmarks.md, from the harnesses' results.

    .venv/bin/python -m benchmarks.report --gateway benchmarks/results/gateway-....json \
        --operator benchmarks/results/operator-....json --plot docs/benchmarks-gateway-latency.png

The plot needs matplotlib (`.venv/bin/pip install matplotlib`); it is not a dependency of
llmroute.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

PATH_LABELS = {
    "direct": "(a) direct to the upstream",
    "llmroute": "(b) proxy as llmroute renders it",
    "chart": "(c) proxy as LiteLLM's Helm chart runs it",
    "bare": "(d) bare LiteLLM, minimal config",
    "alt-llmroute": "(b) on the other LiteLLM release",
    "alt-bare": "(d) on the other LiteLLM release",
}


SHORT_LABELS = {
    "direct": "(a) direct",
    "llmroute": "(b) llmroute",
    "chart": "(c) chart",
    "bare": "(d) bare LiteLLM",
}


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def gateway_tables(result: dict[str, Any]) -> str:
    settings = result["settings"]
    lines = [
        f"Upstream delay {settings['upstream_delay_s'] * 1000:.0f} ms; proxies on CPUs "
        f"`{settings['proxy_cpus']}` (CPU limit of the rendered pod: "
        f"{settings.get('proxy_cpu_limit', '1')}), upstream and load generator on CPUs "
        f"`{settings['client_cpus']}`; load average {result['load_average_start']} at the start, "
        f"{result['load_average_end']} at the end.",
        "",
        "| path | concurrency | requests/s | p50 ms | p99 ms | proxy CPU ms/request "
        "| proxy RSS MiB | generator CPU | load avg (before -> after) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, path in result["paths"].items():
        for level in path["levels"]:
            lines.append(
                f"| {PATH_LABELS.get(name, name)} | {level['concurrency']} "
                f"| {_cell(level['requests_per_s'])} | {_cell(level['latency']['p50_ms'])} "
                f"| {_cell(level['latency']['p99_ms'])} "
                f"| {_cell(level.get('proxy_cpu_ms_per_request'))} "
                f"| {_cell(level.get('proxy_rss_mib'))} "
                f"| {_cell(level.get('generator_cpu'))} "
                f"| {level['load_average_before'][0]} -> {level['load_average_after'][0]} |"
            )
    lines += [
        "",
        "| concurrency | overhead p50 ms (b - a) | overhead p99 ms (b - a) "
        "| throughput (b) / (c) | throughput (b) / (d) | CPU per request (b) / (d) "
        "| (a) / ideal |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["comparison"]:
        lines.append(
            f"| {row['concurrency']} | {_cell(row['overhead_p50_ms'])} "
            f"| {_cell(row['overhead_p99_ms'])} | {_cell(row['throughput_llmroute_over_chart'])} "
            f"| {_cell(row.get('throughput_llmroute_over_bare'))} "
            f"| {_cell(row.get('cpu_per_request_llmroute_over_bare'))} "
            f"| {_cell(row['throughput_direct_over_ideal'])} |"
        )
    summary = result.get("summary")
    if summary:
        lines += ["", "| path | proxy CPU ms/request, all levels |", "|---|---:|"]
        for name, cpu in summary["cpu_ms_per_request"].items():
            lines.append(f"| {PATH_LABELS.get(name, name)} | {_cell(cpu)} |")
        lines += ["", "```", *summary["lines"], "```"]
    return "\n".join(lines)


def _floor(floor: dict[str, Any], key: str) -> str:
    """The mean floor, with the runs before and after the operator's phases."""
    if "before_operator" not in floor:
        return str(floor[key])
    return f"{floor[key]} ({floor['before_operator'][key]} / {floor['after_operator'][key]})"


def _requests(counts: dict[str, Any] | None) -> str:
    if not counts:
        return "-"
    return f"{counts['requests']} ({counts['writes']} writes)"


def operator_tables(result: dict[str, Any]) -> str:
    lines = [
        "| routes | from empty s | floor s (before / after) | ratio "
        "| apply->observed p50 / p99 ms (burst) | all Ready s | steady p50 / p99 ms "
        "| restart, unchanged s | restart, all changed s "
        "| floor after change s | ratio |",
        "|---:|---:|---:|---:|---|---:|---|---:|---:|---:|---:|",
    ]
    for size in result["sizes"]:
        empty, floor, steady = size["from_empty"], size["floor"], size["steady_state"]
        lines.append(
            f"| {size['routes']} | {empty['converged_s']} | {_floor(floor, 'from_empty_s')} "
            f"| {_cell(size['ratios']['from_empty_over_floor'])} "
            f"| {empty['apply_to_observed']['p50_ms']} / {empty['apply_to_observed']['p99_ms']} "
            f"| {_cell(empty.get('all_ready_s'))} "
            f"| {steady['apply_to_observed']['p50_ms']} / {steady['apply_to_observed']['p99_ms']} "
            f"| {size['restart_unchanged']['all_resumed_s']} "
            f"| {size['restart_changed']['converged_s']} | {_floor(floor, 'after_change_s')} "
            f"| {_cell(size['ratios']['restart_changed_over_floor'])} |"
        )
    lines += [
        "",
        "| routes | operator requests: from empty | restart, unchanged | restart, changed "
        "| idle window | idle writes | all clients' requests while idle | RSS MiB (peak) "
        "| operator CPU s, from empty |",
        "|---:|---|---|---|---:|---:|---|---|---:|",
    ]
    for size in result["sizes"]:
        idle = size["idle"]
        memory = size.get("memory_first_process") or idle["memory"]
        lines.append(
            f"| {size['routes']} | {_requests(size['from_empty']['operator_requests'])} "
            f"| {_requests(size['restart_unchanged']['operator_requests'])} "
            f"| {_requests(size['restart_changed']['operator_requests'])} "
            f"| {idle['seconds']:.0f} s | {idle['operator_requests']['writes']} "
            f"| {json.dumps(idle['all_clients_by_verb'])} "
            f"| {memory['rss_mib']} ({memory['peak_rss_mib']}) "
            f"| {_cell(size['from_empty'].get('operator_cpu_s'))} |"
        )
    lines += ["", "Load average (1 min) at the start and end of each phase:", ""]
    lines += [
        "| routes | from empty | steady | idle | restart, unchanged | restart, changed | floor |",
        "|---:|---|---|---|---|---|---|",
    ]
    for size in result["sizes"]:

        def load(phase: str, size: dict[str, Any] = size) -> str:
            data = size[phase]
            return f"{data['load_average_before'][0]} -> {data['load_average_after'][0]}"

        lines.append(
            f"| {size['routes']} | {load('from_empty')} | {load('steady_state')} | {load('idle')} "
            f"| {load('restart_unchanged')} | {load('restart_changed')} | {load('floor')} |"
        )
    return "\n".join(lines)


def plot_gateway(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (latency_axis, rate_axis) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = {"direct": "#4c72b0", "llmroute": "#dd8452", "chart": "#55a868"}
    for name in ("direct", "llmroute", "chart"):
        levels = result["paths"][name]["levels"]
        x = [level["concurrency"] for level in levels]
        color = colors[name]
        label = SHORT_LABELS[name]
        latency_axis.plot(
            x, [lv["latency"]["p50_ms"] for lv in levels], "o-", color=color, label=f"{label} p50"
        )
        latency_axis.plot(
            x, [lv["latency"]["p99_ms"] for lv in levels], "s--", color=color, label=f"{label} p99"
        )
        rate_axis.plot(x, [lv["requests_per_s"] for lv in levels], "o-", color=color, label=label)
    for axis in (latency_axis, rate_axis):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("concurrent clients")
        axis.set_xticks([lv["concurrency"] for lv in result["paths"]["direct"]["levels"]])
        axis.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.grid(True, which="both", alpha=0.3)
    latency_axis.set_ylabel("latency (ms)")
    latency_axis.set_title("Latency vs concurrency")
    rate_axis.set_ylabel("requests/s")
    rate_axis.set_title("Throughput vs concurrency")
    latency_axis.legend(fontsize=7, ncol=2)
    rate_axis.legend(fontsize=8)
    settings = result["settings"]
    figure.suptitle(
        f"Gateway overhead: upstream answers in {settings['upstream_delay_s'] * 1000:.0f} ms; "
        f"proxies on CPUs {settings['proxy_cpus']}, client on CPUs {settings['client_cpus']}",
        fontsize=10,
    )
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--gateway", type=Path, action="append", default=[])
    parser.add_argument("--operator", type=Path, action="append", default=[])
    parser.add_argument("--plot", type=Path, help="PNG of the (first) gateway result's latencies")
    args = parser.parse_args(argv)
    for path in args.gateway:
        print(f"### {path.name}\n\n{gateway_tables(json.loads(path.read_text()))}\n")
    for path in args.operator:
        print(f"### {path.name}\n\n{operator_tables(json.loads(path.read_text()))}\n")
    if args.plot and args.gateway:
        plot_gateway(json.loads(args.gateway[0].read_text()), args.plot)
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
