#!/usr/bin/env bash
# Copies the CRD (single source: crds/) into the Helm chart's crds/, which must be identical
# (test/e2e/chart.test.ts fails on drift). --check: exit 1 with a diff if they differ.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
src="$root/crds"
dst="$root/charts/envseal/crds"
if [ "${1:-}" = "--check" ]; then
  diff -r "$src" "$dst" && echo "chart CRDs are in sync"
  exit
fi
rm -f "$dst"/*.yaml
mkdir -p "$dst"
cp "$src"/*.yaml "$dst"/
echo "copied $(ls "$src"/*.yaml | wc -l) CRD file(s) to charts/envseal/crds/"
