#!/usr/bin/env bash
# Builds the programs envseal is benchmarked against (bench/), from the Go module
# proxy with the machine's `go`, pinned:
#   - kubeseal and the Sealed Secrets controller
#     (github.com/bitnami-labs/sealed-secrets/cmd/{kubeseal,controller})
#   - sops (github.com/getsops/sops/v3/cmd/sops)
# Each is built inside a small wrapper module that requires the pinned version, so
# that the build is the upstream code at that version with upstream's own dependency
# versions. Sealed Secrets is published on the proxy as github.com/bitnami-labs/
# sealed-secrets, but since v0.28 its go.mod declares github.com/bitnami/sealed-secrets
# (and its packages import that path), which the proxy does not serve: the wrapper
# requires github.com/bitnami/sealed-secrets and replaces it with the bitnami-labs
# module at the pinned version. Neither upstream go.mod has replace directives today;
# if a later pin has some, they must be copied into the wrapper.
# Also copies the SealedSecret CRD from the module's source (helm chart) to
# share/bitnami.com_sealedsecrets.yaml, for the controller benchmark.
# Output: $ENVSEAL_CACHE_DIR/peers/<key>/{bin,share} (default ~/.cache/envseal),
# outside any clone, so every clone on this machine reuses one build.
# Idempotent: a present binary whose .version stamp matches is kept; each binary
# is written to .tmp and renamed. One build at a time per cache key (flock).
# Usage: build.sh [--print-bin-dir] [kubeseal|controller|sops ...]
#   (no names: all three). Prints the bin directory on stdout.
set -euo pipefail

SEALED_SECRETS_MODULE=github.com/bitnami-labs/sealed-secrets   # where the proxy serves it
SEALED_SECRETS_PATH=github.com/bitnami/sealed-secrets           # what its go.mod declares
SEALED_SECRETS_VERSION=v0.40.0
SOPS_MODULE=github.com/getsops/sops/v3
SOPS_VERSION=v3.13.3

cache_root=${ENVSEAL_CACHE_DIR:-$HOME/.cache/envseal}
key="sealed-secrets-${SEALED_SECRETS_VERSION}_sops-${SOPS_VERSION}"
out="$cache_root/peers/$key"
bin="$out/bin"
share="$out/share"

if [ "${1:-}" = "--print-bin-dir" ]; then echo "$bin"; exit 0; fi
wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=(kubeseal controller sops)

stamp_of() {
  case "$1" in
    kubeseal | controller) echo "$SEALED_SECRETS_PATH/cmd/$1 from $SEALED_SECRETS_MODULE@$SEALED_SECRETS_VERSION" ;;
    sops) echo "$SOPS_MODULE/cmd/sops@$SOPS_VERSION" ;;
    *) echo "build.sh: unknown peer '$1' (kubeseal, controller, sops)" >&2; exit 2 ;;
  esac
}
built() { [ -x "$bin/$1" ] && [ "$(cat "$bin/$1.version" 2>/dev/null)" = "$(stamp_of "$1")" ]; }
crd_ok() { [ -s "$share/bitnami.com_sealedsecrets.yaml" ]; }
all_built() {
  for p in "${wanted[@]}"; do built "$p" || return 1; done
  crd_ok
}

if all_built; then
  echo "peers already built: $bin" >&2
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: go is not on PATH; the peers are built from source with go" >&2; exit 1; }
mkdir -p "$bin" "$share" "$out/src"
exec 9>"$out/.lock"
flock 9

export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local
started=$(date +%s)
log() { echo "[peers $(( $(date +%s) - started ))s] $*" >&2; }

wrapper() { # wrapper <dir> <module> <version>: a module that requires module@version
  local dir="$out/src/$1"
  mkdir -p "$dir"; cd "$dir"
  [ -f go.mod ] || go mod init "local/envseal-peer-$1" >/dev/null 2>&1
  go get "$2@$3" >/dev/null 2>&1 || go get "$2@$3"
}

build_one() { # build_one <name> <dir> <package> <ldflags>
  local name=$1 dir=$2 pkg=$3 ldflags=$4 t0
  built "$name" && return 0
  t0=$(date +%s)
  log "building $name ($pkg) with $(go version | cut -d' ' -f3)"
  (cd "$out/src/$dir" && go build -trimpath -ldflags "-s -w $ldflags" -o "$bin/$name.tmp" "$pkg")
  mv "$bin/$name.tmp" "$bin/$name"
  stamp_of "$name" >"$bin/$name.version"
  log "built $bin/$name in $(( $(date +%s) - t0 ))s ($(du -h "$bin/$name" | cut -f1))"
}

sealed_secrets() {
  local dir="$out/src/sealed-secrets"
  mkdir -p "$dir"; cd "$dir"
  if [ ! -f go.mod ]; then
    go mod init local/envseal-peer-sealed-secrets >/dev/null 2>&1
    go mod edit -require="$SEALED_SECRETS_PATH@v0.0.0-00010101000000-000000000000" \
      -replace="$SEALED_SECRETS_PATH=$SEALED_SECRETS_MODULE@$SEALED_SECRETS_VERSION"
  fi
  if ! crd_ok; then
    local dir
    dir=$(cd "$out/src/sealed-secrets" && go mod download -json "$SEALED_SECRETS_MODULE@$SEALED_SECRETS_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
    cp "$dir/helm/sealed-secrets/crds/bitnami.com_sealedsecrets.yaml" "$share/bitnami.com_sealedsecrets.yaml.tmp"
    mv "$share/bitnami.com_sealedsecrets.yaml.tmp" "$share/bitnami.com_sealedsecrets.yaml"
  fi
}

for p in "${wanted[@]}"; do
  case "$p" in
    kubeseal | controller)
      sealed_secrets
      build_one "$p" sealed-secrets "$SEALED_SECRETS_PATH/cmd/$p" "-X main.VERSION=$SEALED_SECRETS_VERSION"
      ;;
    sops)
      wrapper sops "$SOPS_MODULE" "$SOPS_VERSION"
      build_one sops sops "$SOPS_MODULE/cmd/sops" ""
      ;;
  esac
done
# The CRD is needed whichever peers were asked for.
crd_ok || sealed_secrets
all_built || { echo "build.sh: some peers are missing in $bin" >&2; exit 1; }
log "done: $bin"
echo "$bin"
