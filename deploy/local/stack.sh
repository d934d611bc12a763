#!/usr/bin/env bash
# Muster's local stack without Docker: Apache Kafka (KRaft, jars from Maven Central),
# PostgreSQL and Redis from Debian packages, then the three services and the console.
#
#   deploy/local/stack.sh up           infra + migrations + members/alerts/dispatch + console
#   deploy/local/stack.sh up --infra   Kafka, PostgreSQL, Redis and Chromium (what the tests need)
#   deploy/local/stack.sh down         stop what this script started, services first
#   deploy/local/stack.sh status       one line per part; exit 0 when the infra is up, else 3
#
# Every step is idempotent; all state lives under $REPO/.local (see deploy/local/README.md).
# Ports: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (KAFKA_PORT+1), PGPORT (5432),
# REDIS_PORT (6379), MEMBERS_PORT/ALERTS_PORT/DISPATCH_PORT/CONSOLE_PORT (8001/8002/8003/8000).
# Local secrets (bootstrap admin, Twilio token, console session key): .local/secrets.env,
# written once by `up`; a variable already set in the environment wins over it.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
LOCAL=${MUSTER_LOCAL_DIR:-$REPO/.local}
LOGS=$LOCAL/logs
RUN=$LOCAL/run
PY=$REPO/.venv/bin/python

KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}
PGPORT=${PGPORT:-5432}
REDIS_PORT=${REDIS_PORT:-6379}
# tests create and delete many short-lived topics: give the broker room for their metadata
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xmx2g -Xms512m}
READY_TIMEOUT=${MUSTER_READY_TIMEOUT:-60}
# Started in this order, stopped in reverse: the console calls the other three.
SERVICES=(members alerts dispatch console)
SECRETS=$LOCAL/secrets.env
CHROMIUM=${MUSTER_CHROMIUM:-/usr/bin/chromium}

KAFKA_DIR=$LOCAL/kafka
KAFKA_LIB=$KAFKA_DIR/lib
KAFKA_DATA=$KAFKA_DIR/data
KAFKA_CONF=$KAFKA_DIR/server.properties

log() { printf '%s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}
# Paths in messages are shown relative to the repository, as people type them.
rel() { printf '%s' "${1#"$REPO"/}"; }

# ---------------------------------------------------------------------------- helpers

port_open() { # host port
    timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

redis_ping() { # port -> 0 when something there answers +PONG
    local reply
    reply=$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && printf 'PING\r\n' >&3 && head -c 5 <&3" 2>/dev/null) || return 1
    [[ $reply == "+PONG" ]]
}

http_status() { # port path -> prints the status code, or nothing
    timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 &&
        printf 'GET $2 HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3 &&
        head -n 1 <&3" 2>/dev/null | awk '{print $2}' || true
}

alive() { # pid: running, and not a zombie waiting for a parent that does not reap it
    kill -0 "$1" 2>/dev/null || return 1
    local state
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ $state != Z ]]
}

# pid_of NAME PATTERN: the pid in .local/run/NAME.pid when that process is alive and its
# command line contains PATTERN (a recycled pid is not mistaken for ours).
pid_of() {
    local file=$RUN/$1.pid pid
    [[ -s $file ]] || return 1
    pid=$(head -n 1 "$file")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    alive "$pid" || return 1
    local cmdline
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmdline == *"$2"* ]] || return 1
    printf '%s' "$pid"
}

# stop_pid NAME PATTERN: SIGTERM, up to 20 s to exit, then SIGKILL.
stop_pid() {
    local name=$1 pid i
    if ! pid=$(pid_of "$1" "$2"); then
        rm -f "$RUN/$name.pid"
        log "$name: not running"
        return 0
    fi
    log "$name: stopping (pid $pid)…"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 40; i++)); do
        alive "$pid" || break
        sleep 0.5
    done
    if alive "$pid"; then
        warn "$name did not stop within 20 s: sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$RUN/$name.pid"
    log "$name: stopped"
}

# start_bg NAME LOGFILE CMD...: run CMD in its own session, detached from our stdio and from
# the lock's file descriptor (a caller capturing our output must not wait for the daemon).
start_bg() {
    local name=$1 logfile=$2
    shift 2
    # shellcheck disable=SC2016  # $$ is expanded by the inner shell, whose pid CMD keeps
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$RUN/$name.pid" "$@" \
        </dev/null >>"$logfile" 2>&1 9>&- &
    local i
    for ((i = 0; i < 50; i++)); do
        [[ -s $RUN/$name.pid ]] && return 0
        sleep 0.1
    done
    die "$name: could not start (no pid file). Look at $(rel "$logfile")"
}

tail_log() { # file [lines]
    if [[ -f $1 ]]; then
        printf -- '--- last lines of %s ---\n' "$(rel "$1")" >&2
        tail -n "${2:-30}" "$1" >&2
        printf -- '---\n' >&2
    fi
}

