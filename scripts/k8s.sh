#!/usr/bin/env bash
# A real Kubernetes control plane and the real KubeRay operator, without containers, for the KubeRay tests.
# Usage: scripts/k8s.sh build | path
#   build  builds etcd, kube-apiserver, kube-controller-manager, the KubeRay operator and kwok from the Go
#          module proxy (a first build takes ~20 minutes on 2 cores and ~6 GB of Go caches), and keeps the
#          binaries, the operator's CRDs and kwok's stage files in a cache keyed on their versions; then quick.
#   path   prints that cache folder (tests/control_plane.py starts and stops the binaries from there).
set -euo pipefail

K8S_VERSION="${OBSERVATORY_K8S_VERSION:-v1.34.4}"
ETCD_VERSION="${OBSERVATORY_ETCD_VERSION:-v3.6.16}"
KUBERAY_VERSION="${OBSERVATORY_KUBERAY_OPERATOR_VERSION:-v1.5.0}"
KWOK_VERSION="${OBSERVATORY_KWOK_VERSION:-v0.8.0}"
CACHE_ROOT="${OBSERVATORY_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/observatory/k8s}"
CACHE="$CACHE_ROOT/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kuberay-$KUBERAY_VERSION-kwok-$KWOK_VERSION"

log() { printf '[k8s] %s\n' "$*" >&2; }
die() { printf '[k8s] ERROR: %s\n' "$*" >&2; exit 1; }

module_dir() { go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'; }

wrapper() {  # wrapper DIR: a throw-away module, since `go install` refuses modules with replace directives
  rm -rf "$1" && mkdir -p "$1" && cd "$1" && go mod init observatory.local/wrapper >/dev/null 2>&1
}

build_etcd() {
  wrapper "$CACHE/src/etcd"
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >tools.go
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" && go mod tidy
  go build -o "$CACHE/bin/etcd" go.etcd.io/etcd/server/v3
}

build_kubernetes() {
  local gomod staging minor=${K8S_VERSION#v1.}
  minor=${minor%%.*}
  wrapper "$CACHE/src/kubernetes"
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  [ -n "$gomod" ] || die "k8s.io/kubernetes@$K8S_VERSION is not served by the module proxy"
  # Every staging module that k8s.io/kubernetes replaces with ./staging/... is published as v0.<minor>.<patch>.
  staging=$(sed -n '/^replace (/,/^)/p' "$gomod" | awk '$1 ~ /^k8s.io\// {print $1}')
  printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "k8s.io/kubernetes/cmd/kube-apiserver"\n\t_ "k8s.io/kubernetes/cmd/kube-controller-manager"\n)\n' >tools.go
  go mod edit -require="k8s.io/kubernetes@$K8S_VERSION"
  for m in $staging; do go mod edit -replace="$m=$m@v0.${K8S_VERSION#v1.}"; done
  go mod tidy
  local v=k8s.io/component-base/version
  local flags="-X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor"
  go build -ldflags "$flags" -o "$CACHE/bin/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
  go build -ldflags "$flags" -o "$CACHE/bin/kube-controller-manager" k8s.io/kubernetes/cmd/kube-controller-manager
}

build_operator() {
  GOBIN="$CACHE/bin" go install "github.com/ray-project/kuberay/ray-operator@$KUBERAY_VERSION"
  local dir; dir=$(cd "$CACHE" && module_dir "github.com/ray-project/kuberay/ray-operator@$KUBERAY_VERSION")
  mkdir -p "$CACHE/crds" && cp "$dir"/config/crd/bases/ray.io_*.yaml "$CACHE/crds/" && chmod u+w "$CACHE"/crds/*
}

build_kwok() {
  GOBIN="$CACHE/bin" go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  local dir; dir=$(cd "$CACHE" && module_dir "sigs.k8s.io/kwok@$KWOK_VERSION")
  # The stages of a fake kubelet that starts pods at once: nodes initialise and heartbeat, pods turn Ready.
  rm -rf "$CACHE/stages" && mkdir -p "$CACHE/stages"
  local s
  for s in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
           pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
    cp "$dir/kustomize/stage/$s.yaml" "$CACHE/stages/"
  done
  chmod u+w "$CACHE"/stages/*
}

build() {
  command -v go >/dev/null || die "Go is needed to build the control plane: apt-get install golang-go (Go >= 1.26)"
  mkdir -p "$CACHE/bin" "$CACHE/logs"
  local step
  for step in etcd kubernetes operator kwok; do
    local marker="$CACHE/.built-$step"
    [ -f "$marker" ] && continue
    log "building $step (first run only; logs: $CACHE/logs/$step.log)"
    (set -e; "build_$step") >"$CACHE/logs/$step.log" 2>&1 || die "building $step failed (see $CACHE/logs/$step.log)"
    touch "$marker"
  done
  rm -rf "$CACHE/src"
  log "control plane binaries ready in $CACHE/bin"
}

case "${1:-}" in
  build) build ;;
  path) echo "$CACHE" ;;
  *) echo "usage: $0 build|path" >&2; exit 2 ;;
esac
