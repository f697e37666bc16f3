#!/usr/bin/env bash
# Stops the local dev stack that up.sh started — only those processes: each was started as the leader of its
# own process group (setsid), whose id up.sh wrote to $STATE/*.pid. SIGTERM to the leader first (the Ray
# head's `ray start --block` drains, then stops its GCS, raylet, dashboard and workers; SeaweedFS flushes),
# then to the group, SIGKILL to whatever is left. Then the state directory (S3 data, Ray temp dir, env.sh)
# is removed, unless VIDPRED_LOCAL_KEEP=1.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
STATE=${VIDPRED_LOCAL_STATE:-$here/.state}
[ -d "$STATE" ] || { echo "# nothing to stop (no $STATE)"; exit 0; }

# Live (non-zombie) processes in process group $1: an exited leader stays a zombie until its new parent reaps it.
group_alive() { ps -e -o pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ {n++} END {exit !n}'; }

wait_gone() {  # pgid seconds
  local _
  for _ in $(seq 1 $(( $2 * 2 ))); do group_alive "$1" || return 0; sleep 0.5; done
  ! group_alive "$1"
}

stop() {  # name pidfile grace-seconds
  local name=$1 pidfile=$2 grace=$3 pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if [[ "$pid" =~ ^[0-9]+$ ]] && group_alive "$pid"; then
    # the leader first: `ray start --block` drains and stops its children in order (a few seconds; a
    # group-wide SIGTERM leaves GCS waiting), weed shuts down cleanly; then the group, then SIGKILL.
    kill -TERM "$pid" 2>/dev/null
    wait_gone "$pid" "$grace" || { kill -TERM -- "-$pid" 2>/dev/null; wait_gone "$pid" 10; } \
      || { kill -KILL -- "-$pid" 2>/dev/null; wait_gone "$pid" 5; }
    echo "stopped $name (pid $pid)"
  else
    echo "# $name (pid $pid) was not running"
  fi
  rm -f "$pidfile"
}

# Ray first: its workers may still be writing to S3.
stop ray "$STATE/ray.pid" 40
stop seaweedfs "$STATE/weed.pid" 20

if [ "${VIDPRED_LOCAL_KEEP:-0}" != 1 ]; then
  if [ -f "$STATE/ray.tmpdir" ]; then
    tmpdir=$(cat "$STATE/ray.tmpdir")
    case "$tmpdir" in /tmp/vpl.*) rm -rf -- "$tmpdir" ;; esac
  fi
  rm -rf -- "$STATE"
  echo "# removed $STATE"
fi
