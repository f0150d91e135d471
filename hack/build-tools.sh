#!/usr/bin/env bash
# Builds the pinned control-plane tools (kube-apiserver, kube-controller-manager,
# kube-scheduler, kube-proxy, kubectl, etcd, helm, kwok, kube-router), the Ollama server and
# Prometheus (with promtool) from the Go module proxy, and fetches the Gateway API CRDs.
#
# Binaries are cached outside the checkout, keyed by version:
#   ${LLMROUTE_TOOLS_DIR:-~/.cache/llmroute/bin}/<version>/<binary>
# so a second run only checks that they are there.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

tools_dir=${LLMROUTE_TOOLS_DIR:-$HOME/.cache/llmroute/bin}
work_dir=${LLMROUTE_BUILD_DIR:-$HOME/.cache/llmroute/build}
export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0

log() { printf '[build-tools] %s\n' "$*" >&2; }

have() { # have <version dir> <binary>...
  local dir=$1; shift
  for b in "$@"; do [[ -x "$tools_dir/$dir/$b" ]] || return 1; done
}

build_kubernetes() {
  local v=$KUBERNETES_VERSION dir="$tools_dir/kubernetes-$KUBERNETES_VERSION"
  local bins=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl)
  if have "kubernetes-$v" "${bins[@]}"; then log "kubernetes $v: cached"; return; fi
  local minor=${v#v1.}; minor=${minor%%.*}
  local staging_version="v0.${v#v1.}"
  local mod="$work_dir/kubernetes-$v"
  mkdir -p "$mod" "$dir"
  # k8s.io/kubernetes replaces every staging module with ./staging/...; a
  # wrapper module pins each of them to its published v0.Y.Z twin instead.
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$v" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  {
    echo "module llmroute.dev/tools/kubernetes"
    echo "go $(go env GOVERSION | sed 's/^go//; s/\.[0-9]*$//')"
    echo "require k8s.io/kubernetes $v"
    grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$gomod" |
      awk -v sv="$staging_version" '{print "replace " $1 " => " $1 " " sv}'
  } >"$mod/go.mod"
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$v \
    -X k8s.io/component-base/version.gitMajor=1 \
    -X k8s.io/component-base/version.gitMinor=$minor \
    -X k8s.io/client-go/pkg/version.gitVersion=$v \
    -X k8s.io/client-go/pkg/version.gitMajor=1 \
    -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  for b in "${bins[@]}"; do
    # Only what is missing: a binary added to the list later does not rebuild the rest.
    if have "kubernetes-$v" "$b"; then log "kubernetes $v: $b cached"; continue; fi
    log "kubernetes $v: building $b (the first build takes several minutes)"
    (cd "$mod" && go build -ldflags "$ldflags" -o "$dir/$b.tmp" "k8s.io/kubernetes/cmd/$b")
    mv "$dir/$b.tmp" "$dir/$b"
  done
}

build_etcd() {
  local v=$ETCD_VERSION dir="$tools_dir/etcd-$ETCD_VERSION"
  if have "etcd-$v" etcd; then log "etcd $v: cached"; return; fi
  local mod="$work_dir/etcd-$v"
  mkdir -p "$mod" "$dir"
  cat >"$mod/go.mod" <<GOMOD
module llmroute.dev/tools/etcd
go $(go env GOVERSION | sed 's/^go//; s/\.[0-9]*$//')
require go.etcd.io/etcd/server/v3 $v
GOMOD
  cat >"$mod/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  log "etcd $v: building"
  (cd "$mod" && go build -ldflags "-s -w" -o "$dir/etcd.tmp" .)
  mv "$dir/etcd.tmp" "$dir/etcd"
}

go_install() { # go_install <name> <version> <package> [ldflags]
  local name=$1 v=$2 pkg=$3 ldflags=${4:-}
  local dir="$tools_dir/$name-$v"
  if have "$name-$v" "$name"; then log "$name $v: cached"; return; fi
  mkdir -p "$dir"
  log "$name $v: building"
  GOBIN="$dir" go install -ldflags "-s -w $ldflags" "$pkg@$v"
}

