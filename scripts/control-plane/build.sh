#!/usr/bin/env bash
# Builds the real Kubernetes control plane for envseal's tests and demo from the Go
# module proxy: kube-apiserver, kube-controller-manager, kubectl, etcd and helm, and the
# node's kubelet, kube-scheduler and kube-proxy (test/harness/node.ts) from the same
# k8s.io/kubernetes version.
# Output: $ENVSEAL_CACHE_DIR/control-plane/<versions>/bin (default ~/.cache/envseal),
# outside any clone, so every clone on this machine reuses one build.
# Idempotent: when every binary is present it exits at once (each is written to a
# .tmp file and renamed, so a present binary is a complete one).
set -euo pipefail

K8S_VERSION=1.34.4
ETCD_VERSION=3.6.16
HELM_VERSION=3.19.5

cache_root=${ENVSEAL_CACHE_DIR:-$HOME/.cache/envseal}
key="k8s-v${K8S_VERSION}_etcd-v${ETCD_VERSION}_helm-v${HELM_VERSION}"
out="$cache_root/control-plane/$key"
bin="$out/bin"
work="$out/src"
k8s_binaries=(kube-apiserver kube-controller-manager kubectl kubelet kube-scheduler kube-proxy)
binaries=("${k8s_binaries[@]}" etcd helm)

all_built() {
  for b in "${binaries[@]}"; do [ -x "$bin/$b" ] || return 1; done
}

if [ "${1:-}" = "--print-bin-dir" ]; then echo "$bin"; exit 0; fi

if all_built; then
  echo "control plane already built: $bin" >&2
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: go is not on PATH; the control plane is built from source with go" >&2; exit 1; }
mkdir -p "$bin" "$work"
# Only one build at a time per cache key, also across clones.
exec 9>"$out/.lock"
flock 9
if all_built; then echo "$bin"; exit 0; fi

export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local
started=$(date +%s)
log() { echo "[control-plane $(( $(date +%s) - started ))s] $*" >&2; }

build_k8s() {
  local dir="$work/k8s"
  local minor=${K8S_VERSION#1.}
  mkdir -p "$dir"; cd "$dir"
  [ -f go.mod ] || go mod init local/envseal-k8s >/dev/null 2>&1
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  # k8s.io/kubernetes replaces every staging module with ./staging/...; a dependent
  # module must replace each with its published version (k8s 1.X.Y <-> staging 0.X.Y).
  for m in $(grep -o 'k8s.io/[a-z0-9-]* => ./staging' "$gomod" | cut -d' ' -f1 | sort -u); do
    go mod edit "-replace=$m=$m@v0.$minor"
  done
  go get "k8s.io/kubernetes@v$K8S_VERSION" >/dev/null 2>&1 || go get "k8s.io/kubernetes@v$K8S_VERSION"
  local major=${K8S_VERSION%%.*} kminor=${minor%%.*}
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION -X k8s.io/component-base/version.gitMajor=$major -X k8s.io/component-base/version.gitMinor=$kminor -X k8s.io/client-go/pkg/version.gitVersion=v$K8S_VERSION"
  for cmd in "${k8s_binaries[@]}"; do
    [ -x "$bin/$cmd" ] && continue
    log "building $cmd v$K8S_VERSION"
    go build -trimpath -tags selinux,notest -ldflags "$ldflags" -o "$bin/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd"
    mv "$bin/$cmd.tmp" "$bin/$cmd"
    log "built $cmd"
  done
}

build_etcd() {
  [ -x "$bin/etcd" ] && return 0
  local dir="$work/etcd"
  mkdir -p "$dir"; cd "$dir"
  [ -f go.mod ] || go mod init local/envseal-etcd >/dev/null 2>&1
  go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
  log "building etcd v$ETCD_VERSION"
  go build -trimpath -ldflags "-s -w" -o "$bin/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$bin/etcd.tmp" "$bin/etcd"
}

build_helm() {
  [ -x "$bin/helm" ] && return 0
  local dir="$work/helm"
  mkdir -p "$dir"; cd "$dir"
  [ -f go.mod ] || go mod init local/envseal-helm >/dev/null 2>&1
  go get "helm.sh/helm/v3@v$HELM_VERSION"
  log "building helm v$HELM_VERSION"
  local minor=${K8S_VERSION#1.}; minor=${minor%%.*}
  go build -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor" -o "$bin/helm.tmp" helm.sh/helm/v3/cmd/helm
  mv "$bin/helm.tmp" "$bin/helm"
}

build_etcd
build_helm
build_k8s
all_built || { echo "build.sh: some binaries are missing in $bin" >&2; exit 1; }
log "done: $bin"
echo "$bin"
