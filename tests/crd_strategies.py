"""Hypothesis strategies for LLMRoute and ModelQuota specs, read from the CRD schemas in crds/.

`schema_valid(kind)` follows the structural schema (types, enums, patterns, bounds, required
fields); CEL rules are left to chance, so some of its specs break them. `corrupted(kind)`
takes such a spec and breaks one node of it (a wrong type, a removed field, a null, a stray
field). Free-form strings come mostly from a small shared vocabulary, so names meet across
fields (a fallback that names a model of the route, a caller's model, a quota's match) often
enough for specs to get past the cross-field rules.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hypothesis import strategies as st

from llmroute.api.crds import schema_for

# Strings that mean something somewhere in the API: model names, providers' model ids,
# Secret names and keys, label keys and values, URLs, tags; and a few that mean trouble.
SANE = (
    "smart",
    "cheap",
    "local",
    "gpt-4",
    "gpt-4o-mini",
    "llama3.2",
    "claude-3-5-sonnet",
    "keys",
    "openai",
    "masterKey",
    "app",
    "team",
    "example.com/team",
    "summarize",
    "http://127.0.0.1:9/v1",
    "https://127.0.0.1:9",
)
TROUBLE = (
    "",
    " ",
    "UPPER",
    "a b",
    "a/b/c",
    "-dash",
    "x" * 70,
    "é",
    "line\nbreak",
    "os.environ/X",
)
VOCABULARY = SANE + TROUBLE
# Mostly strings that make sense, now and then one that does not.
WORDS = st.one_of(st.sampled_from(SANE), st.sampled_from(SANE), st.sampled_from(VOCABULARY))
MODEL_NAMES = st.one_of(st.sampled_from(("smart", "cheap", "local")), WORDS)
TASKS = st.one_of(st.sampled_from(("summarize", "chat")), WORDS)
# Fields whose values must meet other fields' values for a spec to pass the CEL rules.
STEERED: dict[str, st.SearchStrategy[Any]] = {
    "models[].name": MODEL_NAMES,
    "models[].fallbacks[]": MODEL_NAMES,
    "auth.callers[].models[]": MODEL_NAMES,
    "tasks[]": TASKS,
    "models[].targets[].apiBase": st.one_of(
        *[st.sampled_from(("http://127.0.0.1:9/v1", "https://127.0.0.1:9"))] * 9, WORDS
    ),
    "auth.callers[].tags[]": TASKS,
}
# Optional fields that some values of their siblings require (a keyed provider's Secret
# reference, an endpoint): present five times in six.
LIKELY: dict[str, tuple[str, ...]] = {"models[].targets[]": ("apiKeySecretRef", "apiBase")}
# Optional fields per object: few, so that a spec breaks a rule now and then, not always.
MAX_OPTIONAL = 2
QUANTITIES = ("0", "1", "2", "100m", "250m", "1500m", "64Mi", "512Mi", "1Gi", "2Gi", "1e3", "0.5")
MAX_LIST = 3
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(VOCABULARY),
    st.lists(st.sampled_from(VOCABULARY), max_size=2),
    st.dictionaries(st.sampled_from(VOCABULARY), st.integers(0, 3), max_size=2),
)


def _string(node: dict[str, Any]) -> st.SearchStrategy[str]:
    if "enum" in node:
        return st.sampled_from(node["enum"])
    if "pattern" in node:
        matching = st.from_regex(node["pattern"], fullmatch=True).filter(lambda s: len(s) <= 40)
        strategy = st.one_of(*[matching] * 9, WORDS)
    elif node.get("format") == "date-time":
        strategy = st.sampled_from(("2026-11-30T00:00:00Z", "yesterday"))
    else:
        strategy = st.one_of(WORDS, WORDS, st.text(max_size=12))
    low, high = node.get("minLength", 0), node.get("maxLength")
    if low or high is not None:
        # Mostly within the bounds, sometimes not: the server's answer decides.
        bounded = strategy.filter(lambda s: low <= len(s) <= (high if high is not None else 10**9))
        strategy = st.one_of(bounded, bounded, strategy)
    return strategy


def _integer(node: dict[str, Any]) -> st.SearchStrategy[int]:
    low = node.get("minimum")
    high = node.get("maximum")
    if node.get("exclusiveMinimum") and low is not None:
        low += 1
    if node.get("exclusiveMaximum") and high is not None:
        high -= 1
    low = -5 if low is None else low
    high = low + 10_000 if high is None else high
    return st.one_of(
        st.integers(low, min(high, low + 10)),
        st.integers(low, high),
        st.sampled_from((low, high)),
    )


def _number(node: dict[str, Any]) -> st.SearchStrategy[float | int]:
    low = node.get("minimum")
    high = node.get("maximum")
    floats = st.floats(
        min_value=low,
        max_value=high,
        exclude_min=bool(node.get("exclusiveMinimum")),
        exclude_max=bool(node.get("exclusiveMaximum")),
        allow_nan=False,
        allow_infinity=False,
    )
    return st.one_of(floats, _integer(node))


@st.composite
def _object_of(draw: st.DrawFn, node: dict[str, Any], path: str) -> dict[str, Any]:
    properties = node["properties"]
    required = [k for k in properties if k in set(node.get("required") or [])]
    preferred = [k for k in LIKELY.get(path, ()) if draw(st.integers(0, 5))]
    optional = [k for k in properties if k not in required and k not in preferred]
    chosen = draw(st.lists(st.sampled_from(optional), unique=True, max_size=MAX_OPTIONAL))
    return {
        k: draw(strategy_for(properties[k], _join(path, k))) for k in required + preferred + chosen
    }


def _object(node: dict[str, Any], path: str) -> st.SearchStrategy[dict[str, Any]]:
    if not [k for k in node["properties"] if k not in set(node.get("required") or [])]:
        return st.fixed_dictionaries(
            {k: strategy_for(v, _join(path, k)) for k, v in node["properties"].items()}
        )
    return _object_of(node, path)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _list(node: dict[str, Any], path: str) -> st.SearchStrategy[list[Any]]:
    low = node.get("minItems", 0)
    high = max(low, min(node.get("maxItems", MAX_LIST), MAX_LIST))
    items = strategy_for(node.get("items") or {}, f"{path}[]")
    keys = node.get("x-kubernetes-list-map-keys")
    if node.get("x-kubernetes-list-type") == "map" and keys:

        def identity(item: Any) -> Any:
            if not isinstance(item, dict):
                return id(item)
            return tuple(repr(item.get(k)) for k in keys)

        unique = st.lists(items, min_size=low, max_size=high, unique_by=identity)
    elif node.get("x-kubernetes-list-type") == "set":
        unique = st.lists(items, min_size=low, max_size=high, unique_by=repr)
    else:
        return st.lists(items, min_size=low, max_size=high)
    # Now and then with a duplicate, which the API server refuses.
    return st.one_of(unique, unique, unique, st.lists(items, min_size=low, max_size=high))


def strategy_for(node: dict[str, Any], path: str = "") -> st.SearchStrategy[Any]:
    """Values a Kubernetes structural schema node allows (CEL rules aside); `path` is the
    node's place in the spec (`models[].name`), for the fields whose values are steered."""
    if path in STEERED:
        return STEERED[path]
    if node.get("x-kubernetes-int-or-string"):
        return st.one_of(
            st.integers(0, 64), st.sampled_from(QUANTITIES), st.from_regex(r"[0-9]{1,4}[mKMG]i?")
        )
    kind = node.get("type")
    if kind == "object":
        properties = node.get("properties") or {}
        if properties:
            return _object(node, path)
        values = node.get("additionalProperties")
        if isinstance(values, dict):
            return st.dictionaries(
                st.one_of(WORDS, st.text(max_size=8)),
                strategy_for(values, f"{path}[]"),
                max_size=MAX_LIST,
            )
        return st.dictionaries(WORDS, WORDS, max_size=2)
    if kind == "array":
        return _list(node, path)
    if kind == "string":
        return _string(node)
    if kind == "integer":
        return _integer(node)
    if kind == "number":
        return _number(node)
    if kind == "boolean":
        return st.booleans()
    return JUNK


