#!/usr/bin/env bash
# Runs `bao server -dev` (arguments passed through) for the test harness, and stops it
# when this script's standard input closes: the harness holds the write end, so bao
# never outlives the test process, even one killed with SIGKILL. Prints
# "bao pid PID" first, so that the harness can find bao's listening port.
set -uo pipefail
bao=$1; shift
"$bao" server -dev "$@" </dev/null &
pid=$!
echo "bao pid $pid"
stop() { kill -TERM "$pid" 2>/dev/null; wait "$pid"; exit 0; }
trap stop TERM INT
# Returns at end of input; `read` is a builtin, so a TERM runs the trap at once.
while IFS= read -r _; do :; done
stop