APT_UPDATED=0
apt_install() { # packages...
    local sudo=()
    if [[ $EUID -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 ||
            die "missing $*: install it as root (apt-get update && apt-get install -y $*) and run again"
        sudo=(sudo)
    fi
    command -v apt-get >/dev/null 2>&1 ||
        die "missing $* and no apt-get here: install it with your package manager and run again"
    # Packages must not start their own system-wide server on our ports (Debian's postinst
    # would start redis-server and a postgresql "main" cluster): deny service starts while
    # installing, unless the machine already has a policy.
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod 755 "$policy"
        own_policy=1
    fi
    local rc=0
    {
        if [[ $APT_UPDATED -eq 0 ]]; then
            log "apt: apt-get update…"
            "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null >>"$LOGS/apt.log" 2>&1
            APT_UPDATED=1
        fi
        log "apt: installing $*…"
        # Keep configuration files already there (ours, e.g. createcluster.conf): no prompts.
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive UCF_FORCE_CONFFOLD=1 \
            apt-get install -y -q --no-install-recommends \
            -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
            "$@" </dev/null >>"$LOGS/apt.log" 2>&1
    } || rc=$?
    if [[ $own_policy -eq 1 ]]; then "${sudo[@]}" rm -f "$policy"; fi
    if [[ $rc -ne 0 ]]; then
        tail_log "$LOGS/apt.log"
        die "apt-get could not install $* (see $(rel "$LOGS/apt.log")); install it by hand and run again"
    fi
}

need_venv() {
    [[ -x $PY ]] || die "$(rel "$PY") not found: create the virtualenv first
  (python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'), then run this again"
}

# ---------------------------------------------------------------------------- kafka

java_major() {
    java -version 2>&1 | awk -F'"' '/version/ && !m {split($2, v, "."); m = (v[1] == "1" ? v[2] : v[1])} END {print m + 0}'
}

kafka_tools() {
    if ! command -v java >/dev/null 2>&1 || [[ $(java_major) -lt 17 ]]; then
        apt_install openjdk-17-jre-headless
    fi
    command -v mvn >/dev/null 2>&1 || apt_install maven
}

kafka_fetch() {
    local pom=$HERE/kafka/pom.xml stamp
    stamp=$(sha256sum "$pom" | cut -d' ' -f1)
    if [[ -f $KAFKA_LIB/.fetched && $(cat "$KAFKA_LIB/.fetched") == "$stamp" ]]; then
        return 0
    fi
    kafka_tools
    log "kafka: fetching jars with mvn (first time only, ~1-2 min)…"
    local started=$SECONDS tmp=$KAFKA_DIR/lib.partial
    rm -rf "$tmp"
    if ! mvn -B -q -f "$pom" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >"$LOGS/kafka-fetch.log" 2>&1; then
        tail_log "$LOGS/kafka-fetch.log"
        die "kafka: mvn could not fetch the jars (see $(rel "$LOGS/kafka-fetch.log")).
  Check that Maven Central is reachable (proxy: MAVEN_OPTS=-Dhttps.proxyHost=…), then run again"
    fi
    [[ -n $(compgen -G "$tmp/kafka_2.13-*.jar") ]] ||
        die "kafka: mvn finished but no kafka_2.13 jar in $(rel "$tmp"); see $(rel "$LOGS/kafka-fetch.log")"
    rm -rf "$KAFKA_LIB"
    mv "$tmp" "$KAFKA_LIB"
    echo "$stamp" >"$KAFKA_LIB/.fetched"
    log "kafka: $(find "$KAFKA_LIB" -name '*.jar' | wc -l) jars in $(rel "$KAFKA_LIB") ($((SECONDS - started)) s)"
}

kafka_java() { # main-class args... (foreground)
    # shellcheck disable=SC2086  # KAFKA_HEAP_OPTS holds several options
    java $KAFKA_HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$HERE/kafka/log4j2.yaml" -Dkafka.logs.dir="$LOGS" \
        -cp "$KAFKA_LIB/*" "$@"
}

kafka_configure() {
    mkdir -p "$KAFKA_DATA"
    sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" \
        -e "s|@KAFKA_CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
        -e "s|@KAFKA_DATA_DIR@|$KAFKA_DATA|g" \
        "$HERE/kafka/server.properties" >"$KAFKA_CONF"
    if [[ -f $KAFKA_DATA/meta.properties ]]; then
        local formatted
        formatted=$(cat "$KAFKA_DIR/formatted-ports" 2>/dev/null || true)
        if [[ -n $formatted && $formatted != "$KAFKA_PORT $KAFKA_CONTROLLER_PORT" ]]; then
            die "kafka: the storage in $(rel "$KAFKA_DATA") was formatted for ports $formatted, not
  $KAFKA_PORT $KAFKA_CONTROLLER_PORT (the controller address is part of the quorum). Use the same
  KAFKA_PORT, or reset Kafka: deploy/local/stack.sh down && rm -rf $(rel "$KAFKA_DATA")"
        fi
        return 0
    fi
    local cluster_id
    cluster_id=$(cat "$KAFKA_DIR/cluster-id" 2>/dev/null || true)
    if [[ -z $cluster_id ]]; then
        cluster_id=$(kafka_java kafka.tools.StorageTool random-uuid 2>>"$LOGS/kafka-format.log" | tail -n 1)
        [[ -n $cluster_id ]] || die "kafka: could not generate a cluster id (see $(rel "$LOGS/kafka-format.log"))"
        echo "$cluster_id" >"$KAFKA_DIR/cluster-id"
    fi
    log "kafka: formatting storage in $(rel "$KAFKA_DATA") (cluster id $cluster_id)…"
    if ! kafka_java kafka.tools.StorageTool format --standalone -t "$cluster_id" -c "$KAFKA_CONF" \
        >>"$LOGS/kafka-format.log" 2>&1; then
        tail_log "$LOGS/kafka-format.log"
        die "kafka: formatting failed (see $(rel "$LOGS/kafka-format.log"))"
    fi
    echo "$KAFKA_PORT $KAFKA_CONTROLLER_PORT" >"$KAFKA_DIR/formatted-ports"
}

# Whether a Kafka broker answers a metadata request on KAFKA_PORT (quick, bounded).
kafka_answers() {
    (cd "$REPO" && timeout 20 "$PY" - "127.0.0.1:$KAFKA_PORT" <<'PYEOF'
import asyncio
import sys

from aiokafka.admin import AIOKafkaAdminClient


async def main() -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=sys.argv[1], request_timeout_ms=5000)
    await asyncio.wait_for(admin.start(), 10)
    try:
        await asyncio.wait_for(admin.list_topics(), 10)
    finally:
        await admin.close()


asyncio.run(main())
PYEOF
    ) >>"$LOGS/provision.log" 2>&1
}

# Create Muster's topics; it doubles as the proof that metadata requests work. A broker
# that has just opened its port may still refuse topic creation for a few seconds.
kafka_provision() {
    local i out
    for ((i = 1; i <= 5; i++)); do
        if out=$(cd "$REPO" && timeout 90 "$PY" -m shared.events.provision \
            --bootstrap "127.0.0.1:$KAFKA_PORT" 2>>"$LOGS/provision.log"); then
            printf '%s' "$out"
            return 0
        fi
        sleep 2
    done
    tail_log "$LOGS/provision.log"
    return 1
}

kafka_up() {
    local pid
    need_venv
    if pid=$(pid_of kafka kafka.Kafka); then
        log "kafka: already running (pid $pid) on 127.0.0.1:$KAFKA_PORT, $(kafka_provision || echo 'topics could not be checked')"
        return 0
    fi
    rm -f "$RUN/kafka.pid"
    if port_open 127.0.0.1 "$KAFKA_PORT"; then
        local out
        if kafka_answers && out=$(kafka_provision); then
            log "kafka: reusing the server already on 127.0.0.1:$KAFKA_PORT (not started by stack.sh), $out"
            return 0
        fi
        die "kafka: port $KAFKA_PORT is taken by something that does not answer as Kafka.
  Stop it, or choose other ports: KAFKA_PORT=19092 deploy/local/stack.sh up"
    fi
    port_open 127.0.0.1 "$KAFKA_CONTROLLER_PORT" &&
        die "kafka: controller port $KAFKA_CONTROLLER_PORT is taken; stop that process or set KAFKA_CONTROLLER_PORT"
    kafka_fetch
    kafka_tools
    kafka_configure
    log "kafka: starting Apache Kafka $(basename "$(compgen -G "$KAFKA_LIB/kafka_2.13-*.jar" | head -n 1)" .jar | sed 's/kafka_2.13-//') (KRaft, single node)…"
    # shellcheck disable=SC2086
    start_bg kafka "$LOGS/kafka.stdout.log" java $KAFKA_HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -Djava.awt.headless=true -Dlog4j2.configurationFile="$HERE/kafka/log4j2.yaml" \
        -Dkafka.logs.dir="$LOGS" -cp "$KAFKA_LIB/*" kafka.Kafka "$KAFKA_CONF"
    # the broker opens its port only once it has loaded every partition's log; a
    # development machine's data piles up test topics (thousands after many runs), so the
    # wait grows with them: 90 s, plus a second per 100 partition directories
    local partitions wait_s
    partitions=$(find "$KAFKA_DATA" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l)
    wait_s=$((90 + partitions / 100))
    local deadline=$((SECONDS + wait_s)) next_note=$((SECONDS + 20))
    until port_open 127.0.0.1 "$KAFKA_PORT"; do
        if ! pid_of kafka kafka.Kafka >/dev/null; then
            tail_log "$LOGS/kafka.stdout.log"
            tail_log "$LOGS/kafka.log"
            die "kafka: the broker exited during start-up (logs above, $(rel "$LOGS/kafka.log"))"
        fi
        if ((SECONDS > deadline)); then
            tail_log "$LOGS/kafka.log"
            die "kafka: port $KAFKA_PORT not open after $wait_s s (see $(rel "$LOGS/kafka.log")).
  $partitions partition logs are in $(rel "$KAFKA_DATA"); if they are old test topics, start
  Kafka empty (its data is only what the tests and the demo wrote):
  deploy/local/stack.sh down && rm -rf $(rel "$KAFKA_DATA") && make infra"
        fi
        if ((SECONDS > next_note)); then
            log "kafka: still loading $partitions partition logs… (up to $wait_s s)"
            next_note=$((SECONDS + 20))
        fi
        sleep 0.5
    done
    local out
    out=$(kafka_provision) || die "kafka: the broker is up but topics could not be created (see $(rel "$LOGS/provision.log"))"
    log "kafka: ready on 127.0.0.1:$KAFKA_PORT, log $(rel "$LOGS/kafka.log"), $out"
}

# ---------------------------------------------------------------------------- postgres

PG_BIN=""
pg_find_bin() {
    PG_BIN=$(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -n 1 | xargs -r dirname)
}

pg_install() {
    pg_find_bin
    [[ -n $PG_BIN ]] && return 0
    # Only our own cluster: stop Debian's package from creating (and later booting) "main".
    local cc=/etc/postgresql-common/createcluster.conf sudo=()
    [[ $EUID -ne 0 ]] && sudo=(sudo)
    if [[ ! -e $cc ]]; then
        "${sudo[@]}" mkdir -p "$(dirname "$cc")"
        echo "create_main_cluster = false" | "${sudo[@]}" tee "$cc" >/dev/null
    fi
    apt_install postgresql
    pg_find_bin
    [[ -n $PG_BIN ]] || die "postgres: installed, but no /usr/lib/postgresql/*/bin/initdb was found"
}

as_pg() { # PostgreSQL refuses to run as root: use its system user when we are root
    if [[ $EUID -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# The data directory: .local/pg/data when the postgres user can reach it; otherwise (a repo
# under /root, say) /var/lib/muster/pg-<hash of the .local path>/data, with .local/pg/data a
# symlink to it so it is still found (and removed with .local) from the repository.
PG_DATA=""
pg_datadir() {
    if [[ -n ${MUSTER_PG_DATA:-} ]]; then
        PG_DATA=$MUSTER_PG_DATA
    elif [[ -L $LOCAL/pg/data ]]; then
        PG_DATA=$(readlink -f "$LOCAL/pg/data")
    elif [[ $EUID -ne 0 || -d $LOCAL/pg/data ]]; then
        PG_DATA=$LOCAL/pg/data
    else
        id -u postgres >/dev/null 2>&1 ||
            useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
        mkdir -p "$LOCAL/pg"
        chown postgres:postgres "$LOCAL/pg"
        chmod 700 "$LOCAL/pg"
        if runuser -u postgres -- test -w "$LOCAL/pg"; then
            PG_DATA=$LOCAL/pg/data
        else
            local alt
            alt=/var/lib/muster/pg-$(printf '%s' "$LOCAL" | sha256sum | cut -c1-12)
            if [[ -e $alt ]]; then
                log "postgres: $alt is left from a removed .local (a reset): starting afresh"
                rm -rf "$alt"
            fi
            mkdir -p "$alt/data"
            chmod 755 /var/lib/muster
            chown -R postgres:postgres "$alt"
            chmod 700 "$alt/data"
            ln -sfn "$alt/data" "$LOCAL/pg/data"
            log "postgres: the postgres user cannot enter $(rel "$LOCAL"), so the data lives in $alt/data
  (.local/pg/data links to it)"
            PG_DATA=$alt/data
        fi
    fi
}

pg_running_pid() { # the postmaster's pid when our cluster runs
    [[ -n $PG_DATA && -f $PG_DATA/postmaster.pid ]] || return 1
    local pid
    pid=$(head -n 1 "$PG_DATA/postmaster.pid")
    [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 1
    printf '%s' "$pid"
}

pg_psql() { # as the superuser of our cluster
    "$PG_BIN/psql" -X -q -w -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"
}

pg_up() {
    pg_install
    pg_datadir
    local pid
    if pid=$(pg_running_pid); then
        echo "$pid" >"$RUN/postgres.pid"
        log "postgres: already running (pid $pid) on 127.0.0.1:$PGPORT"
        return 0
    fi
    rm -f "$RUN/postgres.pid"
    if port_open 127.0.0.1 "$PGPORT"; then
        if PGCONNECT_TIMEOUT=3 "$PG_BIN/psql" -X -w -h 127.0.0.1 -p "$PGPORT" -U muster -d muster \
            -tAc 'select 1' >/dev/null 2>&1; then
            log "postgres: reusing the server already on 127.0.0.1:$PGPORT (not started by stack.sh; accepts muster@muster)"
            return 0
        fi
        die "postgres: port $PGPORT is taken by a server that is not ours and does not accept
  \`psql -h 127.0.0.1 -p $PGPORT -U muster muster\`. Stop it (Debian: pg_ctlcluster <version> main stop),
  or run ours on another port: PGPORT=5433 deploy/local/stack.sh up (and DATABASE_URL to match)"
    fi
    if [[ ! -f $PG_DATA/PG_VERSION ]]; then
        log "postgres: initdb in $(rel "$PG_DATA") (trust authentication on 127.0.0.1: a dev stack)…"
        mkdir -p "$PG_DATA"
        [[ $EUID -eq 0 ]] && chown postgres:postgres "$PG_DATA"
        chmod 700 "$PG_DATA"
        if ! as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 --no-locale \
            >>"$LOGS/postgres-initdb.log" 2>&1; then
            tail_log "$LOGS/postgres-initdb.log"
            die "postgres: initdb failed (see $(rel "$LOGS/postgres-initdb.log"))"
        fi
        grep -q "^include_if_exists = 'muster.conf'" "$PG_DATA/postgresql.conf" ||
            echo "include_if_exists = 'muster.conf'" >>"$PG_DATA/postgresql.conf"
    fi
    # Rewritten on every start so a changed PGPORT takes effect.
    cat >"$PG_DATA/muster.conf" <<EOF
# Written by deploy/local/stack.sh on every start; edit the script, not this file.
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = ''   # TCP only: never collides with a system cluster's socket
max_connections = 200
shared_buffers = 128MB
timezone = 'UTC'
# A throw-away dev/test cluster: speed over crash safety. After a power loss, reset it
# (deploy/local/stack.sh down && rm -rf .local/pg).
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    [[ $EUID -eq 0 ]] && chown postgres:postgres "$PG_DATA/muster.conf"
    log "postgres: starting $("$PG_BIN/postgres" --version | awk '{print $3}')…"
    # Server output goes to pg_ctl's stdout, which we open here: the log file does not need
    # to be reachable by the postgres user.
    if ! as_pg "$PG_BIN/pg_ctl" start -D "$PG_DATA" -w -t 60 \
        </dev/null >>"$LOGS/postgres.log" 2>&1 9>&-; then
        tail_log "$LOGS/postgres.log"
        die "postgres: did not start (see $(rel "$LOGS/postgres.log"))"
    fi
    pid=$(pg_running_pid) || die "postgres: pg_ctl reported success but no postmaster runs (see $(rel "$LOGS/postgres.log"))"
    echo "$pid" >"$RUN/postgres.pid"
    if [[ -z $(pg_psql -tAc "select 1 from pg_roles where rolname = 'muster'") ]]; then
        # Superuser: tests create schemas and databases. The password only matters to
        # URLs that carry one (compose uses muster:muster); trust ignores it here.
        pg_psql -c "create role muster login superuser password 'muster'"
    fi
    if [[ -z $(pg_psql -tAc "select 1 from pg_database where datname = 'muster'") ]]; then
        pg_psql -c "create database muster owner muster"
    fi
    log "postgres: ready on 127.0.0.1:$PGPORT, log $(rel "$LOGS/postgres.log")"
}

pg_down() {
    pg_find_bin
    pg_datadir_existing
    local pid
    if [[ -z $PG_BIN || -z $PG_DATA ]] || ! pid=$(pg_running_pid); then
        rm -f "$RUN/postgres.pid"
        log "postgres: not running"
        return 0
    fi
    log "postgres: stopping (pid $pid)…"
    if ! as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 20 >/dev/null 2>>"$LOGS/postgres.log"; then
        warn "postgres did not stop within 20 s: immediate shutdown"
        as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m immediate -w -t 20 >/dev/null 2>>"$LOGS/postgres.log" || true
    fi
    rm -f "$RUN/postgres.pid"
    log "postgres: stopped"
}

# For down/status: the data directory if one was made, without creating anything.
pg_datadir_existing() {
    if [[ -n ${MUSTER_PG_DATA:-} ]]; then
        PG_DATA=$MUSTER_PG_DATA
    elif [[ -e $LOCAL/pg/data ]]; then
        PG_DATA=$(readlink -f "$LOCAL/pg/data")
    else
        PG_DATA=""
    fi
}

# ---------------------------------------------------------------------------- redis

redis_up() {
    local pid
    if pid=$(pid_of redis redis-server); then
        log "redis: already running (pid $pid) on 127.0.0.1:$REDIS_PORT"
        return 0
    fi
    rm -f "$RUN/redis.pid"
    if redis_ping "$REDIS_PORT"; then
        log "redis: reusing the server already on 127.0.0.1:$REDIS_PORT (not started by stack.sh)"
        return 0
    fi
    port_open 127.0.0.1 "$REDIS_PORT" &&
        die "redis: port $REDIS_PORT is taken by something that does not answer PING.
  Stop it, or run ours elsewhere: REDIS_PORT=6380 deploy/local/stack.sh up (and REDIS_URL to match)"
    command -v redis-server >/dev/null 2>&1 || apt_install redis-server
    mkdir -p "$LOCAL/redis"
    cat >"$LOCAL/redis/redis.conf" <<EOF
# Written by deploy/local/stack.sh on every start.
bind 127.0.0.1
port $REDIS_PORT
protected-mode yes
daemonize yes
supervised no
pidfile $RUN/redis.pid
logfile $LOGS/redis.log
loglevel notice
dir $LOCAL/redis
dbfilename dump.rdb
save 300 10
appendonly no
EOF
    log "redis: starting $(redis-server --version | awk '{print $3}' | sed 's/v=//')…"
    redis-server "$LOCAL/redis/redis.conf" </dev/null >>"$LOGS/redis.log" 2>&1 9>&- ||
        {
            tail_log "$LOGS/redis.log"
            die "redis: redis-server refused to start (see $(rel "$LOGS/redis.log"))"
        }
    local deadline=$((SECONDS + 15))
    until redis_ping "$REDIS_PORT"; do
        if ((SECONDS > deadline)); then
            tail_log "$LOGS/redis.log"
            die "redis: no PONG on 127.0.0.1:$REDIS_PORT after 15 s (see $(rel "$LOGS/redis.log"))"
        fi
        sleep 0.2
    done
    log "redis: ready on 127.0.0.1:$REDIS_PORT, log $(rel "$LOGS/redis.log")"
}

# ---------------------------------------------------------------------------- chromium

# The browser tests drive Debian's Chromium (Playwright's own download is not used).
chromium_up() {
    if [[ ! -x $CHROMIUM ]]; then
        apt_install chromium
        [[ -x $CHROMIUM ]] ||
            die "chromium: installed, but $CHROMIUM is missing; set MUSTER_CHROMIUM to its path"
    fi
    log "chromium: $("$CHROMIUM" --version 2>/dev/null | head -n 1 || printf '%s' "$CHROMIUM")"
}

# ---------------------------------------------------------------------------- speech

# Voice calls in Albanian play speech alerts renders itself: Twilio has no Albanian voice
# (docs/alerts.md, "Voice calls"). Without espeak-ng those calls speak English.
speech_up() {
    command -v espeak-ng >/dev/null 2>&1 || apt_install espeak-ng
}

# After-action reports as PDF: WeasyPrint (from PyPI) draws text with the system's pango
# (docs/dispatch.md, "Reports"); fonts-dejavu-core gives the page its typeface.
reports_up() {
    if ! ldconfig -p 2>/dev/null | grep -q 'libpango-1.0.so.0' ||
        ! ldconfig -p 2>/dev/null | grep -q 'libpangoft2-1.0.so.0'; then
        apt_install libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core
    fi
}

# ---------------------------------------------------------------------------- secrets

random_secret() { # 32 URL-safe characters from the kernel's CSPRNG (no venv needed)
    head -c 24 /dev/urandom | base64 | tr '+/' '-_'
}

# Written once: later runs keep the same passwords, so the accounts made with them still
# sign in. Never committed (.local is git-ignored) and readable by its owner only.
secrets_write() {
    [[ -s $SECRETS ]] && return 0
    local tmp=$SECRETS.partial
    mkdir -p "$(dirname "$SECRETS")"
    (
        umask 077
        {
            echo "# Written once by deploy/local/stack.sh for this machine's dev stack; never commit it."
            echo "# Remove it (after stack.sh down) for new values; accounts already made keep theirs."
            echo "MUSTER_BOOTSTRAP_ADMIN_EMAIL=admin@muster.local"
            echo "MUSTER_BOOTSTRAP_ADMIN_PASSWORD=$(random_secret)"
            echo "TWILIO_AUTH_TOKEN=$(random_secret)"
            echo "CONSOLE_SESSION_SECRET=$(random_secret)"
        } >"$tmp"
    )
    chmod 600 "$tmp"
    mv "$tmp" "$SECRETS"
    log "secrets: wrote $(rel "$SECRETS") (mode 600; random passwords and keys for this machine)"
}

# Export each KEY=value of the secrets file unless KEY is already set in the environment.
secrets_export() {
    [[ -f $SECRETS ]] || return 0
    local line key value
    while IFS= read -r line || [[ -n $line ]]; do
        [[ $line =~ ^([A-Z_][A-Z0-9_]*)=(.*)$ ]] || continue
        key=${BASH_REMATCH[1]} value=${BASH_REMATCH[2]}
        [[ -n ${!key+set} ]] && continue
        export "$key=$value"
    done <"$SECRETS"
}

# ---------------------------------------------------------------------------- services

service_port() {
    local var
    var=$(printf '%s_PORT' "$1" | tr '[:lower:]' '[:upper:]')
    case $1 in
        members) printf '%s' "${!var:-8001}" ;;
        alerts) printf '%s' "${!var:-8002}" ;;
        dispatch) printf '%s' "${!var:-8003}" ;;
        console) printf '%s' "${!var:-8000}" ;;
    esac
}

service_env() {
    export KAFKA_BOOTSTRAP_SERVERS=${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:$KAFKA_PORT}
    export DATABASE_URL=${DATABASE_URL:-postgresql+asyncpg://muster@127.0.0.1:$PGPORT/muster}
    export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:$REDIS_PORT/0}
    export MEMBERS_PORT ALERTS_PORT DISPATCH_PORT CONSOLE_PORT
    MEMBERS_PORT=$(service_port members) ALERTS_PORT=$(service_port alerts) DISPATCH_PORT=$(service_port dispatch)
    CONSOLE_PORT=$(service_port console)
    # Defaults that point at another service follow its port.
    export MUSTER_JWKS_URL=${MUSTER_JWKS_URL:-http://127.0.0.1:$MEMBERS_PORT/.well-known/jwks.json}
    export MUSTER_PUBLIC_BASE_URL=${MUSTER_PUBLIC_BASE_URL:-http://127.0.0.1:$ALERTS_PORT}
    export CONSOLE_MEMBERS_URL=${CONSOLE_MEMBERS_URL:-http://127.0.0.1:$MEMBERS_PORT}
    export CONSOLE_ALERTS_URL=${CONSOLE_ALERTS_URL:-http://127.0.0.1:$ALERTS_PORT}
    export CONSOLE_DISPATCH_URL=${CONSOLE_DISPATCH_URL:-http://127.0.0.1:$DISPATCH_PORT}
    export DISPATCH_CONSOLE_URL=${DISPATCH_CONSOLE_URL:-http://127.0.0.1:$CONSOLE_PORT}
    secrets_export
}

services_migrate() {
    local name
    for name in "${SERVICES[@]}"; do
        if [[ ! -f $REPO/services/$name/__main__.py ]]; then
            log "$name: no services/$name/__main__.py yet: no migrations to run (skipped)"
        elif [[ ! -f $REPO/services/$name/migrations/env.py ]]; then
            # the console owns no data: nothing to migrate, nothing worth a line
            [[ $name == console ]] ||
                log "$name: no alembic env in services/$name/migrations: no migrations (skipped)"
        else
            log "$name: migrating…"
            if ! (cd "$REPO" && "$PY" -m "services.$name" migrate) </dev/null >>"$LOGS/$name-migrate.log" 2>&1; then
                tail_log "$LOGS/$name-migrate.log"
                die "$name: migrations failed (see $(rel "$LOGS/$name-migrate.log"))"
            fi
        fi
    done
}

services_up() {
    local name pid port started=()
    for name in "${SERVICES[@]}"; do
        port=$(service_port "$name")
        if [[ ! -f $REPO/services/$name/__main__.py ]]; then
            log "$name: services/$name/__main__.py does not exist yet (skipped)"
            continue
        fi
        if pid=$(pid_of "$name" "services.$name"); then
            log "$name: already running (pid $pid) on 127.0.0.1:$port"
            continue
        fi
        rm -f "$RUN/$name.pid"
        port_open 127.0.0.1 "$port" &&
            die "$name: port $port is taken by another process; stop it or set $(printf '%s' "$name" | tr '[:lower:]' '[:upper:]')_PORT"
        log "$name: starting on 127.0.0.1:$port…"
        (cd "$REPO" && start_bg "$name" "$LOGS/$name.log" "$PY" -m "services.$name")
        started+=("$name")
    done
    for name in "${started[@]}"; do
        port=$(service_port "$name")
        local deadline=$((SECONDS + READY_TIMEOUT)) code=""
        until [[ $code == 200 ]]; do
            if ! pid_of "$name" "services.$name" >/dev/null; then
                tail_log "$LOGS/$name.log" 40
                die "$name: exited during start-up (log above, $(rel "$LOGS/$name.log"))"
            fi
            if ((SECONDS > deadline)); then
                tail_log "$LOGS/$name.log" 40
                die "$name: GET /readyz on 127.0.0.1:$port did not answer 200 within ${READY_TIMEOUT} s (last: ${code:-no answer}).
  It is still running; stop everything with deploy/local/stack.sh down"
            fi
            sleep 0.5
            code=$(http_status "$port" /readyz)
        done
        log "$name: ready on http://127.0.0.1:$port, log $(rel "$LOGS/$name.log")"
    done
}

# ---------------------------------------------------------------------------- commands

lock() {
    exec 9>"$RUN/stack.lock"
    if ! flock -n 9; then
        log "waiting for another deploy/local/stack.sh to finish…"
        flock 9
    fi
}

cmd_up() {
    local infra_only=0
    for arg in "$@"; do
        case $arg in
            --infra) infra_only=1 ;;
            *) die "unknown option for up: $arg (usage: stack.sh up [--infra])" ;;
        esac
    done
    lock
    local t0=$SECONDS
    pg_up
    redis_up
    kafka_up
    speech_up
    reports_up
    if [[ $infra_only -eq 1 ]]; then
        chromium_up
    else
        need_venv
        secrets_write
        service_env
        services_migrate
        services_up
    fi
    log "stack: up ($((SECONDS - t0)) s). Stop it with deploy/local/stack.sh down"
    [[ $infra_only -eq 1 ]] || sign_in_banner
}

# What to open and how to sign in, once everything answers.
sign_in_banner() {
    if [[ ! -f $REPO/services/console/__main__.py ]]; then
        log "console: not built yet; the APIs answer on http://127.0.0.1:$(service_port members) (members),
  http://127.0.0.1:$(service_port alerts) (alerts) and http://127.0.0.1:$(service_port dispatch) (dispatch)"
        return 0
    fi
    log ""
    log "  Muster console: http://127.0.0.1:$(service_port console)"
    log "  Sign in as ${MUSTER_BOOTSTRAP_ADMIN_EMAIL:-?}, password ${MUSTER_BOOTSTRAP_ADMIN_PASSWORD:-?}"
    log "  (kept in $(rel "$SECRETS")), or run \`make demo\` for coordinator/authority accounts."
    log ""
}

cmd_down() {
    lock
    local i
    for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
        stop_pid "${SERVICES[i]}" "services.${SERVICES[i]}"
    done
    stop_pid kafka kafka.Kafka
    stop_pid redis redis-server
    pg_down
}

cmd_status() {
    local pid infra_ok=1 name port
    if pid=$(pid_of kafka kafka.Kafka); then
        log "kafka: running (pid $pid) on 127.0.0.1:$KAFKA_PORT, log $(rel "$LOGS/kafka.log")"
    elif port_open 127.0.0.1 "$KAFKA_PORT"; then
        log "kafka: running on 127.0.0.1:$KAFKA_PORT (not started by stack.sh)"
    else
        log "kafka: not running"
        infra_ok=0
    fi
    pg_datadir_existing
    if pid=$(pg_running_pid); then
        log "postgres: running (pid $pid) on 127.0.0.1:$PGPORT, data $(rel "$PG_DATA"), log $(rel "$LOGS/postgres.log")"
    elif port_open 127.0.0.1 "$PGPORT"; then
        log "postgres: running on 127.0.0.1:$PGPORT (not started by stack.sh)"
    else
        log "postgres: not running"
        infra_ok=0
    fi
    if pid=$(pid_of redis redis-server); then
        log "redis: running (pid $pid) on 127.0.0.1:$REDIS_PORT, log $(rel "$LOGS/redis.log")"
    elif redis_ping "$REDIS_PORT"; then
        log "redis: running on 127.0.0.1:$REDIS_PORT (not started by stack.sh)"
    else
        log "redis: not running"
        infra_ok=0
    fi
    for name in "${SERVICES[@]}"; do
        port=$(service_port "$name")
        if pid=$(pid_of "$name" "services.$name"); then
            log "$name: running (pid $pid) on http://127.0.0.1:$port, /readyz $(http_status "$port" /readyz || true)"
        else
            log "$name: not running"
        fi
    done
    [[ $infra_ok -eq 1 ]] || return 3
}

usage() {
    cat <<EOF
usage: deploy/local/stack.sh up [--infra] | down | status
  up          Kafka, PostgreSQL, Redis, migrations, then members/alerts/dispatch/console
  up --infra  Kafka, PostgreSQL, Redis and Chromium (for the browser tests) only
  down        stop what stack.sh started (services, Kafka, Redis, PostgreSQL)
  status      one line per part (exit 3 when Kafka, PostgreSQL or Redis is down)
State, data and logs: $(rel "$LOCAL")/ (see deploy/local/README.md)
EOF
}

main() {
    local cmd=${1:-}
    [[ $# -gt 0 ]] && shift
    case $cmd in
        up | down | status) ;;
        -h | --help | help)
            usage
            return 0
            ;;
        *)
            usage >&2
            return 2
            ;;
    esac
    mkdir -p "$LOGS" "$RUN"
    case $cmd in
        up) cmd_up "$@" ;;
        down) cmd_down ;;
        status) cmd_status ;;
    esac
}

# Sourced (the tests call single functions), it only defines them.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
