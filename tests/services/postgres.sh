#!/usr/bin/env bash
# PostgreSQL 15 from Debian's packages, run as its own cluster under $STATE/postgres
# (not the packaged cluster), logical decoding on, bound to 127.0.0.1:5432.
PG_PORT=${WHARF_PG_PORT:-5432}
PG_BIN=/usr/lib/postgresql/15/bin
PG_DIR="$STATE/postgres"
PG_DATA="$PG_DIR/data"
PG_LOG="$PG_DIR/postgres.log"

pg_as() { runuser -u postgres -- "$@"; }

postgres_install() {
  [[ -x $PG_BIN/postgres ]] || apt_install postgresql-15 postgresql-client-15
}

postgres_check() { pg_as "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; }

postgres_version() { pg_as "$PG_BIN/psql" -h "$PG_DIR" -p "$PG_PORT" -Atc 'show server_version' 2>/dev/null | cut -d' ' -f1; }

postgres_start() {
  postgres_install
  mkdir -p "$PG_DIR"; chmod 755 "$STATE" "$PG_DIR"; chown postgres:postgres "$PG_DIR"
  if [[ ! -f $PG_DATA/PG_VERSION ]]; then
    log "postgres: initdb in $PG_DATA"
    pg_as "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 -E UTF8 >"$PG_DIR/initdb.log" 2>&1 \
      || { cat "$PG_DIR/initdb.log" >&2; die "postgres: initdb failed"; }
    cat >>"$PG_DATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_DIR'
wal_level = logical
max_replication_slots = 32
max_wal_senders = 32
wal_sender_timeout = 60s
max_connections = 200
shared_buffers = 256MB
logging_collector = off
CONF
    # Logical replication connections match by database name, so the normal
    # host line covers them; the replication line is for physical tools.
    cat >"$PG_DATA/pg_hba.conf" <<CONF
local all all trust
local replication all trust
host all all 127.0.0.1/32 scram-sha-256
host replication all 127.0.0.1/32 scram-sha-256
CONF
  fi
  if port_open "$PG_PORT" && ! pid_alive "$PG_DIR/wharf.pid"; then
    postgres_check || die "postgres: port $PG_PORT is taken by something that is not PostgreSQL"
    log "postgres: already serving on $PG_PORT (not started by this checkout)"
  elif ! postgres_check; then
    pg_as "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 start >/dev/null 2>&1 || true
    wait_until 60 "$PG_LOG" postgres postgres_check || return 1
    head -n 1 "$PG_DATA/postmaster.pid" >"$PG_DIR/wharf.pid"
  fi
  # Roles and the demo database: idempotent.
  pg_as "$PG_BIN/psql" -h "$PG_DIR" -p "$PG_PORT" -U postgres -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
ALTER ROLE postgres PASSWORD 'postgres';
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cdc') THEN
    CREATE ROLE cdc LOGIN REPLICATION PASSWORD 'cdc';
  END IF;
END $$;
SELECT 'CREATE DATABASE shop OWNER cdc' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'shop')\gexec
SQL
  [[ $(pg_as "$PG_BIN/psql" -h "$PG_DIR" -p "$PG_PORT" -Atc 'show wal_level') == logical ]] || die "postgres: wal_level is not logical"
}

postgres_stop() {
  if pid_alive "$PG_DIR/wharf.pid"; then
    pg_as "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null 2>&1 || stop_pid "$PG_DIR/wharf.pid" postgres
    rm -f "$PG_DIR/wharf.pid"; log "postgres stopped"
  fi
}

postgres_describe() { echo "postgresql://cdc:cdc@127.0.0.1:$PG_PORT/shop (superuser postgres/postgres; wal_level=logical)"; }
