"""hack/release.sh as a maintainer runs it: the chart package, the operator image as an OCI
archive, the SBOM of the image's Python packages, and checksums that verify.

The image is built by hack/build-image.sh, as tests/e2e/test_image.py builds it: Docker's
build cache and the downloads cached under ~/.cache/llmroute make a build after that test's
take seconds; a cold build (no cache) takes about 5 minutes on 2 cores. The module skips
where no Docker engine can run, as test_image.py does (see its docstring).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

import llmroute
from built_tools import require_tools
from llmroute.versions import LITELLM_VERSION
from localcluster import DockerEngine, tools

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

VERSION = llmroute.__version__
REPOSITORY = "registry.example/platform/llmroute"  # LLMROUTE_IMAGE_REPOSITORY
CHART_PACKAGE = f"llmroute-{VERSION}.tgz"
IMAGE_ARCHIVE = f"llmroute-image-{VERSION}.oci.tar"
SBOM = f"llmroute-image-{VERSION}.cdx.json"


@pytest.fixture(scope="module")
def dist(docker_engine: DockerEngine, tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tools("helm")
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        ["bash", "hack/release.sh", VERSION],
        cwd=tools.REPO_ROOT,
        env={**os.environ, "LLMROUTE_DIST_DIR": str(out), "LLMROUTE_IMAGE_REPOSITORY": REPOSITORY},
        capture_output=True,
        text=True,
        timeout=1700,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"hack/release.sh failed:\n{output[-6000:]}"
    print("\n".join(line for line in output.splitlines() if line.startswith("[")))
    return out


def test_the_artefacts_and_their_checksums(dist: Path) -> None:
    assert {p.name for p in dist.iterdir()} == {CHART_PACKAGE, IMAGE_ARCHIVE, SBOM, "SHA256SUMS"}
    listed = {}
    for line in (dist / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        listed[name] = digest
    assert listed == {
        name: hashlib.sha256((dist / name).read_bytes()).hexdigest()
        for name in (CHART_PACKAGE, IMAGE_ARCHIVE, SBOM)
    }
    # What a user runs to check a download.
    checked = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], cwd=dist, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_chart_package_is_this_version_of_the_chart(dist: Path, tmp_path: Path) -> None:
    helm = str(tools.binary("helm"))
    env = {**os.environ, "HELM_CACHE_HOME": str(tmp_path), "HELM_CONFIG_HOME": str(tmp_path)}
    shown = subprocess.run(
        [helm, "show", "chart", str(dist / CHART_PACKAGE)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    chart = yaml.safe_load(shown.stdout)
    assert (chart["name"], chart["version"], chart["appVersion"]) == ("llmroute", VERSION, VERSION)
    rendered = subprocess.run(
        [helm, "template", "rel", str(dist / CHART_PACKAGE), "--include-crds"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    kinds = [doc["kind"] for doc in yaml.safe_load_all(rendered) if doc]
    assert "Deployment" in kinds and kinds.count("CustomResourceDefinition") >= 2


def test_the_image_archive_is_the_operator_image(dist: Path) -> None:
    with tarfile.open(dist / IMAGE_ARCHIVE) as archive:
        index = json.load(archive.extractfile("index.json"))
        (descriptor,) = index["manifests"]
        assert descriptor["annotations"]["io.containerd.image.name"] == f"{REPOSITORY}:{VERSION}"
        manifest = json.load(archive.extractfile(f"blobs/sha256/{descriptor['digest'][7:]}"))
        config = json.load(archive.extractfile(f"blobs/sha256/{manifest['config']['digest'][7:]}"))[
            "config"
        ]
    assert config["Labels"]["org.opencontainers.image.version"] == VERSION
    assert config["Entrypoint"] == ["llmroute"]
    assert config["User"] == "10001:10001"


def test_docker_loads_the_image_archive_and_runs_it(dist: Path) -> None:
    image = f"{REPOSITORY}:{VERSION}"
    subprocess.run(["docker", "rmi", "--force", image], capture_output=True, check=False)
    loaded = subprocess.run(
        ["docker", "load", "--input", str(dist / IMAGE_ARCHIVE)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert image in loaded.stdout
    ran = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", image, "--version"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert VERSION in ran.stdout


def test_the_sbom_lists_the_images_python_packages(dist: Path) -> None:
    bom = json.loads((dist / SBOM).read_text())
    assert (bom["bomFormat"], bom["specVersion"]) == ("CycloneDX", "1.6")
    root = bom["metadata"]["component"]
    assert (root["name"], root["version"]) == ("llmroute", VERSION)
    packages = {re.sub(r"[-_.]+", "-", c["name"]).lower(): c for c in bom["components"]}
    litellm = packages["litellm"]
    assert litellm["version"] == LITELLM_VERSION
    assert litellm["purl"] == f"pkg:pypi/litellm@{LITELLM_VERSION}"
    # The operator's other dependencies, from the image rather than from this machine.
    assert {"kopf", "kubernetes", "prometheus-client", "pyyaml", "click"} <= set(packages)
    assert "pytest" not in packages and "hypothesis" not in packages
