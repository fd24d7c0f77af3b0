#!/usr/bin/env bash
# A real single-node Apache Kafka (KRaft: broker and controller in one JVM) for tests and the quick
# start. It is assembled from Maven Central jars, not a release tarball: package registries are the
# only thing every developer machine and CI can reach.
#   kafka.sh install      copy the broker's jars into the cache (once; later runs return at once)
#   kafka.sh start DIR    start a broker keeping its config, data and broker.log in DIR; prints
#                         its bootstrap address last and writes DIR/broker.env (BOOTSTRAP=...)
#   kafka.sh stop DIR     stop it; no error when nothing runs there
#   kafka.sh status DIR   print the bootstrap address and exit 0 while it runs, else exit 1
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
home="${METERLINE_CACHE_DIR:-$HOME/.cache/meterline}/kafka-4.4.0"
libs="$home/libs"
java="${JAVA_HOME:+$JAVA_HOME/bin/}java"
start_timeout_s=60
stop_timeout_s=20

die() { echo "kafka.sh: $*" >&2; exit 1; }

install() {
    # The marker is a copy of the pom written last, so an interrupted install or an edited pom
    # both lead to a fresh copy.
    cmp -s "$here/pom.xml" "$home/installed.pom" && return 0
    rm -rf "$libs" "$libs.partial" "$home/installed.pom"
    mkdir -p "$home"
    # Output is kept for failures only: even a quiet, successful Maven 3.8 prints colour codes.
    local out
    out="$(mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="$libs.partial" -DincludeScope=runtime 2>&1)" \
        || { echo "$out" >&2; die "could not fetch the Kafka jars from Maven Central"; }
    mv "$libs.partial" "$libs"
    cp "$here/pom.xml" "$home/installed.pom"
}

kafka_java() { "$java" -Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$libs/*" "$@"; }

# Prints the broker's pid when DIR's broker is alive. A bare `kill -0` is not enough: the pid file
# can outlive the broker, its pid be reused, or the broker linger as a zombie nobody reaps.
running_pid() {
    local pid
    pid="$(cat "$dir/broker.pid" 2>/dev/null)" || return 1
    ps -ww -p "$pid" -o args= 2>/dev/null | grep -qF -- "$dir/server.properties" || return 1
    echo "$pid"
}

broker_port() { sed -n 's|^advertised.listeners=PLAINTEXT://127.0.0.1:\([0-9]*\).*|\1|p' "$dir/server.properties"; }

# Both sockets stay bound until both ports are known, so the two ports differ.
free_ports() {
    python3 -c 'import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))'
}

# True when an ApiVersions request gets an error-free answer: proof that the address about to go
# into broker.env serves Kafka clients, which an open port is not.
answers() {
    python3 - "$1" <<'EOF'
import socket, struct, sys
body = struct.pack(">hhih", 18, 0, 1, 8) + b"kafka.sh"  # ApiVersions v0, correlation id 1
try:
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        head = s.makefile("rb").read(10)  # size, correlation id, error code
except OSError:
    sys.exit(1)
sys.exit(0 if len(head) == 10 and struct.unpack(">iih", head)[1:] == (1, 0) else 1)
EOF
}

write_config() {  # port controller_port
    cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:$1,CONTROLLER://127.0.0.1:$2
advertised.listeners=PLAINTEXT://127.0.0.1:$1,CONTROLLER://127.0.0.1:$2
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
# A dynamic (--standalone) quorum is found through bootstrap servers; controller.quorum.voters
# would make it a static quorum, which the formatted storage contradicts.
controller.quorum.bootstrap.servers=127.0.0.1:$2
log.dirs=$dir/data
num.partitions=1
auto.create.topics.enable=false
# One node: every internal topic must live with a single replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Tests start consumer groups all the time; waiting 3 s for more members only slows them down.
group.initial.rebalance.delay.ms=0
EOF
    cat >"$dir/log4j2.properties" <<EOF
appender.file.type=File
appender.file.name=file
appender.file.fileName=$dir/broker.log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=INFO
rootLogger.appenderRef.file.ref=file
EOF
}

start() {
    local pid port cport deadline
    if pid="$(running_pid)"; then
        die "a broker already runs in $dir (pid $pid, $(status))"
    fi
    install
    rm -f "$dir/broker.env"
    # Formatted storage is kept, with its ports: a restart then resumes the same cluster at the
    # same address, which is what crash and outage tests need.
    if [ ! -f "$dir/data/meta.properties" ]; then
        rm -rf "$dir/data"
        read -r port cport < <(free_ports)
        write_config "$port" "$cport"
        kafka_java kafka.tools.StorageTool format --standalone -c "$dir/server.properties" \
            -t "$(kafka_java kafka.tools.StorageTool random-uuid)" >"$dir/format.log" 2>&1 \
            || { cat "$dir/format.log" >&2; die "formatting $dir/data failed"; }
    fi
    port="$(broker_port)"
    [ -f "$dir/broker.log" ] && mv "$dir/broker.log" "$dir/broker.log.1"
    # setsid: the broker must outlive this script, and a Ctrl-C meant for the caller's process
    # group must not kill it behind the back of the caller's cleanup.
    nohup setsid "$java" -Xms128m -Xmx512m -Dlog4j2.configurationFile="$dir/log4j2.properties" \
        -cp "$libs/*" kafka.Kafka "$dir/server.properties" >>"$dir/broker.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$dir/broker.pid"
    deadline=$((SECONDS + start_timeout_s))
    # The log line comes only once the broker is unfenced: requests are served a little earlier,
    # but topic creation then still fails for lack of a live broker.
    until grep -q 'Kafka Server started' "$dir/broker.log" 2>/dev/null && answers "$port"; do
        local why=
        running_pid >/dev/null || why="exited during startup"
        ((SECONDS < deadline)) || why="did not answer within ${start_timeout_s}s"
        if [ -n "$why" ]; then
            kill -KILL "$pid" 2>/dev/null || true
            rm -f "$dir/broker.pid"
            echo "kafka.sh: the broker in $dir $why; last lines of $dir/broker.log:" >&2
            tail -n 40 "$dir/broker.log" >&2 || true
            exit 1
        fi
        sleep 0.2
    done
    echo "BOOTSTRAP=127.0.0.1:$port" >"$dir/broker.env"
    echo "127.0.0.1:$port"
}

stop() {
    local pid i
    if pid="$(running_pid)"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < stop_timeout_s * 5; i++)); do
            running_pid >/dev/null || break
            sleep 0.2
        done
        if running_pid >/dev/null; then
            echo "kafka.sh: broker $pid ignored SIGTERM for ${stop_timeout_s}s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$dir/broker.pid" "$dir/broker.env"
}

status() {
    running_pid >/dev/null && [ -f "$dir/broker.env" ] || return 1
    sed -n 's/^BOOTSTRAP=//p' "$dir/broker.env"
}

cmd="${1:-}"
case "$cmd" in
    install) install ;;
    start | stop | status)
        [ $# -eq 2 ] || die "usage: kafka.sh $cmd DIR"
        if [ "$cmd" = start ]; then mkdir -p "$2"; fi
        if [ ! -d "$2" ]; then
            [ "$cmd" = stop ] && exit 0 || exit 1
        fi
        # Absolute and symlink-free, because running_pid matches it in the broker's command line.
        dir="$(cd "$2" && pwd -P)"
        "$cmd"
        ;;
    *) die "usage: kafka.sh install | start DIR | stop DIR | status DIR" ;;
esac
