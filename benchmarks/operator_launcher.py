"""`llmroute run` with a kopf setting changed, or a proposed change approximated, to measure
what it is worth before anyone edits the operator.

    python -m benchmarks.operator_launcher --set execution.max_workers=32 \
        --patch no-quota-list -- run --kubeconfig KUBECONFIG

Everything after `--` goes to the `llmroute` command. `--set` assigns a kopf
OperatorSettings attribute at start-up (after the operator's own settings). `--patch` swaps
one handler helper for what a proposed change would leave of it; they drop functionality and
exist only to measure an upper bound on a change's gain:

  no-quota-list   no LIST of ModelQuotas per reconcile (an index of quotas by route)
  no-secret-gets  no GET of referenced Secrets per reconcile (an index of Secrets and keys)
  secret-events-not-listed
                  secret_changed ignores the Secrets kopf lists when a watch (re)starts: the
                  resume handlers reconcile every route then anyway
  skip-caught-up  a route whose status has caught up with its generation and whose rendered
                  config hash equals status.configHash is not applied or checked again (what
                  short-circuiting an unchanged route on resume would leave; drift repair is
                  not covered by this stand-in)
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
from typing import Any

PATCHES = (
    "no-quota-list",
    "no-secret-gets",
    "secret-events-not-listed",
    "skip-caught-up",
)


def _value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def register_settings(assignments: list[tuple[str, Any]]) -> None:
    import kopf

    @kopf.on.startup()
    def benchmark_settings(settings: kopf.OperatorSettings, **_: Any) -> None:
        for path, value in assignments:
            target: Any = settings
            *parents, name = path.split(".")
            for parent in parents:
                target = getattr(target, parent)
            if not hasattr(target, name):
                raise AttributeError(f"kopf settings have no {path}")
            setattr(target, name, value)


def apply_patches(names: list[str]) -> None:
    from llmroute.route import reconcile as route

    for name in names:
        if name == "no-quota-list":
            route.quota_effects_for_route = lambda *args, **kwargs: []
        elif name == "no-secret-gets":
            route._missing_secrets = lambda *args, **kwargs: []
        elif name == "secret-events-not-listed":
            _skip_listed_secret_events()
        elif name == "skip-caught-up":
            _skip_caught_up(route)
        else:
            raise SystemExit(f"unknown patch {name!r}; known: {', '.join(PATCHES)}")


def _skip_listed_secret_events() -> None:
    import kopf

    registry = kopf.get_default_registry()
    for handler in registry._watching.get_all_handlers():
        if handler.id == "secret_changed" and handler.when is not None:
            when = handler.when

            def not_listed(when: Any = when, **kwargs: Any) -> bool:
                # kopf passes type=None for the objects of the initial listing.
                return kwargs.get("type") is not None and bool(when(**kwargs))

            object.__setattr__(handler, "when", not_listed)


def _skip_caught_up(route: Any) -> None:
    from llmroute.api.route import parse_route
    from llmroute.render import render_route

    reconcile = route._reconcile_locked

    def reconcile_unless_caught_up(body: dict, optional_children: Any, logger: Any) -> None:
        status = body.get("status") or {}
        if status.get("observedGeneration") == body["metadata"].get("generation"):
            try:
                rendered = render_route(parse_route(body))
            except Exception:
                rendered = None
            if rendered is not None and rendered.config_hash == status.get("configHash"):
                return
        reconcile(body, optional_children, logger)

    route._reconcile_locked = reconcile_unless_caught_up


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ours, rest = (
        (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    )
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.operator_launcher", description=__doc__
    )
    parser.add_argument("--set", action="append", default=[], metavar="PATH=VALUE")
    parser.add_argument("--patch", action="append", default=[], choices=PATCHES)
    args = parser.parse_args(ours)
    if "--kubeconfig" in rest:
        # The kubernetes client fixes its default kubeconfig path when first imported, which
        # the handlers do here, before `llmroute run` would set it.
        os.environ["KUBECONFIG"] = rest[rest.index("--kubeconfig") + 1]
    from llmroute import handlers  # noqa: F401  (the operator's handlers and settings first)
    from llmroute.cli import main as llmroute_main

    assignments = []
    for item in args.set:
        path, _, value = item.partition("=")
        assignments.append((path, _value(value)))
    register_settings(assignments)
    apply_patches(args.patch)
    return llmroute_main(rest, standalone_mode=True) or 0


if __name__ == "__main__":
    sys.exit(main())
