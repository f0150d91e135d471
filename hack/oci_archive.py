"""The operator image as an OCI archive, and files read back out of one, without a registry.

    python hack/oci_archive.py from-docker SAVED.tar OUT.oci.tar --ref REPOSITORY:TAG
    python hack/oci_archive.py extract OUT.oci.tar PATH DEST

`from-docker` turns what `docker save` writes into one tar that is at once an OCI image
layout (oci-layout, index.json, blobs/sha256/...: skopeo's and crane's `oci-archive`) and
a Docker archive (manifest.json pointing at the same blobs: `docker load` of any version), as
Docker 25 and later write it themselves. Older engines (Debian's 20.10) write only the
Docker format, with each layer in a directory of its own. Layers stay uncompressed, as
`docker save` wrote them, and the digests are those of the config and layers as written,
so the image ID is unchanged. Entries are sorted, with zero times and owners, so the same
image gives the same archive.

`extract` writes the files under PATH of the image's final file system (layers applied in
order, whiteouts honoured) to DEST: how hack/release.sh reads the Python packages of the
image for its SBOM.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

OCI_LAYOUT = {"imageLayoutVersion": "1.0.0"}
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
# The tag alone, as the OCI image spec suggests; the full name for containerd and Docker.
REF_NAME = "org.opencontainers.image.ref.name"
IMAGE_NAME = "io.containerd.image.name"
WHITEOUT = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Blob:
    digest: str  # sha256:...
    size: int
    path: Path  # where its bytes are on disk

    @property
    def name(self) -> str:
        return "blobs/sha256/" + self.digest.removeprefix("sha256:")


def _blob(path: Path) -> Blob:
    sha = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(_CHUNK):
            sha.update(chunk)
    return Blob(f"sha256:{sha.hexdigest()}", path.stat().st_size, path)


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def _tag(ref: str) -> str:
    last = ref.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


def _safe_extract(archive: tarfile.TarFile, dest: Path) -> None:
    archive.extractall(dest, filter="data")


def from_docker(saved: Path, out: Path, ref: str) -> dict[str, Any]:
    """Write the OCI + Docker archive of the one image in `saved` (a `docker save` tar) to
    `out`; return the OCI manifest."""
    with tempfile.TemporaryDirectory(prefix="oci-archive-") as tmp:
        work = Path(tmp)
        with tarfile.open(saved) as archive:
            _safe_extract(archive, work / "saved")
        (entry,) = json.loads((work / "saved" / "manifest.json").read_text())
        config = _blob(work / "saved" / entry["Config"])
        layers = [_blob((work / "saved" / layer).resolve()) for layer in entry["Layers"]]
        image_config = json.loads(config.path.read_text())
        diff_ids = image_config.get("rootfs", {}).get("diff_ids", [])
        if diff_ids != [layer.digest for layer in layers]:
            raise ValueError("the saved layers are not those the image config lists")

        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {
                "mediaType": CONFIG_MEDIA_TYPE,
                "digest": config.digest,
                "size": config.size,
            },
            "layers": [
                {"mediaType": LAYER_MEDIA_TYPE, "digest": layer.digest, "size": layer.size}
                for layer in layers
            ],
        }
        manifest_path = work / "manifest"
        manifest_path.write_bytes(_json_bytes(manifest))
        manifest_blob = _blob(manifest_path)
        index = {
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [
                {
                    "mediaType": MANIFEST_MEDIA_TYPE,
                    "digest": manifest_blob.digest,
                    "size": manifest_blob.size,
                    "annotations": {REF_NAME: _tag(ref), IMAGE_NAME: ref},
                }
            ],
        }
        docker_manifest = [
            {
                "Config": config.name,
                "RepoTags": [ref],
                "Layers": [layer.name for layer in layers],
            }
        ]
        blobs = {blob.name: blob for blob in (config, manifest_blob, *layers)}
        files = {
            "oci-layout": _json_bytes(OCI_LAYOUT),
            "index.json": _json_bytes(index),
            "manifest.json": _json_bytes(docker_manifest),
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".partial")
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as archive:
            for directory in ("blobs", "blobs/sha256"):
                info = tarfile.TarInfo(directory)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                archive.addfile(info)
            for name in sorted(blobs):
                info = tarfile.TarInfo(name)
                info.size, info.mode = blobs[name].size, 0o644
                with blobs[name].path.open("rb") as source:
                    archive.addfile(info, source)
            for name in sorted(files):
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(files[name]), 0o644
                archive.addfile(info, io.BytesIO(files[name]))
        partial.replace(out)
        return manifest


def read_manifest(archive: tarfile.TarFile) -> dict[str, Any]:
    """The OCI manifest of the one image in an OCI archive."""
    index = json.load(archive.extractfile("index.json"))
    (descriptor,) = index["manifests"]
    digest = descriptor["digest"].removeprefix("sha256:")
    return json.load(archive.extractfile(f"blobs/sha256/{digest}"))


def extract(oci: Path, under: str, dest: Path) -> list[str]:
    """Write the files under `under` (a path in the image, e.g. "opt/venv/lib") of the image's
    final file system to `dest`; return their paths relative to `under`, sorted."""
    root = PurePosixPath(under.strip("/"))
    files: dict[PurePosixPath, tuple[str, str]] = {}  # path -> (layer digest, member name)
    with tarfile.open(oci) as archive:
        manifest = read_manifest(archive)
        for layer in manifest["layers"]:
            digest = layer["digest"].removeprefix("sha256:")
            hidden: list[PurePosixPath] = []  # what this layer hides of the layers below
            opaque: list[PurePosixPath] = []  # directories whose lower contents it hides
            added: dict[PurePosixPath, tuple[str, str]] = {}
            replaced: set[PurePosixPath] = set()  # paths this layer makes other than files
            with tarfile.open(fileobj=archive.extractfile(f"blobs/sha256/{digest}")) as tar:
                for member in tar:
                    path = PurePosixPath(member.name.removeprefix("./"))
                    if path.name == OPAQUE_WHITEOUT:
                        opaque.append(path.parent)
                    elif path.name.startswith(WHITEOUT):
                        hidden.append(path.with_name(path.name.removeprefix(WHITEOUT)))
                    elif member.isfile() and path.is_relative_to(root):
                        added[path] = (digest, member.name)
                    elif path.is_relative_to(root):
                        replaced.add(path)
            for known in list(files):
                if (
                    any(known.is_relative_to(d) and known != d for d in opaque)
                    or any(known.is_relative_to(h) for h in hidden)
                    or known in replaced
                ):
                    del files[known]
            files.update(added)
        by_layer: dict[str, dict[str, PurePosixPath]] = {}
        for path, (digest, member) in files.items():
            by_layer.setdefault(digest, {})[member] = path
        for digest, members in by_layer.items():
            with tarfile.open(fileobj=archive.extractfile(f"blobs/sha256/{digest}")) as tar:
                for member in tar:
                    if member.name in members:
                        target = dest / members[member.name].relative_to(root)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        with tar.extractfile(member) as source, target.open("wb") as sink:
                            shutil.copyfileobj(source, sink, _CHUNK)
    return sorted(str(path.relative_to(root)) for path in files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hack/oci_archive.py", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser("from-docker", help="docker save tar -> OCI + Docker archive")
    convert.add_argument("saved", type=Path)
    convert.add_argument("out", type=Path)
    convert.add_argument("--ref", required=True, help="the image's name, REPOSITORY:TAG")
    read = commands.add_parser("extract", help="files of the image's file system")
    read.add_argument("archive", type=Path)
    read.add_argument("path", help="a directory in the image, e.g. opt/venv/lib")
    read.add_argument("dest", type=Path)
    args = parser.parse_args(argv)
    if args.command == "from-docker":
        manifest = from_docker(args.saved, args.out, args.ref)
        print(
            f"{args.out}: {len(manifest['layers'])} layers, config {manifest['config']['digest']}"
        )
    else:
        found = extract(args.archive, args.path, args.dest)
        print(f"{args.dest}: {len(found)} files from {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
