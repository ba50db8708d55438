#!/bin/sh
# xcluster.multus multus-service daemons: start (or restart) and stop one daemon by its pidfile.
# Copyright: xcluster.multus contributors. Apache License 2.0.
#
# Usage: daemon.sh start BIN PIDFILE LOG RESTART CHECK_SECONDS [ARG...]
#        daemon.sh stop BIN PIDFILE
#        daemon.sh status BIN PIDFILE [BIN PIDFILE...]
#   start  left alone when running (its pidfile's process runs BIN) unless RESTART is 1 (the
#          binary was just replaced): then stopped (SIGTERM, up to 10 s) and started again, in
#          the background, immune to SIGHUP like nohup, its output appended to LOG, its pid in
#          PIDFILE; CHECK_SECONDS later, said whether it still runs.
#   stop   the running daemon stopped, its pidfile removed.
#   status per daemon "XCM-RUNNING <pid> BIN" when its pidfile's process runs BIN, else
#          "XCM-NOT-RUNNING BIN" (read-only: the probe before site.yml's push, roleplan.py).
# Output: "XCM-RUNNING <pid>" (left alone), "XCM-STARTED <pid>" then "XCM-ALIVE" or "XCM-EXITED"
# and the end of its log (start); "CHANGED: stopped BIN (<pid>)", "CHANGED: removed PIDFILE"
# (stop). Run over ansible.builtin.raw (`sh -s -- ARGS` with this file on stdin) by the role
# xcluster.multus.multus_service (tasks/configure.yml, tasks/uninstall.yml): POSIX sh and
# busybox applets only.

running() {  # running BIN PIDFILE: the pid of the daemon its pidfile names, when it runs BIN
  _pid=$(cat "$2" 2>/dev/null)
  [ -n "$_pid" ] && kill -0 "$_pid" 2>/dev/null && grep -qF "$1" "/proc/$_pid/cmdline" 2>/dev/null &&
    echo "$_pid"
}

start() {
  bin=$1 pidf=$2 log=$3 restart=$4 check=$5
  shift 5
  if pid=$(running "$bin" "$pidf"); then
    if [ "$restart" != 1 ]; then
      echo "XCM-RUNNING $pid"
      return 0
    fi
    kill "$pid"
    n=0
    while kill -0 "$pid" 2>/dev/null && [ $n -lt 10 ]; do
      sleep 1
      n=$((n + 1))
    done
  fi
  mkdir -p "$(dirname "$pidf")" "$(dirname "$log")" || return 1
  # what nohup does, without nohup (not every busybox has it): SIGHUP stays ignored across exec
  (
    trap '' HUP
    exec "$bin" "$@"
  ) </dev/null >>"$log" 2>&1 &
  pid=$!
  echo "$pid" >"$pidf"
  echo "XCM-STARTED $pid"
  sleep "$check"
  state=$(sed -n 's/^.*) \([A-Za-z]\) .*$/\1/p' "/proc/$pid/stat" 2>/dev/null)
  if [ -n "$state" ] && [ "$state" != Z ]; then
    echo "XCM-ALIVE"
  else
    echo "XCM-EXITED"
    tail -n 5 "$log"
  fi
}

stop() {
  bin=$1 pidf=$2
  if pid=$(running "$bin" "$pidf"); then
    kill "$pid" && echo "CHANGED: stopped $bin ($pid)"
  fi
  if [ -e "$pidf" ]; then
    rm -f "$pidf" && echo "CHANGED: removed $pidf"
  fi
  return 0
}

case ${1:-} in
start)
  [ $# -ge 6 ] || { echo "daemon.sh: usage: start BIN PIDFILE LOG RESTART CHECK_SECONDS [ARG...]" >&2; exit 2; }
  shift
  start "$@"
  ;;
stop)
  [ $# -eq 3 ] || { echo "daemon.sh: usage: stop BIN PIDFILE" >&2; exit 2; }
  shift
  stop "$@"
  ;;
status)
  if [ $# -lt 3 ] || [ $(($# % 2)) -ne 1 ]; then
    echo "daemon.sh: usage: status BIN PIDFILE [BIN PIDFILE...]" >&2
    exit 2
  fi
  shift
  while [ $# -ge 2 ]; do
    if pid=$(running "$1" "$2"); then echo "XCM-RUNNING $pid $1"; else echo "XCM-NOT-RUNNING $1"; fi
    shift 2
  done
  ;;
*)
  echo "daemon.sh: usage: daemon.sh start|stop ..." >&2
  exit 2
  ;;
esac
