#!/usr/bin/env bash
# Installs what the real-node tests need from Debian when it is missing: containerd and
# runc (run the pods), the CNI plugins (pod network), iptables and conntrack (kube-proxy),
# umoci and skopeo (the image builder, scripts/image/build.ts), busybox-static (the
# pause image). Run by `npm run tools`; idempotent: exits at once when all are present.
#   bash scripts/node/install-packages.sh [--check]   (--check: exit 1 if any is missing)
set -euo pipefail

# command or file that proves the package is installed -> Debian package
declare -A want=(
  [containerd]=containerd
  [runc]=runc
  [ctr]=containerd
  [umoci]=umoci
  [skopeo]=skopeo
  [/usr/lib/cni/bridge]=containernetworking-plugins
  [/usr/lib/cni/host-local]=containernetworking-plugins
  [/usr/lib/cni/loopback]=containernetworking-plugins
  [iptables]=iptables
  [conntrack]=conntrack
  [/bin/busybox]=busybox-static
)

missing=()
for probe in "${!want[@]}"; do
  if [[ $probe == /* ]]; then [ -e "$probe" ] && continue
  else command -v "$probe" >/dev/null 2>&1 && continue; fi
  missing+=("${want[$probe]}")
done
# busybox (dynamic) also provides /bin/busybox; the pause image needs the static one.
if [ -e /bin/busybox ] && ldd /bin/busybox >/dev/null 2>&1; then missing+=(busybox-static); fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u | sed '/^$/d')

if [ ${#missing[@]} -eq 0 ]; then echo "node packages present" >&2; exit 0; fi
if [ "${1:-}" = "--check" ]; then echo "node packages missing: ${missing[*]}" >&2; exit 1; fi
if ! command -v apt-get >/dev/null || [ "$(id -u)" != 0 ]; then
  echo "install-packages.sh: missing ${missing[*]}; install them (Debian/Ubuntu: apt-get install ${missing[*]}) as root" >&2
  exit 1
fi

echo "installing from Debian: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# One install at a time on this machine (dpkg's own lock fails instead of waiting).
lock_dir=${ENVSEAL_CACHE_DIR:-$HOME/.cache/envseal}
mkdir -p "$lock_dir"
exec 9>"$lock_dir/node-packages.lock"
flock 9
apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 || {
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}
echo "node packages installed" >&2
