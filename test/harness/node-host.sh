#!/usr/bin/env bash
# The host side of the harness's node (test/harness/node.ts): records what the host looks
# like before a node starts, and puts it back afterwards, also when the test runner was
# SIGKILLed (the watchdog). Shell, not Node: it must run when the Node process is gone.
#
#   node-host.sh record STATE         what to restore: sysctls, which paths/cgroups existed
#   node-host.sh clean STATE          stop everything the node left, restore, remove STATE
#   node-host.sh watch PARENT STATE [SNAPSHOT_AFTER]
#                                     (detached) take the host lock, record, write
#                                     STATE/watchdog.ready, then clean when PARENT dies
#                                     (and write a snapshot to SNAPSHOT_AFTER)
#   node-host.sh snapshot             what a test compares before/after (stdout)
#   node-host.sh idle                 exit 0 when no node holds the host lock
#
# STATE holds: netns (the namespace's name), node-pgids (daemons' process groups),
# runner.pid, containerd/containerd.sock (its shims name it), before/ (the record).
set -uo pipefail
# sysctl, ip, iptables-save live in sbin, which a test runner's PATH may lack.
export PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin

# The kubelet sets these on the host (it cannot do otherwise without failing).
SYSCTLS="vm.overcommit_memory kernel.panic kernel.panic_on_oops"
# Paths a kubelet/containerd/CNI leave behind even with their own root directories.
HOST_PATHS="/var/lib/kubelet /var/log/containers /var/log/pods /var/lib/cni /run/containerd /run/netns /opt/containerd /etc/cni"
CGROUP_NAMES="kubepods k8s.io"
# Beside the cached binaries, not in /tmp (nothing left behind there).
LOCK=${ENVSEAL_CACHE_DIR:-$HOME/.cache/envseal}/node.lock

record() {
  local s=$1
  mkdir -p "$s/before"
  for k in $SYSCTLS; do echo "$k=$(sysctl -n "$k")"; done >"$s/before/sysctls"
  for p in $HOST_PATHS; do [ -e "$p" ] && echo "$p"; done >"$s/before/paths"
  for h in /sys/fs/cgroup/*/; do for n in $CGROUP_NAMES; do [ -d "$h$n" ] && echo "$h$n"; done; done >"$s/before/cgroups"
  ls /run/netns 2>/dev/null >"$s/before/netns" || true
  # For tests: the host as this node found it, taken under the host lock.
  snapshot >"$s/before/snapshot"
}

existed() { grep -qxF "$1" "$2" 2>/dev/null; }

# Mount points at or below one of the given prefixes, deepest first.
mounts_under() {
  awk '{print $5}' /proc/self/mountinfo | sed 's/\\040/ /g' | while read -r m; do
    for prefix in "$@"; do
      case "$m" in "$prefix" | "$prefix"/*) echo "$m"; break ;; esac
    done
  done | awk '{print length($0) " " $0}' | sort -rn | cut -d' ' -f2-
}

kill_groups() {
  local file=$1 g i alive
  [ -f "$file" ] || return 0
  for g in $(cat "$file"); do kill -TERM -"$g" 2>/dev/null; done
  for i in $(seq 1 50); do
    alive=0
    for g in $(cat "$file"); do kill -0 -"$g" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.2
  done
  for g in $(cat "$file"); do kill -KILL -"$g" 2>/dev/null; done
}

# Processes still in the node's cgroups (containers; the shims reap them, so they go first).
cgroup_pids() {
  local h n
  for h in /sys/fs/cgroup/*/; do
    for n in $CGROUP_NAMES; do
      [ -d "$h$n" ] && ! existed "$h$n" "$s/before/cgroups" && find "$h$n" -name cgroup.procs -exec cat {} + 2>/dev/null
    done
  done | sort -u
}

# containerd shims started for this node's containerd (they name its socket).
shim_pids() {
  local p
  for p in /proc/[0-9]*; do
    case "$(cat "$p/comm" 2>/dev/null)" in containerd-shim*) ;; *) continue ;; esac
    tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF "$s/containerd/" && echo "${p#/proc/}"
  done
}

