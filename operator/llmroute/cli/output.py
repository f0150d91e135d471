"""How the commands print: YAML for people, and the -o choice of the cluster commands."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

import click
import yaml

OUTPUT_FORMATS: Final = ("table", "yaml", "json")


class _Dumper(yaml.SafeDumper):
    """YAML for people: multi-line strings (config.yaml, the auth module) as literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(data: Any, *, many: bool = False) -> str:
    options = {"Dumper": _Dumper, "sort_keys": False, "allow_unicode": True, "width": 4096}
    return yaml.dump_all(data, **options) if many else yaml.dump(data, **options)


def echo_output(data: Mapping[str, Any], output: str, table: str) -> None:
    """Print `data` as -o asks: JSON, YAML, or the table already made of it."""
    if output == "json":
        click.echo(json.dumps(data, indent=2))
    elif output == "yaml":
        click.echo(dump_yaml(dict(data)), nl=False)
    else:
        click.echo(table)