kwok_stages() {
  # kwok refuses to start without stages; its module ships them.
  local out="$tools_dir/kwok-$KWOK_VERSION/stages.yaml"
  [[ -s "$out" ]] && return 0
  local src stage
  src=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  for stage in "$src"/kustomize/stage/node/fast/node-initialize.yaml \
    "$src"/kustomize/stage/node/heartbeat/node-heartbeat.yaml \
    "$src"/kustomize/stage/pod/fast/*.yaml; do
    printf -- '---\n'
    cat "$stage"
  done >"$out.tmp"
  mv "$out.tmp" "$out"
}

gateway_api_crds() {
  # Not a binary: the Gateway API's CRDs (standard channel), which the e2e tests of
  # spec.expose install. Its module ships them; only the CustomResourceDefinitions are kept
  # (the channel's ValidatingAdmissionPolicy is for upgrades of real clusters).
  local v=$GATEWAY_API_VERSION dir="$tools_dir/gateway-api-$GATEWAY_API_VERSION"
  if compgen -G "$dir/*.yaml" >/dev/null; then log "gateway-api $v CRDs: cached"; return; fi
  local src f
  src=$(go mod download -json "sigs.k8s.io/gateway-api@$v" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  mkdir -p "$dir.tmp"
  for f in "$src"/config/crd/standard/*.yaml; do
    if grep -q '^kind: CustomResourceDefinition' "$f"; then cp "$f" "$dir.tmp/"; fi
  done
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
  log "gateway-api $v CRDs: $(ls "$dir" | wc -l) files"
}

# Debian packages the tools need: headers for the Ollama build, the pod network's commands.
ensure_apt_packages() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  command -v apt-get >/dev/null || { log "install ${missing[*]} (Debian/Ubuntu package names)"; exit 1; }
  local sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  log "installing ${missing[*]} with apt-get"
  "${sudo[@]}" apt-get update -qq >&2
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

build_ollama() {
  local v=$OLLAMA_VERSION dir="$tools_dir/ollama-$OLLAMA_VERSION"
  if have "ollama-$v" ollama; then log "ollama $v: cached"; return; fi
  # Go module zips drop vendor/ directories, and llama.cpp (inside Ollama's module) includes
  # three headers from its vendor/: nlohmann/json.hpp and stb_image.h come from Debian,
  # miniaudio.h from the sdist of the PyPI package that bundles it.
  ensure_apt_packages g++ nlohmann-json3-dev libstb-dev
  local headers="$work_dir/ollama-headers"
  if [[ ! -s "$headers/miniaudio/miniaudio.h" ]]; then
    local sdist="$work_dir/miniaudio-sdist"
    rm -rf "$sdist" && mkdir -p "$sdist" "$headers/miniaudio"
    log "ollama $v: fetching miniaudio.h (PyPI sdist miniaudio==$MINIAUDIO_SDIST_VERSION)"
    # --no-binary for this package only: its build requirements still come as wheels.
    python3 -m pip download --quiet --no-deps --no-binary miniaudio -d "$sdist" \
      "miniaudio==$MINIAUDIO_SDIST_VERSION"
    tar -xzf "$sdist"/miniaudio-*.tar.gz -C "$sdist"
    cp "$sdist/miniaudio-$MINIAUDIO_SDIST_VERSION/miniaudio/miniaudio.h" "$headers/miniaudio/miniaudio.h.tmp"
    mv "$headers/miniaudio/miniaudio.h.tmp" "$headers/miniaudio/miniaudio.h"
    rm -rf "$sdist"
  fi
  mkdir -p "$dir"
  log "ollama $v: building (about 5 minutes on 2 cores from empty caches)"
  # Without the -X the server reports version 0.0.0.
  CGO_ENABLED=1 CGO_CPPFLAGS="-I$headers" CGO_CFLAGS=-O2 CGO_CXXFLAGS=-O2 GOBIN="$dir" \
    go install -trimpath -ldflags "-s -w -X github.com/ollama/ollama/version.Version=${v#v}" \
    "github.com/ollama/ollama@$v"
}

# Prometheus and promtool for the dashboard and alert tests and the demo
# (hack/localcluster/prometheus.py). Debian's package lacks Kubernetes service discovery, which
# the local Prometheus finds the proxy pods with; the upstream build has it. Without the
# `builtinassets` tag the web UI is left out; the HTTP API, all the tests use, is complete.
build_prometheus() {
  local v=$PROMETHEUS_VERSION dir="$tools_dir/prometheus-$PROMETHEUS_VERSION"
  if have "prometheus-$v" prometheus promtool; then log "prometheus $v: cached"; return; fi
  # Module v0.3YY.Z is Prometheus 3.YY.Z.
  local minor=${v#v0.}; minor=${minor%%.*}
  local release="${minor:0:1}.$((10#${minor:1})).${v##*.}"
  local ldflags="-X github.com/prometheus/common/version.Version=$release"
  mkdir -p "$dir"
  local b
  for b in prometheus promtool; do
    if have "prometheus-$v" "$b"; then continue; fi
    log "prometheus $v ($release): building $b (several minutes the first time)"
    # Kubernetes discovery only: the other service discoveries (clouds, Consul, ...) would
    # treble the build.
    GOBIN="$dir" go install -tags remove_all_sd,enable_kubernetes_sd -ldflags "-s -w $ldflags" \
      "github.com/prometheus/prometheus/cmd/$b@$v"
  done
}

main() {
  command -v go >/dev/null || { log "Go is required (https://go.dev/dl)"; exit 1; }
  mkdir -p "$tools_dir" "$work_dir"
  build_etcd
  go_install helm "$HELM_VERSION" helm.sh/helm/v4/cmd/helm \
    "-X helm.sh/helm/v4/internal/version.version=$HELM_VERSION"
  go_install kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok \
    "-X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}"
  kwok_stages
  gateway_api_crds
  build_kubernetes
  # The NetworkPolicy engine of the local cluster (firewall only: no routing, no proxy).
  go_install kube-router "$KUBE_ROUTER_VERSION" \
    github.com/cloudnativelabs/kube-router/v2/cmd/kube-router \
    "-X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$KUBE_ROUTER_VERSION"
  build_ollama
  # The managed Redis pods of the local cluster run Debian's redis-server (the release the
  # operator's Redis image pins: llmroute.versions.REDIS_VERSION).
  ensure_apt_packages redis-server
  # The local cluster's pod network (network namespaces, the guard, kube-proxy's nftables,
  # kube-router's iptables and ipsets) needs root; without it pods get loopback addresses.
  if [[ $(id -u) -eq 0 ]]; then
    ensure_apt_packages iproute2 nftables iptables ipset conntrack
  fi
  # The dashboard and alert tests run a real Prometheus, and promtool tests the alert rules.
  build_prometheus
  log "tools ready in $tools_dir"
}

main "$@"
