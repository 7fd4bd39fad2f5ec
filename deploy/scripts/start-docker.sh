#!/usr/bin/env bash
# Make a Docker engine answer on this machine (for the container tests and for building the image
# with deploy/scripts/make-test-base.sh), as root on Debian:
#   - installs Debian's docker.io when dockerd is missing (about 11 s; images can't be pulled here,
#     they are built locally);
#   - starts dockerd in the background when `docker info` does not answer, logging to
#     $GRADHUB_DOCKERD_LOG (default /tmp/gradhub-dockerd.log), and records its pid in
#     $GRADHUB_DOCKERD_PID (default /tmp/gradhub-dockerd.pid);
#   - waits until `docker info` answers (normally under a second; gives up after 60 s).
# An engine that already answers is left alone (and no pid file is written: we did not start it).
#
#   deploy/scripts/start-docker.sh          start (idempotent)
#   deploy/scripts/start-docker.sh stop     stop the dockerd this script started (by its pid file)
set -euo pipefail

LOG=${GRADHUB_DOCKERD_LOG:-/tmp/gradhub-dockerd.log}
PIDFILE=${GRADHUB_DOCKERD_PID:-/tmp/gradhub-dockerd.pid}

if [[ "${1:-start}" == stop ]]; then
  if [[ -s "$PIDFILE" ]]; then
    pid=$(cat "$PIDFILE")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      echo "docker: stopped dockerd (pid $pid)"
    fi
    rm -f "$PIDFILE"
  else
    echo "docker: no dockerd started by this script ($PIDFILE absent)"
  fi
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "docker: dockerd is not installed and this is not root: install docker.io (apt-get install -y docker.io) first" >&2
    exit 1
  fi
  echo "docker: installing docker.io from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends docker.io >/dev/null
fi

if docker info >/dev/null 2>&1; then
  echo "docker: engine already running"
  exit 0
fi

echo "docker: starting dockerd (log: $LOG)"
# setsid: the engine outlives this script and the shell that ran it; stop it with `$0 stop`.
setsid dockerd >"$LOG" 2>&1 < /dev/null &
echo $! > "$PIDFILE"
for _ in $(seq 1 600); do
  if docker info >/dev/null 2>&1; then
    echo "docker: engine ready (dockerd pid $(cat "$PIDFILE"))"
    exit 0
  fi
  if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    echo "docker: dockerd exited; the end of $LOG:" >&2
    tail -n 20 "$LOG" >&2
    rm -f "$PIDFILE"
    exit 1
  fi
  sleep 0.1
done
echo "docker: dockerd did not answer within 60 s; the end of $LOG:" >&2
tail -n 20 "$LOG" >&2
exit 1
