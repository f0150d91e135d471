"""Generate docs/api.md, the API reference, from the CRD schemas in crds/.

    python hack/gen-api-docs.py          # rewrite docs/api.md
    python hack/gen-api-docs.py --check  # exit 1 when docs/api.md is out of date

The CRDs are the single source of truth; tests/unit/test_api_docs.py fails when the two drift.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCS_PATH = REPO_ROOT / "docs" / "api.md"

# Runs from a checkout without the package installed.
sys.path.insert(0, str(REPO_ROOT / "operator"))

from llmroute.api import API_VERSION  # noqa: E402
from llmroute.api.crds import crd_for, kinds, schema_for  # noqa: E402

HEADER = f"""\
# API reference

<!-- Generated from crds/*.yaml by `python hack/gen-api-docs.py`. Do not edit by hand. -->

Both kinds are namespaced and belong to `{API_VERSION}`. The CRDs carry this validation
themselves (OpenAPI schema and CEL rules), so `kubectl apply` rejects what this page calls
invalid; `llmroute validate -f FILE` checks manifests the same way without a cluster.
Defaults are filled in by the API server when an object is stored.
"""


def render() -> str:
    categories = sorted(
        {category for kind in kinds() for category in crd_for(kind)["spec"]["names"]["categories"]}
    )
    parts = [
        HEADER
        + "\nEach kind answers to its singular, plural and short names, with or without an object"
        + " name (`kubectl get llmroute NAME`, `kubectl get mq`); "
        + " and ".join(f"`kubectl get {category}`" for category in categories)
        + " lists both kinds.\n"
    ]
    for kind in kinds():
        parts.append(_render_kind(kind))
    return "\n".join(parts).rstrip("\n") + "\n"


def _render_kind(kind: str) -> str:
    crd = crd_for(kind)
    names = crd["spec"]["names"]
    version = next(v for v in crd["spec"]["versions"] if v["storage"])
    schema = schema_for(kind)
    lines = [
        f"## {kind}",
        "",
        _one_line(schema["description"]),
        "",
        f"- resource: `{names['plural']}.{crd['spec']['group']}`, "
        f"short name{'s' if len(names.get('shortNames', [])) > 1 else ''}: "
        + ", ".join(f"`{short}`" for short in names.get("shortNames", []))
        + ", categories: "
        + ", ".join(f"`{category}`" for category in names.get("categories", [])),
        "- `kubectl get` columns: "
        + ", ".join(
            f"{column['name']} (`{column['jsonPath']}`)"
            for column in version.get("additionalPrinterColumns", [])
        ),
        "",
    ]
    for section in ("spec", "status"):
        node = schema["properties"][section]
        lines += [f"### {kind} {section}", "", _one_line(node["description"]), ""]
        lines += ["| Field | Type | Default | Description |", "|---|---|---|---|"]
        lines += [
            f"| `{path}` | {_type(prop)} | {_default(prop)} | {_describe(prop, required)} |"
            for path, prop, required in _fields(node, f"{section}")
        ]
        lines.append("")
    rules = list(_rules(schema, ""))
    if rules:
        lines += [f"### {kind} cross-field rules", ""]
        lines += ["| Checked at | Rule |", "|---|---|"]
        lines += [
            f"| `{path or '(the object)'}` | {_cell(_one_line(text))} |" for path, text in rules
        ]
        lines.append("")
    return "\n".join(lines)


def _fields(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """Every field below ``node``, depth first, with whether its parent requires it."""
    required = set(node.get("required", []))
    for name, prop in node.get("properties", {}).items():
        prop_path = f"{path}.{name}"
        yield prop_path, prop, name in required
        yield from _children(prop, prop_path)


def _children(prop: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any], bool]]:
    if prop.get("type") == "object" and "properties" in prop:
        yield from _fields(prop, path)
    elif prop.get("type") == "array" and prop["items"].get("type") == "object":
        yield from _fields(prop["items"], f"{path}[]")


def _rules(node: dict[str, Any], path: str) -> Iterator[tuple[str, str]]:
    for rule in node.get("x-kubernetes-validations", []):
        where = path + rule.get("fieldPath", "") if path else rule.get("fieldPath", "")[1:]
        message = rule.get("message") or _message_expression_text(rule["messageExpression"])
        yield where, message
    for name, prop in node.get("properties", {}).items():
        child = f"{path}.{name}" if path else name
        yield from _rules(prop, child)
        if prop.get("type") == "array":
            yield from _rules(prop["items"], f"{child}[]")


def _message_expression_text(expression: str) -> str:
    """A messageExpression as readers see it: its literal text, with <field> for each value."""
    text = []
    for piece in _one_line(expression).split(" + "):
        piece = piece.strip()
        if piece[:1] in "'\"" and piece[-1:] == piece[:1]:
            text.append(piece[1:-1].replace("\\'", "'"))
        else:
            text.append(f"<{piece.removeprefix('self.')}>")
    return "".join(text)


def _type(prop: dict[str, Any]) -> str:
    if prop.get("x-kubernetes-int-or-string"):
        return "quantity"
    kind = prop.get("type", "any")
    if kind == "array":
        return f"[]{_type(prop['items'])}"
    if kind == "object":
        if isinstance(prop.get("additionalProperties"), dict):
            return f"map[string]{_type(prop['additionalProperties'])}"
        return "object"
    return kind


def _default(prop: dict[str, Any]) -> str:
    if "default" not in prop:
        return ""
    return f"`{_cell(json.dumps(prop['default']))}`"


def _describe(prop: dict[str, Any], required: bool) -> str:
    notes = [_one_line(prop.get("description", ""))]
    if required:
        notes.insert(0, "**Required.**")
    if "enum" in prop:
        notes.append("One of: " + ", ".join(f"`{value}`" for value in prop["enum"]) + ".")
    items = prop.get("items") or {}
    if "enum" in items:
        notes.append("Items: " + ", ".join(f"`{value}`" for value in items["enum"]) + ".")
    notes += _limits(prop)
    if items and items.get("type") != "object":
        item_limits = _limits(items)
        if item_limits:
            notes.append(f"Each item: {' '.join(item_limits)}")
    list_type = prop.get("x-kubernetes-list-type")
    if list_type == "map":
        keys = ", ".join(f"`{key}`" for key in prop["x-kubernetes-list-map-keys"])
        notes.append(f"Items are unique by {keys}.")
    elif list_type == "set":
        notes.append("Items are unique.")
    if prop.get("x-kubernetes-preserve-unknown-fields"):
        notes.append("Free-form.")
    return _cell(" ".join(note for note in notes if note))


def _limits(prop: dict[str, Any]) -> list[str]:
    notes = []
    if "minimum" in prop or "maximum" in prop:
        bounds = []
        if "minimum" in prop:
            bounds.append(f"{'>' if prop.get('exclusiveMinimum') else '>='} {prop['minimum']}")
        if "maximum" in prop:
            bounds.append(f"{'<' if prop.get('exclusiveMaximum') else '<='} {prop['maximum']}")
        notes.append(f"Value {' and '.join(bounds)}.")
    for low, high, unit in (
        ("minLength", "maxLength", "characters"),
        ("minItems", "maxItems", "items"),
    ):
        if low in prop and high in prop:
            notes.append(f"{prop[low]} to {prop[high]} {unit}.")
        elif high in prop:
            notes.append(f"At most {prop[high]} {unit}.")
        elif low in prop:
            notes.append(f"At least {prop[low]} {unit}.")
    if "pattern" in prop:
        notes.append(f"Pattern `{prop['pattern']}`.")
    if prop.get("format") == "date-time":
        notes.append("RFC 3339 time.")
    return notes


def _one_line(text: str) -> str:
    """Prose for a table cell: one line, and <placeholders> shown rather than taken for HTML."""
    return " ".join(text.split()).replace("<", "&lt;").replace(">", "&gt;")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when docs/api.md is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = DOCS_PATH.read_text(encoding="utf-8") if DOCS_PATH.exists() else ""
        if current != text:
            print(f"{DOCS_PATH} is out of date: run python hack/gen-api-docs.py", file=sys.stderr)
            return 1
        return 0
    DOCS_PATH.parent.mkdir(parents=True, exist_ok=True)
    DOCS_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {DOCS_PATH.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
