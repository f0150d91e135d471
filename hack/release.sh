#!/usr/bin/env bash
# The release artefacts of one version, in dist/ (LLMROUTE_DIST_DIR):
#
#   bash hack/release.sh VERSION
#
#   llmroute-VERSION.tgz                the Helm chart (helm package)
#   llmroute-image-VERSION.oci.tar      the operator image: an OCI image layout archive that
#                                       `docker load` reads as well (hack/oci_archive.py)
#   llmroute-image-VERSION.cdx.json     a CycloneDX SBOM of the Python packages in the image
#   SHA256SUMS                          the SHA-256 of the three (`sha256sum -c SHA256SUMS`)
#
# VERSION is the version of the package, the chart and the image, which move together
# (operator/llmroute/__init__.py, charts/llmroute/Chart.yaml, the Dockerfile's VERSION): bump
# them first. The image is built by hack/build-image.sh (offline where no registry answers)
# and named REPOSITORY:VERSION, REPOSITORY being the chart's image.repository unless
# LLMROUTE_IMAGE_REPOSITORY says otherwise. helm is the pinned one hack/build-tools.sh
# builds; cyclonedx-bom (version in hack/versions.env) is installed into a virtual
# environment of its own under ~/.cache/llmroute/tools (LLMROUTE_CACHE_DIR).
# docs/release.md says how to publish the artefacts and install from a registry.
set -euo pipefail
if [[ ${1:-} == -h || ${1:-} == --help || $# -ne 1 ]]; then
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
  [[ $# -eq 1 ]] && exit 0 || exit 2
fi
VERSION=$1
DIST=$(realpath -m "${LLMROUTE_DIST_DIR:-$(dirname "${BASH_SOURCE[0]}")/../dist}")
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CACHE=${LLMROUTE_CACHE_DIR:-$HOME/.cache/llmroute}
# shellcheck source=versions.env
source hack/versions.env

say() { printf '[release] %s\n' "$*" >&2; }
die() {
  say "ERROR: $*"
  exit 1
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/llmroute-release.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

bash hack/setup-venv.sh
PYTHON=$PWD/.venv/bin/python

# -- the version -----------------------------------------------------------------------------

[[ $VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$ ]] ||
  die "VERSION must be a semantic version such as 1.2.3, not '$VERSION'"
read -r PACKAGE_VERSION CHART_VERSION APP_VERSION REPOSITORY < <(
  "$PYTHON" -c '
import re, yaml
package = re.search(r"__version__ = \"([^\"]+)\"", open("operator/llmroute/__init__.py").read())
chart = yaml.safe_load(open("charts/llmroute/Chart.yaml"))
values = yaml.safe_load(open("charts/llmroute/values.yaml"))
print(package.group(1), chart["version"], chart["appVersion"], values["image"]["repository"])'
)
for pair in "package:$PACKAGE_VERSION" "chart version:$CHART_VERSION" "chart appVersion:$APP_VERSION"; do
  [[ ${pair##*:} == "$VERSION" ]] ||
    die "the ${pair%:*} is ${pair##*:}, not $VERSION: bump the versions first (docs/release.md)"
done
REPOSITORY=${LLMROUTE_IMAGE_REPOSITORY:-$REPOSITORY}
IMAGE=$REPOSITORY:$VERSION
CHART_PACKAGE=llmroute-$VERSION.tgz
IMAGE_ARCHIVE=llmroute-image-$VERSION.oci.tar
SBOM=llmroute-image-$VERSION.cdx.json
mkdir -p "$DIST"
rm -f "$DIST/$CHART_PACKAGE" "$DIST/$IMAGE_ARCHIVE" "$DIST/$SBOM" "$DIST/SHA256SUMS"

# -- the chart -------------------------------------------------------------------------------

HELM=$(PYTHONPATH=hack "$PYTHON" -c 'from localcluster import tools; print(tools.binary("helm"))')
[[ -x $HELM ]] || die "helm $HELM_VERSION is not built: bash hack/build-tools.sh"
say "chart: helm lint --strict and helm package"
"$HELM" lint --strict charts/llmroute >"$WORK/lint.log" 2>&1 || {
  cat "$WORK/lint.log" >&2
  die "helm lint failed"
}
"$HELM" package charts/llmroute --destination "$DIST" >/dev/null
[[ -f $DIST/$CHART_PACKAGE ]] || die "helm package wrote no $CHART_PACKAGE"

# -- the image -------------------------------------------------------------------------------

say "image: $IMAGE"
PYTHON=$PYTHON bash hack/build-image.sh --save "$WORK/image.docker.tar" "$IMAGE"
"$PYTHON" hack/oci_archive.py from-docker "$WORK/image.docker.tar" "$DIST/$IMAGE_ARCHIVE" \
  --ref "$IMAGE" >&2
rm -f "$WORK/image.docker.tar"

# -- the SBOM: the Python packages in the image, read from the archive itself ------------------

CYCLONEDX=$CACHE/tools/cyclonedx-bom-$CYCLONEDX_BOM_VERSION
if [[ ! -e $CYCLONEDX/.complete ]]; then
  say "sbom: installing cyclonedx-bom $CYCLONEDX_BOM_VERSION into $CYCLONEDX"
  rm -rf "$CYCLONEDX"
  "$PYTHON" -m venv "$CYCLONEDX"
  "$CYCLONEDX/bin/pip" install --quiet --disable-pip-version-check \
    "cyclonedx-bom==$CYCLONEDX_BOM_VERSION" || die "pip install cyclonedx-bom failed"
  touch "$CYCLONEDX/.complete"
fi
# The image's virtual environment is where its PATH starts (the Dockerfile's /opt/venv).
VENV_DIR=$("$PYTHON" -c '
import json, sys, tarfile
sys.path.insert(0, "hack")
import oci_archive
with tarfile.open(sys.argv[1]) as archive:
    digest = oci_archive.read_manifest(archive)["config"]["digest"].removeprefix("sha256:")
    config = json.load(archive.extractfile(f"blobs/sha256/{digest}"))["config"]
path = next(e.split("=", 1)[1] for e in config["Env"] if e.startswith("PATH="))
print(path.split(":")[0].removesuffix("/bin"))' "$DIST/$IMAGE_ARCHIVE")
say "sbom: the packages in $VENV_DIR of the image"
"$PYTHON" hack/oci_archive.py extract "$DIST/$IMAGE_ARCHIVE" "$VENV_DIR/lib" "$WORK/image-lib" >&2
SITE_PACKAGES=$(find "$WORK/image-lib" -mindepth 2 -maxdepth 2 -type d -name site-packages)
[[ $(wc -l <<<"$SITE_PACKAGES") -eq 1 && -d $SITE_PACKAGES ]] ||
  die "no single site-packages in $VENV_DIR/lib of the image"
# An empty environment on this machine whose path is the image's site-packages: cyclonedx-py
# reads the installed distributions' metadata from there, nothing of this machine's.
"$PYTHON" -m venv --without-pip "$WORK/image-env"
"$WORK/image-env/bin/python" -c 'import sys, sysconfig
open(sysconfig.get_path("purelib") + "/image.pth", "w").write(sys.argv[1] + "\n")' "$SITE_PACKAGES"
"$CYCLONEDX/bin/cyclonedx-py" environment "$WORK/image-env" \
  --pyproject pyproject.toml --mc-type application --spec-version 1.6 --output-format JSON \
  --output-reproducible --output-file "$WORK/sbom.json" ||
  die "cyclonedx-py failed"
# The root component's version is dynamic in pyproject.toml, which cyclonedx-py does not read.
"$PYTHON" -c 'import json, sys
source, out, version = sys.argv[1:]
bom = json.load(open(source))
bom["metadata"]["component"]["version"] = version
with open(out, "w") as sink:
    json.dump(bom, sink, indent=2)
    sink.write("\n")' "$WORK/sbom.json" "$DIST/$SBOM" "$VERSION"

# -- checksums -------------------------------------------------------------------------------

(cd "$DIST" && sha256sum "$CHART_PACKAGE" "$IMAGE_ARCHIVE" "$SBOM" >SHA256SUMS)
say "done: $DIST"
(cd "$DIST" && ls -l "$CHART_PACKAGE" "$IMAGE_ARCHIVE" "$SBOM" SHA256SUMS >&2)
