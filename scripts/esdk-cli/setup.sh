#!/usr/bin/env bash
# Installs the AWS Encryption SDK CLI (PyPI: aws-encryption-sdk-cli), pinned, into a
# venv outside the clone, for envseal's interop tests and file benchmark.
# Output: $ENVSEAL_CACHE_DIR/esdk-cli/<key>/venv (default ~/.cache/envseal); the last
# line on stdout is the path of its aws-encryption-cli executable.
# Idempotent: when the pinned versions are installed it exits in a second. One install
# at a time per key (flock).
# Usage: setup.sh [--print-bin]
set -euo pipefail

ESDK_CLI_VERSION=4.3.0
ESDK_VERSION=3.3.1
# botocore >= 1.31 honours AWS_ENDPOINT_URL_KMS, which points the CLI at an emulator.
BOTO_VERSION=1.44.8

python=${PYTHON:-python3}
cache_root=${ENVSEAL_CACHE_DIR:-$HOME/.cache/envseal}
command -v "$python" >/dev/null || { echo "setup.sh: $python is not on PATH" >&2; exit 1; }
py_version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
out="$cache_root/esdk-cli/cli-${ESDK_CLI_VERSION}_sdk-${ESDK_VERSION}-py${py_version}"
cli="$out/venv/bin/aws-encryption-cli"

if [ "${1:-}" = "--print-bin" ]; then echo "$cli"; exit 0; fi

installed_ok() {
  [ -x "$cli" ] &&
    [ "$("$out/venv/bin/python" -c 'import importlib.metadata as m; print(m.version("aws-encryption-sdk-cli"), m.version("aws-encryption-sdk"))' 2>/dev/null)" = "$ESDK_CLI_VERSION $ESDK_VERSION" ]
}

if installed_ok; then
  echo "aws-encryption-cli already installed: $cli" >&2
  echo "$cli"
  exit 0
fi

mkdir -p "$out"
exec 9>"$out/.lock"
flock 9
if ! installed_ok; then
  started=$(date +%s)
  echo "[esdk-cli] installing aws-encryption-sdk-cli==$ESDK_CLI_VERSION (aws-encryption-sdk==$ESDK_VERSION) into $out/venv" >&2
  rm -rf "$out/venv"
  "$python" -m venv "$out/venv"
  "$out/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "aws-encryption-sdk-cli==$ESDK_CLI_VERSION" "aws-encryption-sdk==$ESDK_VERSION" \
    "boto3==$BOTO_VERSION" "botocore==$BOTO_VERSION"
  installed_ok || { echo "setup.sh: the install did not produce $cli at the pinned versions" >&2; exit 1; }
  echo "[esdk-cli] installed in $(( $(date +%s) - started ))s ($(du -sh "$out/venv" | cut -f1))" >&2
fi
echo "$cli"
