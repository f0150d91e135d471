"""Rules of the Kubernetes API server for fields an LLMRoute copies into the objects it renders.

The CRD accepts these fields as free-form (a label selector, a node selector, tolerations,
resource quantities); the API server judges them only once they are in a Deployment, a
StatefulSet, a NetworkPolicy or an Ingress. Checked here too, a spec the API server would refuse is
reported offline by `llmroute validate`, and by the operator as ConfigValid=False naming the
route's own field. The rules and messages follow Kubernetes' own validation
(apimachinery's IsQualifiedName / IsValidLabelValue, core's ValidateResourceRequirements and
validateTolerations, metav1's ValidateLabelSelector).

Pure Python: `llmroute validate` runs without the operator's dependencies.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final

# (field path, message): llmroute.api.validation makes its ValidationErrors of them.
Problem = tuple[str, str]

_QUANTITY_SUFFIXES: Final = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
_QUANTITY: Final = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")

_NAME_MAX: Final = 63
_PREFIX_MAX: Final = 253
_NAME: Final = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS_LABEL: Final = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN: Final = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")


def parse_quantity(value: object) -> Decimal | None:
    """A Kubernetes resource quantity ("500m", "1.5", "1Gi", 2) as a number; None if unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    if not isinstance(value, str):
        return None
    match = _QUANTITY.match(value.strip())
    if not match or match.group(2) not in _QUANTITY_SUFFIXES:
        return None
    try:
        return Decimal(match.group(1)) * _QUANTITY_SUFFIXES[match.group(2)]
    except InvalidOperation:
        return None


def label_key_problem(key: str) -> str | None:
    """Why `key` is not a valid label key ([prefix/]name), or None."""
    prefix, slash, name = key.rpartition("/")
    if slash and not (prefix and len(prefix) <= _PREFIX_MAX and _DNS_SUBDOMAIN.fullmatch(prefix)):
        return (
            "its prefix must be a DNS subdomain (lower case letters, digits, '-' and '.') "
            f"of at most {_PREFIX_MAX} characters"
        )
    if not name or len(name) > _NAME_MAX or not _NAME.fullmatch(name):
        return (
            f"its name must be at most {_NAME_MAX} characters of letters, digits, '-', '_' "
            "and '.', starting and ending with a letter or digit, with an optional DNS "
            "subdomain prefix and '/'"
        )
    return None


def label_value_problem(value: str) -> str | None:
    """Why `value` is not a valid label value, or None (empty is valid)."""
    if value and (len(value) > _NAME_MAX or not _NAME.fullmatch(value)):
        return (
            f"it must be empty or at most {_NAME_MAX} characters of letters, digits, '-', '_' "
            "and '.', starting and ending with a letter or digit"
        )
    return None


def _key_errors(path: str, key: Any) -> Iterator[Problem]:
    if isinstance(key, str) and (problem := label_key_problem(key)) is not None:
        yield (path, f"{key!r} is not a valid label key: {problem}")


def _value_errors(path: str, value: Any) -> Iterator[Problem]:
    if isinstance(value, str) and (problem := label_value_problem(value)) is not None:
        yield (path, f"{value!r} is not a valid label value: {problem}")


def label_map_errors(path: str, labels: Any) -> Iterator[Problem]:
    """A map of labels (matchLabels, nodeSelector): each key and value."""
    if not isinstance(labels, Mapping):
        return
    for key, value in labels.items():
        entry = f'{path}["{key}"]'
        yield from _key_errors(entry, key)
        yield from _value_errors(entry, value)


def label_selector_errors(path: str, selector: Any) -> Iterator[Problem]:
    """A metav1.LabelSelector: matchLabels and matchExpressions."""
    if not isinstance(selector, Mapping):
        return
    yield from label_map_errors(f"{path}.matchLabels", selector.get("matchLabels"))
    expressions = selector.get("matchExpressions")
    for index, expression in enumerate(expressions if isinstance(expressions, list) else ()):
        if not isinstance(expression, Mapping):
            continue
        at = f"{path}.matchExpressions[{index}]"
        yield from _key_errors(f"{at}.key", expression.get("key"))
        values = expression.get("values")
        values = values if isinstance(values, list) else []
        operator = expression.get("operator")
        if operator in ("In", "NotIn") and not values:
            yield (f"{at}.values", "Required value: must be specified when operator is In or NotIn")
        elif operator in ("Exists", "DoesNotExist") and values:
            yield (
                f"{at}.values",
                "Forbidden: may not be specified (must be empty when operator is Exists or "
                "DoesNotExist)",
            )
        for position, value in enumerate(values):
            yield from _value_errors(f"{at}.values[{position}]", value)


