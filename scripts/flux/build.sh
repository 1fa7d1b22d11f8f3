#!/usr/bin/env bash
# Builds the GitOps tools envseal's tests run, from the Go module proxy with the
# machine's `go`, pinned:
#   - Flux's source-controller and kustomize-controller v1.9.6 (v1.10 needs Go 1.27),
#     each through a wrapper module that requires the controller at that version;
#     their CRDs are copied from the same modules (config/crd/bases) to share/.
#   - argocd-lua-health: gopher-lua (the Lua engine Argo CD embeds) running a health
#     script as Argo CD does (main.go in argocd-lua-health/ beside this script).
# helm-controller is not built: the module proxy refuses github.com/fluxcd/helm-controller
# (and /v2) at every version (403), only its api module is served.
# Wrapper replaces (why): upstream's go.mod replaces its api module with ./api and
# pins go-digest to a commit; a dependent module must say the same with published
# versions. source-controller wants github.com/fluxcd/pkg/artifact v0.18.3, which the
# proxy refuses; v0.18.0 compiles and serves artifacts. kustomize-controller pins
# kustomize api/kyaml v0.21.1 and yaml.v3 v3.0.1 as upstream does. No `go mod tidy`:
# it would fetch upstream's test dependencies, one of which the proxy refuses.
# Output: $ENVSEAL_CACHE_DIR/flux/<key>/{bin,share} (default ~/.cache/envseal), outside
# any clone. Idempotent: a binary whose .version stamp matches is kept; each binary is
# written to .tmp and renamed. One build at a time per cache key (flock).
# Usage: build.sh [--print-bin-dir | --print-share-dir] [source-controller|kustomize-controller|argocd-lua-health ...]
#   (no names: all three). Prints the bin directory on stdout.
set -euo pipefail

FLUX_VERSION=v1.9.6
SOURCE_MODULE=github.com/fluxcd/source-controller
KUSTOMIZE_MODULE=github.com/fluxcd/kustomize-controller
GOPHER_LUA_VERSION=v1.1.1
GOPHER_JSON_VERSION=v0.0.0-20201124131017-552bb3c4c3bf

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${ENVSEAL_CACHE_DIR:-$HOME/.cache/envseal}
key="flux-${FLUX_VERSION}_gopher-lua-${GOPHER_LUA_VERSION}"
out="$cache_root/flux/$key"
bin="$out/bin"
share="$out/share"

case "${1:-}" in
  --print-bin-dir) echo "$bin"; exit 0 ;;
  --print-share-dir) echo "$share"; exit 0 ;;
esac
wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=(source-controller kustomize-controller argocd-lua-health)

lua_sum=$(sha256sum "$here/argocd-lua-health/main.go" | cut -c1-16)
stamp_of() {
  case "$1" in
    source-controller) echo "$SOURCE_MODULE@$FLUX_VERSION pkg/artifact-v0.18.0" ;;
    kustomize-controller) echo "$KUSTOMIZE_MODULE@$FLUX_VERSION" ;;
    argocd-lua-health) echo "gopher-lua@$GOPHER_LUA_VERSION gopher-json@$GOPHER_JSON_VERSION main-sha256:$lua_sum" ;;
    *) echo "build.sh: unknown tool '$1' (source-controller, kustomize-controller, argocd-lua-health)" >&2; exit 2 ;;
  esac
}
built() { [ -x "$bin/$1" ] && [ "$(cat "$bin/$1.version" 2>/dev/null)" = "$(stamp_of "$1")" ]; }
crds_ok() { # crds_ok <name>: the controller's CRDs are in share/<name>/
  case "$1" in
    source-controller | kustomize-controller) [ -s "$share/$1/.complete" ] ;;
    *) true ;;
  esac
}
all_built() {
  for t in "${wanted[@]}"; do built "$t" && crds_ok "$t" || return 1; done
}

if all_built; then
  echo "flux tools already built: $bin" >&2
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: go is not on PATH; the Flux controllers and gopher-lua are built from source with go" >&2; exit 1; }
mkdir -p "$bin" "$share" "$out/src"
exec 9>"$out/.lock"
flock 9

export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local
started=$(date +%s)
log() { echo "[flux $(( $(date +%s) - started ))s] $*" >&2; }

wrapper() { # wrapper <name> <go.mod body> <module@version>: a fresh module in src/<name>
  local dir="$out/src/$1"
  rm -rf "$dir"; mkdir -p "$dir"
  printf '%s\n' "$2" >"$dir/go.mod"
  (cd "$dir" && { go get "$3" >/dev/null 2>&1 || go get "$3"; })
}

