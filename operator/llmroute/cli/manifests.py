"""Manifest files as the offline commands read them: YAML streams of LLMRoutes and quotas."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

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


def load_documents(files: Sequence[IO[str]]) -> list[Document]:
    """Every non-empty document of the YAML streams; a file that is not YAML is an error."""
    documents = []
    for handle in files:
        source = "-" if handle.name == "<stdin>" else handle.name
        try:
            bodies = list(yaml.safe_load_all(handle.read()))
        except yaml.YAMLError as error:
            raise click.ClickException(f"{source}: not valid YAML: {error}") from None
        documents += [Document(source, i, body) for i, body in enumerate(bodies) if body]
    if not documents:
        names = ", ".join("-" if f.name == "<stdin>" else f.name for f in files)
        raise click.ClickException(f"no manifests in {names}")
    return documents


def from_several_files(documents: Sequence[Document]) -> bool:
    """Whether messages must name the file of each document."""
    return len({d.source for d in documents}) > 1


FILENAME_OPTION = click.option(
    "-f",
    "--filename",
    "files",
    type=click.File("r"),
    metavar="FILE",
    multiple=True,
    required=True,
    help="YAML file with LLMRoute / ModelQuota manifests (repeatable); - reads stdin.",
)