def resource_errors(path: str, resources: Any) -> Iterator[Problem]:
    """Resource requirements: quantities not negative, each request within its limit."""
    if not isinstance(resources, Mapping):
        return
    parsed: dict[str, dict[str, Decimal]] = {}
    for section in ("limits", "requests"):
        block = resources.get(section)
        parsed[section] = {}
        for name, raw in block.items() if isinstance(block, Mapping) else ():
            quantity = parse_quantity(raw)
            if quantity is None:
                continue  # the schema's pattern reports what is unreadable
            if quantity < 0:
                yield (f"{path}.{section}.{name}", f"{raw!r} must be greater than or equal to 0")
            parsed[section][name] = quantity
    for name, request in parsed["requests"].items():
        limit = parsed["limits"].get(name)
        if limit is not None and request > limit:
            yield (
                f"{path}.requests.{name}",
                f"{resources['requests'][name]!r} must be less than or equal to the {name} "
                f"limit ({resources['limits'][name]})",
            )


def toleration_errors(path: str, tolerations: Any) -> Iterator[Problem]:
    """Pod tolerations, as the API server judges them."""
    for index, toleration in enumerate(tolerations if isinstance(tolerations, list) else ()):
        if not isinstance(toleration, Mapping):
            continue
        at = f"{path}[{index}]"
        key = toleration.get("key") or ""
        operator = toleration.get("operator") or "Equal"
        value = toleration.get("value") or ""
        if key:
            yield from _key_errors(f"{at}.key", key)
        elif operator != "Exists":
            yield (
                f"{at}.operator",
                f"{operator!r} must be Exists when key is empty (which means: match all "
                "keys and values)",
            )
        if operator == "Exists" and value:
            yield (f"{at}.value", f"{value!r} must be empty when operator is Exists")
        elif operator == "Equal":
            yield from _value_errors(f"{at}.value", value)
        if toleration.get("tolerationSeconds") is not None and (
            toleration.get("effect") != "NoExecute"
        ):
            yield (
                f"{at}.effect",
                f"{toleration.get('effect')!r} must be NoExecute when tolerationSeconds is set",
            )


def route_pod_field_errors(spec: Mapping[str, Any]) -> Iterator[Problem]:
    """Every field of an LLMRoute spec that ends up in a rendered object's pod or policy."""
    proxy = spec.get("proxy")
    if isinstance(proxy, Mapping):
        yield from resource_errors("spec.proxy.resources", proxy.get("resources"))
    access = spec.get("access")
    peers = access.get("from") if isinstance(access, Mapping) else None
    for index, peer in enumerate(peers if isinstance(peers, list) else ()):
        if isinstance(peer, Mapping):
            for selector in ("podSelector", "namespaceSelector"):
                yield from label_selector_errors(
                    f"spec.access.from[{index}].{selector}", peer.get(selector)
                )
    expose = spec.get("expose")
    if isinstance(expose, Mapping) and expose.get("fromNamespace") is not None:
        yield from label_selector_errors("spec.expose.fromNamespace", expose.get("fromNamespace"))
    ingress = expose.get("ingress") if isinstance(expose, Mapping) else None
    annotations = ingress.get("annotations") if isinstance(ingress, Mapping) else None
    for key in annotations if isinstance(annotations, Mapping) else ():
        # Annotation keys follow the rule of label keys (a qualified name).
        if isinstance(key, str) and (problem := label_key_problem(key)) is not None:
            yield (
                f"spec.expose.ingress.annotations[{key}]",
                f"{key!r} is not a valid annotation key: {problem}",
            )
    ollama = spec.get("ollama")
    if isinstance(ollama, Mapping):
        yield from resource_errors("spec.ollama.resources", ollama.get("resources"))
        yield from label_map_errors("spec.ollama.nodeSelector", ollama.get("nodeSelector"))
        yield from toleration_errors("spec.ollama.tolerations", ollama.get("tolerations"))