copy_crds() { # copy_crds <name> <module>
  crds_ok "$1" && return 0
  local dir
  dir=$(cd "$out/src/$1" && go mod download -json "$2@$FLUX_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  rm -rf "$share/$1.tmp"; mkdir -p "$share/$1.tmp"
  cp "$dir"/config/crd/bases/*.yaml "$share/$1.tmp/"
  chmod u+w "$share/$1.tmp"/*.yaml
  ls "$share/$1.tmp" >"$share/$1.tmp/.complete"
  rm -rf "$share/$1"; mv "$share/$1.tmp" "$share/$1"
}

build_one() { # build_one <name> <package>
  local name=$1 pkg=$2 t0
  t0=$(date +%s)
  log "building $name ($pkg) with $(go version | cut -d' ' -f3)"
  (cd "$out/src/$name" && go build -trimpath -ldflags "-s -w" -o "$bin/$name.tmp" "$pkg")
  mv "$bin/$name.tmp" "$bin/$name"
  stamp_of "$name" >"$bin/$name.version"
  log "built $bin/$name in $(( $(date +%s) - t0 ))s ($(du -h "$bin/$name" | cut -f1))"
}

source_controller() {
  if ! built source-controller; then
    wrapper source-controller "module local/envseal-flux-source-controller
go 1.26.0
require $SOURCE_MODULE $FLUX_VERSION
replace $SOURCE_MODULE/api => $SOURCE_MODULE/api $FLUX_VERSION
replace github.com/opencontainers/go-digest => github.com/opencontainers/go-digest v1.0.1-0.20220411205349-bde1400a84be
replace github.com/fluxcd/pkg/artifact => github.com/fluxcd/pkg/artifact v0.18.0" "$SOURCE_MODULE@$FLUX_VERSION"
    build_one source-controller "$SOURCE_MODULE"
  fi
  [ -d "$out/src/source-controller" ] || wrapper source-controller "module local/envseal-flux-source-controller
go 1.26.0" "$SOURCE_MODULE@$FLUX_VERSION"
  copy_crds source-controller "$SOURCE_MODULE"
}

kustomize_controller() {
  if ! built kustomize-controller; then
    wrapper kustomize-controller "module local/envseal-flux-kustomize-controller
go 1.26.0
require $KUSTOMIZE_MODULE $FLUX_VERSION
replace $KUSTOMIZE_MODULE/api => $KUSTOMIZE_MODULE/api $FLUX_VERSION
replace github.com/opencontainers/go-digest => github.com/opencontainers/go-digest v1.0.1-0.20220411205349-bde1400a84be
replace sigs.k8s.io/kustomize/api => sigs.k8s.io/kustomize/api v0.21.1
replace sigs.k8s.io/kustomize/kyaml => sigs.k8s.io/kustomize/kyaml v0.21.1
replace gopkg.in/yaml.v3 => gopkg.in/yaml.v3 v3.0.1" "$KUSTOMIZE_MODULE@$FLUX_VERSION"
    build_one kustomize-controller "$KUSTOMIZE_MODULE"
  fi
  [ -d "$out/src/kustomize-controller" ] || wrapper kustomize-controller "module local/envseal-flux-kustomize-controller
go 1.26.0" "$KUSTOMIZE_MODULE@$FLUX_VERSION"
  copy_crds kustomize-controller "$KUSTOMIZE_MODULE"
}

argocd_lua_health() {
  built argocd-lua-health && return 0
  wrapper argocd-lua-health "module local/envseal-argocd-lua-health
go 1.26.0
require github.com/yuin/gopher-lua $GOPHER_LUA_VERSION
require layeh.com/gopher-json $GOPHER_JSON_VERSION" "github.com/yuin/gopher-lua@$GOPHER_LUA_VERSION"
  cp "$here/argocd-lua-health/main.go" "$out/src/argocd-lua-health/main.go"
  build_one argocd-lua-health .
}

for t in "${wanted[@]}"; do
  case "$t" in
    source-controller) source_controller ;;
    kustomize-controller) kustomize_controller ;;
    argocd-lua-health) argocd_lua_health ;;
    *) stamp_of "$t" ;;
  esac
done
all_built || { echo "build.sh: some tools are missing in $bin" >&2; exit 1; }
log "done: $bin"
echo "$bin"
