#!/usr/bin/env bash
# Build the operator image from the Dockerfile, also on a machine that reaches no container
# registry:
#
#   bash hack/build-image.sh [--save FILE] [TAG]      # default llmroute:dev
#
# --save FILE: also write the image to FILE with `docker save` (what hack/release.sh
# packages), while the engine still runs.
#
# 1. Docker: when no engine answers, start dockerd (installing Debian's docker.io first if it
#    is missing) and stop it again at the end.
# 2. The base image (the Dockerfile's FROM): used when present, else pulled; when no registry
#    answers, a stand-in is made: a Debian of the same release with its python3, made with
#    debootstrap from the mirror apt uses, and imported under the same name.
# 3. Wheels of every dependency, downloaded on this machine with pip into wheels/ of the build
#    context; the build then runs with `--network none`. wheels/ is removed afterwards.
# 4. docker build, then the image size and the time taken.
#
# Downloads are cached under ~/.cache/llmroute (LLMROUTE_CACHE_DIR): the debootstrap tarball
# and the wheels (keyed by pyproject.toml), so a second run only repeats the cached build.
# Environment: PYTHON (the pip that downloads the wheels; default .venv/bin/python, else
# python3), LLMROUTE_PULL_TIMEOUT (seconds for `docker pull`, default 30).
set -euo pipefail
if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
  exit 0
fi
SAVE=
if [[ ${1:-} == --save ]]; then
  [[ -n ${2:-} ]] || { echo "--save needs a file name" >&2; exit 2; }
  SAVE=$(realpath -m "$2")
  shift 2
