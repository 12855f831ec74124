#!/usr/bin/env bash
# S3: MinIO built with `go install` at a pinned module version (the Go module
# proxy serves it), on 127.0.0.1:9000. Fallback when that build is impossible:
# s3s-fs from crates.io (WHARF_S3_SERVER=s3s-fs forces it).
MINIO_MODULE=github.com/minio/minio
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
S3_PORT=${WHARF_S3_PORT:-9000}
S3_DIR="$STATE/s3"
S3_LOG="$S3_DIR/server.log"
S3_ACCESS_KEY=wharf
S3_SECRET_KEY=wharf-secret
S3_BUCKET=wharf
S3_BIN_DIR="$CACHE/bin"

s3_server() { cat "$S3_DIR/server-kind" 2>/dev/null || echo "${WHARF_S3_SERVER:-minio}"; }

s3_install() {
  mkdir -p "$S3_BIN_DIR" "$S3_DIR"
  local kind=${WHARF_S3_SERVER:-minio}
  if [[ $kind == minio && ! -x $S3_BIN_DIR/minio-$MINIO_VERSION ]]; then
    command -v go >/dev/null || apt_install golang-go
    log "s3: go install $MINIO_MODULE@$MINIO_VERSION (one-time, several minutes on 2 cores)"
    if GOBIN="$S3_BIN_DIR/tmp" go install "$MINIO_MODULE@$MINIO_VERSION" >"$S3_DIR/go-install.log" 2>&1; then
      mv "$S3_BIN_DIR/tmp/minio" "$S3_BIN_DIR/minio-$MINIO_VERSION"
    else
      tail -n 20 "$S3_DIR/go-install.log" >&2
      log "s3: MinIO could not be built; falling back to s3s-fs"
      kind=s3s-fs
    fi
  fi
  if [[ $kind == s3s-fs && ! -x $S3_BIN_DIR/s3s-fs ]]; then
    log "s3: cargo install s3s-fs"
    cargo install --locked --root "$CACHE/s3s-fs" s3s-fs --features binary >"$S3_DIR/cargo-install.log" 2>&1 \
      || { tail -n 20 "$S3_DIR/cargo-install.log" >&2; die "s3: neither MinIO nor s3s-fs could be installed"; }
    ln -sf "$CACHE/s3s-fs/bin/s3s-fs" "$S3_BIN_DIR/s3s-fs"
  fi
  echo "$kind" >"$S3_DIR/server-kind"
}

s3_check() {
  # MinIO's liveness endpoint; s3s-fs answers an anonymous ListBuckets with 403.
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$S3_PORT/minio/health/live" || true)
  [[ $code == 200 || $code == 403 ]]
}

s3_version() {
  if [[ $(s3_server) == minio ]]; then echo "minio $MINIO_VERSION"; else echo "s3s-fs $("$S3_BIN_DIR/s3s-fs" --version 2>/dev/null | awk '{print $2}')"; fi
}

s3_start() {
  s3_install
  mkdir -p "$S3_DIR/data"
  if port_open "$S3_PORT"; then
    pid_alive "$S3_DIR/wharf.pid" || log "s3: already serving on $S3_PORT (not started by this checkout)"
    s3_make_bucket "$S3_BUCKET" || true
    return 0
  fi
  if [[ $(s3_server) == minio ]]; then
    MINIO_ROOT_USER=$S3_ACCESS_KEY MINIO_ROOT_PASSWORD=$S3_SECRET_KEY MINIO_BROWSER=off MINIO_UPDATE=off \
      setsid "$S3_BIN_DIR/minio-$MINIO_VERSION" server "$S3_DIR/data" --address "127.0.0.1:$S3_PORT" \
      --console-address "127.0.0.1:$((S3_PORT + 1))" >"$S3_LOG" 2>&1 </dev/null &
  else
    setsid "$S3_BIN_DIR/s3s-fs" --host 127.0.0.1 --port "$S3_PORT" --access-key "$S3_ACCESS_KEY" \
      --secret-key "$S3_SECRET_KEY" --domain-name "127.0.0.1:$S3_PORT" "$S3_DIR/data" >"$S3_LOG" 2>&1 </dev/null &
  fi
  echo $! >"$S3_DIR/wharf.pid"
  wait_until 60 "$S3_LOG" s3 s3_check || return 1
  s3_make_bucket "$S3_BUCKET"
}

# A signed request to the local server (curl's built-in SigV4): s3_curl METHOD PATH [curl args].
s3_curl() {
  local method=$1 path=$2; shift 2
  curl -s --aws-sigv4 "aws:amz:us-east-1:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
    -X "$method" "http://127.0.0.1:$S3_PORT$path" "$@"
}

# Creates a bucket unless it exists (the demo writes to `wharf`).
s3_make_bucket() {
  local code
  code=$(s3_curl PUT "/$1" -o /dev/null -w '%{http_code}')
  [[ $code == 200 || $code == 409 ]] || { log "s3: creating bucket $1 answered HTTP $code"; return 1; }
}

s3_stop() { stop_pid "$S3_DIR/wharf.pid" s3; }

s3_describe() { echo "http://127.0.0.1:$S3_PORT path-style, region us-east-1, access key $S3_ACCESS_KEY / $S3_SECRET_KEY, bucket $S3_BUCKET"; }
