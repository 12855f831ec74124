#!/usr/bin/env bash
# Shared helpers for the service scripts. Sourced, never run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# Per-checkout state (data, logs, pid files): ignored by git.
STATE="${WHARF_STATE:-$ROOT/.wharf/services}"
# Downloads and builds shared by every checkout on this machine, so a fresh
# clone (as CI makes) starts warm.
CACHE="${WHARF_CACHE:-$HOME/.cache/wharf}"
mkdir -p "$STATE" "$CACHE"

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

# port_open PORT: true when something accepts TCP on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_until DEADLINE_S LOGFILE NAME CMD...: polls CMD until it succeeds; on
# timeout prints the log tail and fails loudly.
wait_until() {
  local deadline=$1 logfile=$2 name=$3; shift 3
  local start=$SECONDS
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS - start >= deadline )); then
      printf '[services] ERROR: %s not up after %ss. Last lines of %s:\n' "$name" "$deadline" "$logfile" >&2
      tail -n 40 "$logfile" >&2 || true
      return 1
    fi
    sleep 1
  done
}

# pid_alive FILE: the pid recorded in FILE is a live process.
pid_alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# stop_pid FILE NAME: TERM, wait, then KILL the process recorded in FILE.
stop_pid() {
  local file=$1 name=$2 pid
  if ! pid_alive "$file"; then rm -f "$file"; return 0; fi
  pid=$(cat "$file")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  if kill -0 "$pid" 2>/dev/null; then log "$name did not stop on TERM; killing"; kill -9 "$pid" 2>/dev/null || true; fi
  rm -f "$file"
  log "$name stopped"
}

apt_updated=0
apt_install() {
  if (( apt_updated == 0 )); then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    apt_updated=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# mvn_classpath POM_DIR OUT_DIR: copies the pom's runtime dependencies into OUT_DIR once.
mvn_classpath() {
  local pom_dir=$1 out=$2
  if [[ -f $out/.complete ]]; then return 0; fi
  command -v mvn >/dev/null || apt_install maven
  log "resolving jars for $(basename "$pom_dir") from Maven Central into $out"
  rm -rf "$out"; mkdir -p "$out"
  mvn -q -B -f "$pom_dir/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$out" >"$out/../mvn-$(basename "$pom_dir").log" 2>&1 \
    || { tail -n 30 "$out/../mvn-$(basename "$pom_dir").log" >&2; die "maven could not resolve $(basename "$pom_dir")"; }
  touch "$out/.complete"
}

java17() {
  local j
  for j in /usr/lib/jvm/java-17-openjdk-amd64/bin/java /usr/lib/jvm/temurin-17*/bin/java "$(command -v java || true)"; do
    [[ -x $j ]] || continue
    if "$j" -version 2>&1 | grep -q 'version "17'; then echo "$j"; return 0; fi
  done
  apt_install openjdk-17-jre-headless
  echo /usr/lib/jvm/java-17-openjdk-amd64/bin/java
}