fi
TAG=${1:-llmroute:dev}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
CACHE=${LLMROUTE_CACHE_DIR:-$HOME/.cache/llmroute}
PULL_TIMEOUT=${LLMROUTE_PULL_TIMEOUT:-30}
if [[ -z ${PYTHON:-} ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
# What the stand-in base holds: the Dockerfile needs `python -m venv` (ensurepip) and TLS roots.
STANDIN_PACKAGES=python3,python3-venv,ca-certificates
WHEELS_MARK=.llmroute-build-image

say() { printf '[build-image] %s\n' "$*" >&2; }
die() {
  say "ERROR: $*"
  exit 1
}
elapsed() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }
as_root() { [[ $(id -u) -eq 0 ]]; }

apt_install() {
  as_root || die "$1 is missing and installing it needs root: apt-get install $1"
  command -v apt-get >/dev/null || die "$1 is missing and this machine has no apt-get"
  if [[ -z ${APT_UPDATED:-} ]]; then
    apt-get update -qq || die "apt-get update failed"
    APT_UPDATED=1
  fi
  say "installing $1 with apt-get"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null ||
    die "apt-get install $1 failed"
}

# -- cleanup: leave the machine as it was found ----------------------------------------------

DOCKERD_PID=
CONTEXT_WHEELS=
TMP_ROOTFS=
cleanup() {
  local status=$?
  if [[ -n $CONTEXT_WHEELS ]]; then rm -rf "$CONTEXT_WHEELS"; fi
  if [[ -n $TMP_ROOTFS ]]; then rm -rf "$TMP_ROOTFS"; fi
  if [[ -n $DOCKERD_PID ]]; then
    say "stopping the dockerd this script started (pid $DOCKERD_PID)"
    kill -TERM "$DOCKERD_PID" 2>/dev/null || true
    # dockerd stops its containerd before it exits.
    for _ in $(seq 60); do
      kill -0 "$DOCKERD_PID" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$DOCKERD_PID" 2>/dev/null; then
      say "dockerd ignored SIGTERM for 30s; killing it"
      kill -KILL "$DOCKERD_PID" 2>/dev/null || true
    fi
    wait "$DOCKERD_PID" 2>/dev/null || true
  fi
  if [[ $status -ne 0 ]]; then say "failed (exit status $status)"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# -- 1. a Docker engine ----------------------------------------------------------------------

ensure_docker() {
  if docker info >/dev/null 2>&1; then
    say "Docker engine: answering already"
    return
  fi
  if ! as_root; then
    die "no Docker engine answers (docker info) and starting dockerd needs root; start Docker or give this user access to it"
  fi
  command -v dockerd >/dev/null || apt_install docker.io
  command -v docker >/dev/null || die "dockerd is installed but the docker client is not"
  local logdir=$CACHE/docker
  mkdir -p "$logdir"
  say "Docker engine: starting dockerd (log: $logdir/dockerd.log)"
  # A session of its own: a Ctrl-C reaches this script, whose trap then stops dockerd in order.
  setsid dockerd >"$logdir/dockerd.log" 2>&1 </dev/null &
  DOCKERD_PID=$!
  for _ in $(seq 120); do
    docker info >/dev/null 2>&1 && return
    if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then
      wait "$DOCKERD_PID" 2>/dev/null || true
      DOCKERD_PID=
      die "dockerd exited at start; this machine cannot run it. Last lines of $logdir/dockerd.log:
$(tail -n 15 "$logdir/dockerd.log")"
    fi
    sleep 0.5
  done
  die "dockerd did not answer within 60s; see $logdir/dockerd.log"
}

# -- 2. the base image -----------------------------------------------------------------------

# The first FROM of the Dockerfile that names an image rather than an earlier stage.
dockerfile_base() {
  awk '
    toupper($1) == "FROM" {
      image = ""
      for (i = 2; i <= NF; i++) if ($i !~ /^--/) { image = $i; break }
      if (!(image in stages)) { print image; exit }
    }
    toupper($1) == "FROM" && toupper($(NF - 1)) == "AS" { stages[$NF] = 1 }
  ' Dockerfile
}

# The Debian mirror apt uses for SUITE: deb822 .sources first, then one-line .list files.
apt_mirror() {
  local suite=$1 file found=
  for file in /etc/apt/sources.list.d/*.sources; do
    [[ -r $file ]] || continue
    found=$(awk -v suite="$suite" '
      BEGIN { RS = ""; FS = "\n" }
      {
        uris = ""; suites = ""; types = ""; enabled = "yes"
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^[ \t]*#/) continue
          c = index($i, ":"); if (!c) continue
          key = tolower(substr($i, 1, c - 1)); value = substr($i, c + 1)
          if (key == "uris") uris = value
          else if (key == "suites") suites = value
          else if (key == "types") types = value
          else if (key == "enabled") enabled = tolower(value)
        }
        if (types !~ /(^|[ \t])deb([ \t]|$)/ || enabled ~ /no/) next
        n = split(suites, s, /[ \t]+/)
        for (j = 1; j <= n; j++) if (s[j] == suite) {
          m = split(uris, u, /[ \t]+/)
          for (k = 1; k <= m; k++) if (u[k] != "") { print u[k]; exit }
        }
      }' "$file")
    [[ -n $found ]] && break
  done
  if [[ -z $found ]]; then
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [[ -r $file ]] || continue
      found=$(awk -v suite="$suite" '
        $1 == "deb" {
          i = 2
          if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
          if ($(i + 1) == suite) { print $i; exit }
        }' "$file")
      [[ -n $found ]] && break
    done
  fi
  echo "${found:-http://deb.debian.org/debian}"
}

# python:3.11-slim-bookworm -> a Debian bookworm with its python3 (3.11), imported under that
# name. Only images of the official python family have a stand-in.
make_standin() {
  local base=$1 tag suite want tarball mirror have
  tag=${base#python:}
  [[ $base == python:* && $tag =~ ^([0-9]+\.[0-9]+)(\.[0-9]+)?-(slim-)?([a-z]+)$ ]] ||
    die "$base is not available to Docker and cannot be pulled; load it (docker load) or give Docker registry access"
  want=${BASH_REMATCH[1]}
  suite=${BASH_REMATCH[4]}
  tarball=$CACHE/base/debian-$suite-minbase-python3.tar
  if [[ -s $tarball ]]; then
    say "stand-in base: cached $tarball"
  else
    as_root || die "making the stand-in base with debootstrap needs root"
    command -v debootstrap >/dev/null || apt_install debootstrap
    mirror=$(apt_mirror "$suite")
    mkdir -p "$CACHE/base"
    TMP_ROOTFS=$(mktemp -d "$CACHE/base/rootfs.XXXXXX")
    say "stand-in base: debootstrap $suite from $mirror (about 1-2 min)"
    local started=$SECONDS
    debootstrap --variant=minbase --include="$STANDIN_PACKAGES" \
      "$suite" "$TMP_ROOTFS/root" "$mirror" >"$CACHE/base/debootstrap.log" 2>&1 ||
      die "debootstrap failed; see $CACHE/base/debootstrap.log"
    ln -sf python3 "$TMP_ROOTFS/root/usr/bin/python"
    # Package caches are no part of an image.
    rm -rf "$TMP_ROOTFS"/root/var/cache/apt/archives/*.deb "$TMP_ROOTFS"/root/var/lib/apt/lists/*
    have=$(chroot "$TMP_ROOTFS/root" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    [[ $have == "$want" ]] ||
      die "Debian $suite has Python $have, but $base needs $want: no stand-in possible"
    tar -C "$TMP_ROOTFS/root" --numeric-owner -cf "$TMP_ROOTFS/rootfs.tar" .
    mv "$TMP_ROOTFS/rootfs.tar" "$tarball"
    rm -rf "$TMP_ROOTFS"
    TMP_ROOTFS=
    say "stand-in base: made in $(elapsed $((SECONDS - started)))"
  fi
  # The same environment as the official image where the Dockerfile could notice.
  docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --change "LABEL dev.llmroute.stand-in=debian-$suite-minbase" \
    "$tarball" "$base" >/dev/null || die "docker import of $tarball failed"
  say "stand-in base: imported as $base"
}

ensure_base() {
  local base=$1
  if docker image inspect "$base" >/dev/null 2>&1; then
    say "base image: $base present"
    return
  fi
  say "base image: pulling $base (timeout ${PULL_TIMEOUT}s)"
  if timeout "$PULL_TIMEOUT" docker pull -q "$base" >/dev/null 2>&1; then
    say "base image: pulled $base"
    return
  fi
  say "base image: $base cannot be pulled; making a stand-in"
  make_standin "$base"
}

# -- 3. wheels -------------------------------------------------------------------------------

# What the Dockerfile installs: the dependencies, the operator's (the extra `operator`) and
# the build backend.
requirements() {
  "$PYTHON" -c 'import tomllib
pyproject = tomllib.load(open("pyproject.toml", "rb"))
project = pyproject["project"]
print("\n".join(
    project["dependencies"]
    + project["optional-dependencies"]["operator"]
    + pyproject["build-system"]["requires"]
))'
}

# pip evaluates environment markers for the Python that runs it, whatever --python-version
# says; so pip in the base image itself resolves offline against the wheels, and whatever it
# misses (say `async-timeout; python_full_version < "3.11.3"` for an older patch release) is
# downloaded too.
resolve_in_base() {
  local base=$1 wheels=$2
  docker run --rm --network none --user 0 -v "$wheels:/wheels:ro" "$base" sh -c '
    python -m venv /tmp/venv >/dev/null &&
    /tmp/venv/bin/pip install --disable-pip-version-check --dry-run --quiet \
      --no-index --find-links /wheels --requirement /wheels/requirements.txt' 2>&1
}

ensure_wheels() {
  local base=$1 key dir base_py host_py pick=() missing attempt out
  base_py=$(docker run --rm --network none "$base" python -c \
    'import platform; print(platform.python_version())') ||
    die "cannot run python in $base"
  key=$(sha256sum <pyproject.toml | cut -c1-16)-py${base_py%.*}
  dir=$CACHE/wheels/$key
  host_py=$("$PYTHON" -c 'import platform; print(platform.python_version())')
  # Wheels for the base's Python minor version, whatever runs pip here.
  if [[ ${base_py%.*} != "${host_py%.*}" ]]; then
    pick=(--only-binary=:all: --python-version "${base_py%.*}")
  fi
  if [[ ! -e $dir/.complete ]]; then
    say "wheels: downloading into $dir (Python $base_py)"
    mkdir -p "$CACHE/wheels"
    rm -rf "$dir.partial"
    requirements >"$CACHE/wheels/$key.requirements.txt"
    "$PYTHON" -m pip download --quiet --disable-pip-version-check "${pick[@]}" \
      --dest "$dir.partial" --requirement "$CACHE/wheels/$key.requirements.txt" ||
      die "pip download failed"
    mv "$CACHE/wheels/$key.requirements.txt" "$dir.partial/requirements.txt"
    # One set of wheels per Python version: those of an older pyproject.toml go.
    find "$CACHE/wheels" -mindepth 1 -maxdepth 1 -type d -name "*-py${base_py%.*}" \
      -exec rm -rf {} +
    mv "$dir.partial" "$dir"
    touch "$dir/.complete"
  else
    say "wheels: cached in $dir"
  fi
  if [[ ! -e $dir/.resolves-$base_py ]]; then
    for attempt in 1 2 3 4; do
      if out=$(resolve_in_base "$base" "$dir"); then
        touch "$dir/.resolves-$base_py"
        break
      fi
      missing=$(sed -n 's/.*No matching distribution found for \([^; ]*\).*/\1/p' <<<"$out")
      if [[ -z $missing || $attempt -eq 4 ]]; then
        die "the wheels in $dir do not install on Python $base_py:
$out"
      fi
      say "wheels: Python $base_py also needs $missing"
      "$PYTHON" -m pip download --quiet --disable-pip-version-check "${pick[@]}" \
        --dest "$dir" "$missing" || die "pip download $missing failed"
    done
  fi
  say "wheels: $(find "$dir" -name '*.whl' | wc -l) wheels, $(du -sh "$dir" | cut -f1)"
  WHEELS_DIR=$dir
}

stage_wheels() {
  local dir=$1
  if [[ -e wheels ]]; then
    # A wheels/ of an earlier run that did not finish is replaced; anyone else's is kept.
    [[ -e wheels/$WHEELS_MARK ]] ||
      die "wheels/ exists in the build context and was not made by this script; move it away"
    rm -rf wheels
  fi
  CONTEXT_WHEELS=$REPO/wheels
  mkdir wheels
  : >"wheels/$WHEELS_MARK"
  # Hard links where the cache shares the file system, copies elsewhere.
  cp -l "$dir"/*.whl wheels/ 2>/dev/null || cp "$dir"/*.whl wheels/
}

# -- main ------------------------------------------------------------------------------------

START=$SECONDS
[[ -f Dockerfile ]] || die "no Dockerfile in $REPO"
command -v docker >/dev/null || apt_install docker.io
BASE=$(dockerfile_base)
[[ -n $BASE ]] || die "no base image found in the Dockerfile"
"$PYTHON" -m pip --version >/dev/null 2>&1 ||
  die "$PYTHON has no pip to download the wheels with: run bash hack/setup-venv.sh, or set PYTHON"

ensure_docker
ensure_base "$BASE"
ensure_wheels "$BASE"
stage_wheels "$WHEELS_DIR"
PREPARED=$SECONDS

say "docker build --network none -t $TAG ."
docker build --network none --tag "$TAG" . || die "docker build failed"
BUILT=$SECONDS

SIZE=$(docker image inspect --format '{{.Size}}' "$TAG")
say "built $TAG: $((SIZE / 1000000)) MB; docker build $(elapsed $((BUILT - PREPARED))), in all $(elapsed $((BUILT - START)))"
if [[ -n $SAVE ]]; then
  mkdir -p "$(dirname "$SAVE")"
  docker save --output "$SAVE" "$TAG" || die "docker save $TAG failed"
  say "saved $TAG to $SAVE"
fi
