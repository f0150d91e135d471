"""Manifest files as the offline commands read them: YAML streams of LLMRoutes and quotas."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import click
import yaml


@dataclass(frozen=True)
class Document:
    source: str  # the file name, "-" for stdin
    index: int  # position in its file's YAML stream, from 0
    body: Any

    @property
    def kind(self) -> str | None:
        return self.body.get("kind") if isinstance(self.body, dict) else None

    @property
    def name(self) -> str | None:
        if not isinstance(self.body, dict):
            return None
        metadata = self.body.get("metadata")
        return metadata.get("name") if isinstance(metadata, dict) else None

    def label(self, several_files: bool) -> str:
        """How messages name the document: Kind/name, with the file when there are several."""
        if self.kind and self.name:
            what = f"{self.kind}/{self.name}"
        else:
            what = f"document {self.index + 1}" + (f" ({self.kind})" if self.kind else "")
        return f"{self.source}: {what}" if several_files or not (self.kind and self.name) else what


# What kubectl reads from a directory given to -f.
MANIFEST_SUFFIXES: Final = (".yaml", ".yml", ".json")


class _StrictLoader(yaml.SafeLoader):
    """YAML with duplicate mapping keys refused, as kubectl's strict decoding does: the API
    server would keep one of the two values silently."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {json.dumps(key)}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def manifest_sources(paths: Sequence[str], recursive: bool) -> list[str]:
    """The files to read: each path given, a directory as its manifest files (sorted; with
    `recursive`, those of its subdirectories too); "-" is standard input."""
    sources: list[str] = []
    for path in paths:
        if path == "-" or not os.path.isdir(path):
            sources.append(path)
            continue
        pattern = "**/*" if recursive else "*"
        found = sorted(
            str(p)
            for p in Path(path).glob(pattern)
            if p.suffix in MANIFEST_SUFFIXES and p.is_file()
        )
        if not found:
            raise click.ClickException(
                f"no manifest files ({', '.join(MANIFEST_SUFFIXES)}) in {path}"
                + ("" if recursive else " (-R reads its subdirectories)")
            )
        sources += found
    return sources


def _read_text(source: str) -> str:
    raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise click.ClickException(
            f"{source}: not UTF-8 text (byte 0x{raw[error.start]:02x} at offset {error.start})"
        ) from None


def load_documents(paths: Sequence[str], recursive: bool = False) -> list[Document]:
    """Every non-empty document of the YAML streams; a file that is not YAML is an error."""
    sources = manifest_sources(paths, recursive)
    documents = []
    for source in sources:
        try:
            bodies = list(yaml.load_all(_read_text(source), Loader=_StrictLoader))
        except yaml.YAMLError as error:
            raise click.ClickException(f"{source}: not valid YAML: {error}") from None
        documents += [Document(source, i, body) for i, body in enumerate(bodies) if body]
    if not documents:
        raise click.ClickException(f"no manifests in {', '.join(sources)}")
    return documents


def from_several_files(documents: Sequence[Document]) -> bool:
    """Whether messages must name the file of each document."""
    return len({d.source for d in documents}) > 1


def manifest_file_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """-f FILE|DIR|- (repeatable) and -R, as kubectl takes them."""
    command = click.option(
        "-R",
        "--recursive",
        is_flag=True,
        help="Also read the manifest files in the subdirectories of a directory given to -f.",
    )(command)
    return click.option(
        "-f",
        "--filename",
        "paths",
        type=click.Path(exists=True, allow_dash=True),
        metavar="FILE|DIR",
        multiple=True,
        required=True,
        help="YAML file with LLMRoute / ModelQuota manifests, or a directory of them "
        "(.yaml, .yml, .json); repeatable; - reads stdin.",
    )(command)