clean() {
  s=$1
  [ -d "$s" ] || return 0
  [ -f "$s/before/sysctls" ] || { rm -rf "$s"; return 0; }
  local i p m h n line key value ns
  # 1. The runner (it stops the control plane it started), then the node's daemons.
  if [ -f "$s/runner.pid" ]; then echo "$(cat "$s/runner.pid")" >"$s/runner-pgid"; kill_groups "$s/runner-pgid"; fi
  kill_groups "$s/node-pgids"
  # 2. Containers: kill what is in the pod cgroups while the shims still reap it.
  for i in $(seq 1 50); do
    p=$(cgroup_pids)
    [ -z "$p" ] && break
    kill -KILL $p 2>/dev/null
    sleep 0.2
  done
  # 3. The shims, and anything else still holding this node's files.
  p=$(shim_pids)
  [ -n "$p" ] && kill -KILL $p 2>/dev/null
  for i in $(seq 1 25); do [ -z "$(shim_pids)" ] && break; sleep 0.2; done
  # 4. Mounts: pod volumes, sandboxes' network namespaces, rootfs overlays, /run/netns.
  local prefixes=("$s")
  for p in $HOST_PATHS; do existed "$p" "$s/before/paths" || prefixes+=("$p"); done
  for i in 1 2 3; do
    for m in $(mounts_under "${prefixes[@]}"); do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
    [ -z "$(mounts_under "${prefixes[@]}")" ] && break
    sleep 0.5
  done
  # 5. The network namespace (its veth pair, iptables rules and routes go with it), and
  #    the sandboxes' namespaces that containerd made under /run/netns.
  [ -f "$s/netns" ] && ip netns del "$(cat "$s/netns")" 2>/dev/null
  for ns in $(ls /run/netns 2>/dev/null); do
    existed "$ns" "$s/before/netns" && continue
    case "$ns" in cni-*) umount "/run/netns/$ns" 2>/dev/null; rm -f "/run/netns/$ns" ;; esac
  done
  # 6. cgroups, leaves first (a cgroup with a live or unreaped process cannot go: retry).
  for i in $(seq 1 25); do
    local left=0
    for h in /sys/fs/cgroup/*/; do
      for n in $CGROUP_NAMES; do
        [ -d "$h$n" ] && ! existed "$h$n" "$s/before/cgroups" || continue
        find "$h$n" -depth -type d -exec rmdir {} \; 2>/dev/null
        [ -d "$h$n" ] && left=1
      done
    done
    [ $left = 0 ] && break
    sleep 0.2
  done
  # 7. sysctls, as they were.
  while IFS='=' read -r key value; do
    [ "$(sysctl -n "$key")" = "$value" ] || sysctl -q -w "$key=$value" >/dev/null
  done <"$s/before/sysctls"
  # 8. State directories this node created.
  for p in $HOST_PATHS; do existed "$p" "$s/before/paths" || rm -rf "$p"; done
  rm -rf "$s"
}

watch() {
  local parent=$1
  s=$2
  local after=${3:-}
  trap '' INT HUP
  trap 'exit 0' TERM
  # One node on this machine at a time: the kubelet's host paths are fixed.
  mkdir -p "$(dirname "$LOCK")"
  exec 9>"$LOCK"
  local waited=0
  until flock -n 9; do
    # The parent gave up while waiting: nothing was started, nothing to restore.
    kill -0 "$parent" 2>/dev/null || { rm -rf "$s"; exit 0; }
    [ $waited -ge 900 ] && { echo "another envseal node held $LOCK for 15 minutes" >"$s/watchdog.error"; exit 1; }
    sleep 1; waited=$((waited + 1))
  done
  record "$s"
  touch "$s/watchdog.ready"
  while kill -0 "$parent" 2>/dev/null && [ -d "$s" ]; do sleep 1; done
  trap '' TERM
  clean "$s"
  # For tests (SNAPSHOT_AFTER): the host after the cleanup, still under the host lock.
  [ -n "$after" ] && snapshot >"$after.tmp" && mv "$after.tmp" "$after"
  return 0
}

snapshot() {
  local k p h n
  for k in $SYSCTLS; do echo "sysctl $k=$(sysctl -n "$k")"; done
  for p in $HOST_PATHS; do [ -e "$p" ] && echo "path $p"; done
  for h in /sys/fs/cgroup/*/; do for n in $CGROUP_NAMES; do [ -d "$h$n" ] && echo "cgroup $h$n"; done; done
  awk '{print "mount " $5 " " $9}' /proc/self/mountinfo | sort
  ip -o link show | awk -F': ' '{print "link " $2}' | sed 's/@.*//' | sort
  ls /run/netns 2>/dev/null | sed 's/^/netns /'
  for p in /proc/[0-9]*; do
    # A zombie (state Z) has exited and holds nothing but its process id until its parent
    # (init, for an orphaned shim) reaps it: not something left running.
    [ "$(sed -n 's/^.*) \(.\).*/\1/p' "$p/stat" 2>/dev/null)" = Z ] && continue
    case "$(cat "$p/comm" 2>/dev/null)" in containerd* | kubelet | kube-proxy | kube-scheduler | runc* | pause) echo "process $(cat "$p/comm")" ;; esac
  done | sort
  iptables-save 2>/dev/null | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//' | sed 's/^/iptables /'
  return 0
}

case "${1:-}" in
  record) record "$2" ;;
  clean) clean "$2" ;;
  watch) watch "$2" "$3" "${4:-}" ;;
  snapshot) snapshot ;;
  idle) [ ! -e "$LOCK" ] || flock -n "$LOCK" true ;;
  *) echo "usage: node-host.sh record|clean STATE | watch PARENT STATE [SNAPSHOT_AFTER] | snapshot | idle" >&2; exit 2 ;;
esac
