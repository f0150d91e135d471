"""hack/oci_archive.py: a `docker save` tar becomes an archive that is both an OCI image layout
and a Docker archive; files are read back from the image's final file system."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

import oci_archive

REF = "registry.example/team/llmroute:1.2.3"


def tar_bytes(entries: dict[str, bytes | None]) -> bytes:
    """A tar of files (bytes) and directories (None), in the given order."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            else:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


LOWER = tar_bytes(
    {
        "opt/venv/lib/": None,
        "opt/venv/lib/a.txt": b"lower a",
        "opt/venv/lib/old/x.txt": b"x",
        "opt/venv/lib/sub/y.txt": b"y",
        "etc/hostname": b"elsewhere",
    }
)
UPPER = tar_bytes(
    {
        "opt/venv/lib/a.txt": b"upper a",
        "opt/venv/lib/.wh.old": b"",
        "opt/venv/lib/sub/z.txt": b"z",  # before the opaque marker, in the same layer
        "opt/venv/lib/sub/.wh..wh..opq": b"",
    }
)


def docker_save(path: Path, layers: list[bytes], diff_ids: list[str] | None = None) -> Path:
    """What `docker save` of a 20.10 engine writes: a directory per layer."""
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids or [sha256(x) for x in layers]},
        }
    ).encode()
    config_name = sha256(config).removeprefix("sha256:") + ".json"
    entries: dict[str, bytes | None] = {config_name: config}
    names = []
    for i, layer in enumerate(layers):
        entries[f"layer{i}/"] = None
        entries[f"layer{i}/layer.tar"] = layer
        names.append(f"layer{i}/layer.tar")
    manifest = [{"Config": config_name, "RepoTags": ["llmroute:dev"], "Layers": names}]
    entries["manifest.json"] = json.dumps(manifest).encode()
    path.write_bytes(tar_bytes(entries))
    return path


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    saved = docker_save(tmp_path / "saved.tar", [LOWER, UPPER])
    out = tmp_path / "image.oci.tar"
    oci_archive.from_docker(saved, out, REF)
    return out


def read(archive: Path, name: str) -> bytes:
    with tarfile.open(archive) as tar:
        return tar.extractfile(name).read()


def test_the_archive_is_an_oci_image_layout(archive: Path) -> None:
    assert json.loads(read(archive, "oci-layout")) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(read(archive, "index.json"))
    (descriptor,) = index["manifests"]
    assert descriptor["annotations"] == {
        "org.opencontainers.image.ref.name": "1.2.3",
        "io.containerd.image.name": REF,
    }
    manifest_bytes = read(archive, f"blobs/sha256/{descriptor['digest'][7:]}")
    assert sha256(manifest_bytes) == descriptor["digest"]
    assert len(manifest_bytes) == descriptor["size"]
    manifest = json.loads(manifest_bytes)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert [layer["digest"] for layer in manifest["layers"]] == [sha256(LOWER), sha256(UPPER)]
    for descriptor in [manifest["config"], *manifest["layers"]]:
        blob = read(archive, f"blobs/sha256/{descriptor['digest'][7:]}")
        assert (sha256(blob), len(blob)) == (descriptor["digest"], descriptor["size"])


def test_the_archive_is_a_docker_archive_of_the_same_blobs(archive: Path) -> None:
    (entry,) = json.loads(read(archive, "manifest.json"))
    assert entry["RepoTags"] == [REF]
    assert read(archive, entry["Layers"][1]) == UPPER
    config = json.loads(read(archive, entry["Config"]))
    assert config["rootfs"]["diff_ids"] == [sha256(LOWER), sha256(UPPER)]


def test_the_same_image_gives_the_same_archive(archive: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.oci.tar"
    oci_archive.from_docker(docker_save(tmp_path / "saved2.tar", [LOWER, UPPER]), again, REF)
    assert again.read_bytes() == archive.read_bytes()


def test_layers_that_are_not_the_configs_are_refused(tmp_path: Path) -> None:
    saved = docker_save(tmp_path / "saved.tar", [LOWER], diff_ids=[sha256(UPPER)])
    with pytest.raises(ValueError, match="not those the image config lists"):
        oci_archive.from_docker(saved, tmp_path / "out.tar", REF)


def test_extract_reads_the_final_file_system(archive: Path, tmp_path: Path) -> None:
    dest = tmp_path / "lib"
    found = oci_archive.extract(archive, "/opt/venv/lib", dest)
    # The upper layer replaced a.txt, hid old/ and made sub/ opaque (its own z.txt stays).
    assert found == ["a.txt", "sub/z.txt"]
    assert (dest / "a.txt").read_bytes() == b"upper a"
    assert (dest / "sub" / "z.txt").read_bytes() == b"z"
    assert not (dest / "old").exists() and not (dest / "sub" / "y.txt").exists()