def _spec_schema(kind: str) -> dict[str, Any]:
    return schema_for(kind)["properties"]["spec"]


def schema_valid(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    """Specs of `kind` the structural schema allows."""
    return strategy_for(_spec_schema(kind))


def _nodes(value: Any, path: tuple = ()) -> Iterator[tuple]:
    """The path of every node of a JSON value, the root's () included."""
    yield path
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _nodes(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _nodes(child, (*path, index))


@st.composite
def corrupted(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    """A spec of `kind` with one node broken: replaced by junk, removed, or given a stray field."""
    spec = draw(schema_valid(kind))
    paths = [p for p in _nodes(spec) if p]
    if not paths:
        spec["unknownField"] = draw(JUNK)
        return spec
    path = draw(st.sampled_from(paths))
    parent = spec
    for key in path[:-1]:
        parent = parent[key]
    how = draw(st.sampled_from(("replace", "remove", "stray")))
    if how == "remove":
        del parent[path[-1]]
    elif how == "stray" and isinstance(parent, dict):
        parent["unknownField"] = draw(JUNK)
    else:
        parent[path[-1]] = draw(JUNK)
    return spec


def specs(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    """Specs of `kind`: two in three by the schema, one in three with one node broken."""
    return st.one_of(schema_valid(kind), schema_valid(kind), corrupted(kind))


ROUTE_NAMES = st.one_of(
    st.sampled_from(("gw", "smart", "a", "gw-ollama")),
    st.from_regex(r"[a-z]([-a-z0-9]{0,50}[a-z0-9])?", fullmatch=True),
)
