#!/usr/bin/env bash
# Apache Kafka 4.3.1 in KRaft mode (one combined broker+controller) from Maven
# Central jars, bound to 127.0.0.1:9092 (controller 9093).
KAFKA_VERSION=4.3.1
KAFKA_PORT=${WHARF_KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=$((KAFKA_PORT + 1))
KAFKA_LIB="$CACHE/kafka-$KAFKA_VERSION/lib"
KAFKA_DIR="$STATE/kafka"
KAFKA_LOG="$KAFKA_DIR/stdout.log"
KAFKA_HEAP=${WHARF_KAFKA_HEAP:-768m}

kafka_install() {
  mvn_classpath "$ROOT/tests/services/kafka" "$KAFKA_LIB"
}

# kafka_java CLASS ARGS...: runs a class from the broker's jars (also used by bench/).
kafka_java() {
  local cls=$1; shift
  "$(java17)" -Xmx512m -cp "$KAFKA_LIB/*" \
    -Dlog4j2.configurationFile="$ROOT/tests/services/kafka/tools-log4j2.properties" "$cls" "$@"
}

kafka_check() {
  # A metadata round trip through the real protocol, not just an open port.
  kafka_java org.apache.kafka.tools.BrokerApiVersionsCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
    --command-config /dev/null 2>/dev/null | grep -q "127.0.0.1:$KAFKA_PORT"
}

kafka_version() { echo "$KAFKA_VERSION"; }

kafka_start() {
  kafka_install
  mkdir -p "$KAFKA_DIR/data"
  if port_open "$KAFKA_PORT"; then
    pid_alive "$KAFKA_DIR/wharf.pid" || log "kafka: already serving on $KAFKA_PORT (not started by this checkout)"
    return 0
  fi
  cat >"$KAFKA_DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$KAFKA_DIR/data
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.retention.hours=24
log.segment.bytes=268435456
PROPS
  if [[ ! -f $KAFKA_DIR/data/meta.properties ]]; then
    # The class moved packages across releases: use whichever these jars hold.
    local storage_tool=org.apache.kafka.tools.StorageTool
    kafka_java "$storage_tool" random-uuid >/dev/null 2>&1 || storage_tool=kafka.tools.StorageTool
    local cluster_id
    cluster_id=$(kafka_java "$storage_tool" random-uuid)
    log "kafka: formatting storage (cluster id $cluster_id, $storage_tool)"
    kafka_java "$storage_tool" format -t "$cluster_id" -c "$KAFKA_DIR/server.properties" --ignore-formatted \
      >"$KAFKA_DIR/format.log" 2>&1 || { cat "$KAFKA_DIR/format.log" >&2; die "kafka: storage format failed"; }
  fi
  # setsid: the broker outlives this script and gets no terminal signals.
  setsid "$(java17)" -Xms256m -Xmx"$KAFKA_HEAP" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$ROOT/tests/services/kafka/log4j2.properties" -Dkafka.logs.dir="$KAFKA_DIR" \
    -cp "$KAFKA_LIB/*" kafka.Kafka "$KAFKA_DIR/server.properties" >"$KAFKA_LOG" 2>&1 < /dev/null &
  echo $! >"$KAFKA_DIR/wharf.pid"
  wait_until 90 "$KAFKA_DIR/server.log" kafka port_open "$KAFKA_PORT" || return 1
}

kafka_stop() { stop_pid "$KAFKA_DIR/wharf.pid" kafka; }

kafka_describe() { echo "PLAINTEXT://127.0.0.1:$KAFKA_PORT (KRaft controller 127.0.0.1:$KAFKA_CONTROLLER_PORT, heap $KAFKA_HEAP)"; }
