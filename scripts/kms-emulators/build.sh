#!/usr/bin/env bash
# Builds the two KMS emulators that envseal's aws-kms provider is tested against:
#   - local-kms (github.com/nsmithuk/local-kms, Go), built from the Go module proxy
#     with the machine's `go`, through a small wrapper module (main.go beside this
#     script) whose only change is that it listens on 127.0.0.1 instead of every
#     interface; every KMS operation is upstream's code, unchanged.
#   - moto's server (`moto_server`, Python), pip-installed into a venv.
# Output: $ENVSEAL_CACHE_DIR/kms-emulators/<key>/bin (default ~/.cache/envseal),
# outside any clone, so every clone on this machine reuses one build:
#   bin/local-kms, bin/moto_server (a link into venv/), venv/.
# Idempotent: when both are present and work, it exits in seconds. One build at a
# time per cache key (flock), also across clones.
# Usage: build.sh [--print-bin-dir]   (prints the bin directory on stdout)
set -euo pipefail

LOCAL_KMS_MODULE=github.com/nsmithuk/local-kms
LOCAL_KMS_VERSION=v0.0.0-20260228092603-2a5e92d09ab6
MOTO_VERSION=5.2.5

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python=${PYTHON:-python3}
cache_root=${ENVSEAL_CACHE_DIR:-$HOME/.cache/envseal}

command -v "$python" >/dev/null || { echo "build.sh: $python is not on PATH; moto is installed into a Python venv" >&2; exit 1; }
# A venv is tied to its interpreter's version: it is part of the key.
py_version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
key="local-kms-${LOCAL_KMS_VERSION##*-}_moto-${MOTO_VERSION}-py${py_version}"
# The wrapper's source is recorded with the binary, so that a change to it rebuilds
# local-kms (only).
wrapper_sum=$(sha256sum "$here/main.go" | cut -c1-16)
local_kms_stamp="$LOCAL_KMS_MODULE@$LOCAL_KMS_VERSION wrapper-sha256:$wrapper_sum"
out="$cache_root/kms-emulators/$key"
bin="$out/bin"

if [ "${1:-}" = "--print-bin-dir" ]; then echo "$bin"; exit 0; fi

local_kms_ok() { [ -x "$bin/local-kms" ] && [ "$(cat "$bin/local-kms.version" 2>/dev/null)" = "$local_kms_stamp" ]; }
moto_ok() {
  [ -x "$bin/moto_server" ] && head -1 "$bin/moto_server" | grep -qF "#!$out/venv/bin/python" &&
    [ "$("$out/venv/bin/python" -c 'import moto; print(moto.__version__)' 2>/dev/null)" = "$MOTO_VERSION" ]
}

if local_kms_ok && moto_ok; then
  echo "kms emulators already built: $bin" >&2
  echo "$bin"
  exit 0
fi

mkdir -p "$bin"
exec 9>"$out/.lock"
flock 9
started=$(date +%s)
log() { echo "[kms-emulators $(( $(date +%s) - started ))s] $*" >&2; }

build_local_kms() {
  local_kms_ok && return 0
  command -v go >/dev/null || { echo "build.sh: go is not on PATH; local-kms is built from source with go" >&2; exit 1; }
  local dir="$out/src/local-kms"
  rm -rf "$dir"; mkdir -p "$dir"
  cp "$here/main.go" "$dir/main.go"
  (
    cd "$dir"
    export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local
    # local-kms's go.mod has no replace directives, so a plain require works.
    go mod init local/envseal-local-kms >/dev/null 2>&1
    go get "$LOCAL_KMS_MODULE@$LOCAL_KMS_VERSION" >/dev/null 2>&1 || go get "$LOCAL_KMS_MODULE@$LOCAL_KMS_VERSION"
    go mod tidy >/dev/null 2>&1 || go mod tidy
    log "building local-kms $LOCAL_KMS_VERSION with $(go version | cut -d' ' -f3)"
    go build -trimpath -ldflags "-s -w -X main.Version=$LOCAL_KMS_VERSION" -o "$bin/local-kms.tmp" .
  )
  mv "$bin/local-kms.tmp" "$bin/local-kms"
  echo "$local_kms_stamp" >"$bin/local-kms.version"
  log "built $bin/local-kms ($(du -h "$bin/local-kms" | cut -f1))"
}

build_moto() {
  moto_ok && return 0
  log "installing moto[server]==$MOTO_VERSION into $out/venv (python $py_version)"
  rm -rf "$out/venv"
  "$python" -m venv "$out/venv"
  "$out/venv/bin/python" -m pip install --quiet "moto[server]==$MOTO_VERSION"
  ln -sfn ../venv/bin/moto_server "$bin/moto_server"
  log "installed moto $("$out/venv/bin/python" -c 'import moto; print(moto.__version__)') ($(du -sh "$out/venv" | cut -f1))"
}

build_local_kms
build_moto
rm -rf "$out/src"
log "kms emulators built in $(( $(date +%s) - started ))s: $bin"
echo "$bin"
