#!/usr/bin/env bash
# Builds the pinned control-plane tools (kube-apiserver, kube-controller-manager,
# kube-scheduler, kube-proxy, kubectl, etcd, helm, kwok, kube-router) from the Go module
# proxy.
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

main() {
  command -v go >/dev/null || { log "Go is required (https://go.dev/dl)"; exit 1; }
  mkdir -p "$tools_dir" "$work_dir"
  build_etcd
  go_install helm "$HELM_VERSION" helm.sh/helm/v4/cmd/helm \
    "-X helm.sh/helm/v4/internal/version.version=$HELM_VERSION"
  go_install kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok \
    "-X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}"
  kwok_stages
  build_kubernetes
  # The NetworkPolicy engine of the local cluster (firewall only: no routing, no proxy).
  go_install kube-router "$KUBE_ROUTER_VERSION" \
    github.com/cloudnativelabs/kube-router/v2/cmd/kube-router \
    "-X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$KUBE_ROUTER_VERSION"
  log "tools ready in $tools_dir"
}

main "$@"
