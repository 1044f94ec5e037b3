#!/usr/bin/env bash
# Development/test services on 127.0.0.1: RabbitMQ, PostgreSQL, Redis and FerretDB (MongoDB wire protocol).
# Usage: scripts/services.sh up [--observability]|down|status|env|restart NAME
# Installs what is missing (apt on Debian/Ubuntu, `go install` for FerretDB), starts each service,
# waits until it answers, and is idempotent: running `up` twice is quick and changes nothing.
set -euo pipefail

STATE_DIR="${OBSERVATORY_SERVICES_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/observatory/services}"
PG_PORT="${OBSERVATORY_PG_PORT:-5432}"
AMQP_PORT="${OBSERVATORY_AMQP_PORT:-5672}"
REDIS_PORT="${OBSERVATORY_REDIS_PORT:-6379}"
MONGO_PORT="${OBSERVATORY_MONGO_PORT:-27017}"
FERRETDB_VERSION="${OBSERVATORY_FERRETDB_VERSION:-v1.24.2}"
PG_USER=observatory PG_PASS=observatory PG_DB=observatory FERRET_DB=ferretdb

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
as_root() { if [ -n "$SUDO" ]; then sudo -E "$@"; else "$@"; fi; }

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {  # wait_for NAME SECONDS CMD...
  local name=$1 secs=$2; shift 2
  local i
  for ((i = 0; i < secs * 4; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.25
  done
  die "$name did not become ready within ${secs}s (logs: $STATE_DIR)"
}

apt_install() {  # apt_install PKG...
  command -v apt-get >/dev/null || die "apt-get not found: install $* by hand"
  log "installing $* (apt)"
  if [ ! -f "$STATE_DIR/.apt-updated" ]; then
    $SUDO apt-get update -qq >/dev/null && touch "$STATE_DIR/.apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >"$STATE_DIR/apt.log" 2>&1 \
    || die "apt-get install $* failed (see $STATE_DIR/apt.log)"
}

# ---------------------------------------------------------------- PostgreSQL
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
pg_ready() { pg_isready -q -h 127.0.0.1 -p "$PG_PORT"; }
pg_psql() { $SUDO runuser -u postgres -- psql -p "$PG_PORT" -d postgres -qAt -v ON_ERROR_STOP=1 "$@"; }
postgres_up() {
  [ -n "$(pg_bin)" ] || apt_install postgresql
  if ! pg_ready; then
    local ver; ver=$(basename "$(dirname "$(pg_bin)")")
    if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -qx "$ver main"; then
      $SUDO pg_createcluster "$ver" main -p "$PG_PORT" >/dev/null
    fi
    log "starting PostgreSQL $ver on 127.0.0.1:$PG_PORT"
    $SUDO pg_ctlcluster "$ver" main start -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c max_connections=300" \
      || die "PostgreSQL failed to start (see /var/log/postgresql/)"
  fi
  wait_for PostgreSQL 60 pg_ready
  # Role and database for the observatory (idempotent).
  pg_psql >/dev/null <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER') THEN
    CREATE ROLE $PG_USER LOGIN SUPERUSER PASSWORD '$PG_PASS';
  END IF;
END \$\$;
SQL
  if [ -z "$(pg_psql -c "SELECT 1 FROM pg_database WHERE datname='$PG_DB'")" ]; then
    $SUDO runuser -u postgres -- createdb -p "$PG_PORT" -O "$PG_USER" "$PG_DB"
  fi
}
postgres_down() {
  local b; b=$(pg_bin); [ -n "$b" ] || return 0
  local ver; ver=$(basename "$(dirname "$b")")
  if pg_ready; then log "stopping PostgreSQL"; $SUDO pg_ctlcluster "$ver" main stop -m fast || true; fi
}

# ---------------------------------------------------------------- Redis
redis_ready() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]; }
redis_up() {
  command -v redis-server >/dev/null || apt_install redis-server
  if ! redis_ready; then
    mkdir -p "$STATE_DIR/redis"
    log "starting Redis on 127.0.0.1:$REDIS_PORT"
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes --dir "$STATE_DIR/redis" \
      --pidfile "$STATE_DIR/redis.pid" --logfile "$STATE_DIR/redis.log" --appendonly yes >/dev/null \
      || die "Redis failed to start (see $STATE_DIR/redis.log)"
  fi
  wait_for Redis 30 redis_ready
}
redis_down() {
  if command -v redis-cli >/dev/null && redis_ready; then
    log "stopping Redis"; redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown >/dev/null 2>&1 || true
  fi
}

# ---------------------------------------------------------------- RabbitMQ
rabbit_env() {
  export RABBITMQ_NODENAME=rabbit@localhost RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT="$AMQP_PORT" ERL_EPMD_ADDRESS=127.0.0.1 RABBITMQ_DIST_PORT=25672 \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
}
rabbit_ready() { rabbit_env; as_root rabbitmq-diagnostics -q check_port_connectivity >/dev/null 2>&1 && port_open "$AMQP_PORT"; }
rabbitmq_up() {
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  rabbit_env
  if ! port_open "$AMQP_PORT"; then
    log "starting RabbitMQ on 127.0.0.1:$AMQP_PORT"
    # Started as the rabbitmq user like Debian's wrapper does, but with its open-file limit raised to the
    # hard limit: PAM leaves the soft one at 1024, and a broker with more durable queues than free file
    # handles stalls in recovery at start-up ("Recovering N queues, available file handles: ...").
    as_root su rabbitmq -s /bin/sh -c 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; cd /var/lib/rabbitmq &&
      exec /usr/lib/rabbitmq/bin/rabbitmq-server -detached' >/dev/null 2>&1 \
      || die "RabbitMQ failed to start (see /var/log/rabbitmq/)"
    wait_for RabbitMQ 120 port_open "$AMQP_PORT"
    as_root rabbitmqctl -q await_startup >/dev/null 2>&1 || die "RabbitMQ did not finish starting (see /var/log/rabbitmq/)"
  fi
}
rabbitmq_down() {
  command -v rabbitmqctl >/dev/null || return 0
  rabbit_env
  if port_open "$AMQP_PORT"; then
    log "stopping RabbitMQ"; as_root rabbitmqctl -q stop >/dev/null 2>&1 || true
    local i; for ((i = 0; i < 120; i++)); do port_open "$AMQP_PORT" || break; sleep 0.25; done
  fi
  $SUDO pkill -u rabbitmq -f epmd >/dev/null 2>&1 || true
}

# ---------------------------------------------------------------- FerretDB (MongoDB wire protocol)
# MONGO_URL set to anything but this script's own FerretDB means: use that MongoDB.
mongo_external() { [ -n "${MONGO_URL:-}" ] && [ "$MONGO_URL" != "mongodb://127.0.0.1:$MONGO_PORT/" ]; }
ferretdb_bin() { echo "$STATE_DIR/bin/ferretdb"; }
# `go install github.com/FerretDB/FerretDB/cmd/ferretdb@VERSION` builds a binary that panics at start-up,
# because the release's build/version/version.txt is generated and not part of the module. So fetch the
# same module source through the proxy, add that one file, and build the same command from it.
build_ferretdb() {
  local dir src
  dir=$(cd "$STATE_DIR" && go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ] || return 1
  src="$STATE_DIR/ferretdb-src"
  rm -rf "$src" && cp -r "$dir" "$src" && chmod -R u+w "$src"
  echo "$FERRETDB_VERSION" >"$src/build/version/version.txt"
  mkdir -p "$STATE_DIR/bin"
  (cd "$src" && go build -buildvcs=false -o "$STATE_DIR/bin/ferretdb" ./cmd/ferretdb) && rm -rf "$src"
}
ferretdb_up() {
  if mongo_external; then log "MONGO_URL is set: using that MongoDB, not starting FerretDB"; return 0; fi
  local bin; bin=$(ferretdb_bin)
  if [ ! -x "$bin" ]; then
    command -v go >/dev/null || apt_install golang-go
    log "building FerretDB $FERRETDB_VERSION from the Go module proxy (first run only, about a minute)"
    build_ferretdb >"$STATE_DIR/ferretdb-build.log" 2>&1 \
      || { log "retrying the build with GOTOOLCHAIN=go1.23.12"; \
           GOTOOLCHAIN=go1.23.12 build_ferretdb >>"$STATE_DIR/ferretdb-build.log" 2>&1; } \
      || die "FerretDB build failed (see $STATE_DIR/ferretdb-build.log)"
  fi
  local pid; pid=$(cat "$STATE_DIR/ferretdb.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- --handler=postgresql; then
    log "FerretDB runs on its old SQLite backend: restarting it on PostgreSQL (the old data stays in $STATE_DIR/ferretdb/data)"
    ferretdb_down
  fi
  if ! port_open "$MONGO_PORT"; then
    # The PostgreSQL handler (FerretDB's main one): it pushes equality filters down to SQL, so a job's
    # events are found in milliseconds; the SQLite handler decodes the whole collection in Go on every
    # query (~0.7 s per job at 10 000 events). Its documents live in their own database, FERRET_DB.
    if [ -z "$(pg_psql -c "SELECT 1 FROM pg_database WHERE datname='$FERRET_DB'")" ]; then
      $SUDO runuser -u postgres -- createdb -p "$PG_PORT" -O "$PG_USER" "$FERRET_DB"
    fi
    mkdir -p "$STATE_DIR/ferretdb/state"
    log "starting FerretDB on 127.0.0.1:$MONGO_PORT (PostgreSQL backend, database $FERRET_DB)"
    nohup "$bin" --handler=postgresql \
      --postgresql-url="postgres://$PG_USER:$PG_PASS@127.0.0.1:$PG_PORT/$FERRET_DB" \
      --listen-addr="127.0.0.1:$MONGO_PORT" --state-dir="$STATE_DIR/ferretdb/state" \
      --telemetry=disable --log-level=warn --debug-addr=- >"$STATE_DIR/ferretdb.log" 2>&1 &
    echo $! >"$STATE_DIR/ferretdb.pid"
  fi
  wait_for FerretDB 60 port_open "$MONGO_PORT"
}
ferretdb_down() {
  if [ -f "$STATE_DIR/ferretdb.pid" ]; then
    local pid; pid=$(cat "$STATE_DIR/ferretdb.pid")
    if kill -0 "$pid" 2>/dev/null; then
      log "stopping FerretDB"; kill "$pid"
      local i; for ((i = 0; i < 40; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    fi
    rm -f "$STATE_DIR/ferretdb.pid"
  fi
}

# ---------------------------------------------------------------- Prometheus and Alertmanager (--observability)
ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROM_PORT="${OBSERVATORY_PROMETHEUS_PORT:-9090}"
AM_PORT="${OBSERVATORY_ALERTMANAGER_PORT:-9093}"
start_daemon() {  # start_daemon NAME PORT CMD...
  local name=$1 port=$2; shift 2
  if ! port_open "$port"; then
    log "starting $name on 127.0.0.1:$port"
    nohup "$@" >"$STATE_DIR/$name.log" 2>&1 &
    echo $! >"$STATE_DIR/$name.pid"
  fi
  wait_for "$name" 60 port_open "$port"
}
stop_daemon() {  # stop_daemon NAME
  local f="$STATE_DIR/$1.pid"
  [ -f "$f" ] || return 0
  local pid; pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping $1"; kill "$pid"
    local i; for ((i = 0; i < 40; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  fi
  rm -f "$f"
}
# The shared secret Alertmanager sends to the read model's webhook (OBSERVATORY_WEBHOOK_SECRET): made once,
# kept in the state folder, next to the copy of alertmanager.yml whose credentials_file names it.
webhook_secret() {
  local f="$STATE_DIR/webhook-secret"
  if [ ! -s "$f" ]; then
    (umask 077; head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 40 >"$f")
  fi
  cat "$f"
}
observability_up() {
  command -v prometheus >/dev/null || apt_install prometheus
  command -v prometheus-alertmanager >/dev/null || apt_install prometheus-alertmanager
  mkdir -p "$STATE_DIR/prometheus-data" "$STATE_DIR/alertmanager-data"
  webhook_secret >/dev/null
  cp "$ROOT_DIR/observability/alertmanager.yml" "$STATE_DIR/alertmanager.yml"
  start_daemon alertmanager "$AM_PORT" prometheus-alertmanager \
    --config.file="$STATE_DIR/alertmanager.yml" --web.listen-address="127.0.0.1:$AM_PORT" \
    --cluster.listen-address= --storage.path="$STATE_DIR/alertmanager-data"
  start_daemon prometheus "$PROM_PORT" prometheus \
    --config.file="$ROOT_DIR/observability/prometheus.yml" --web.listen-address="127.0.0.1:$PROM_PORT" \
    --storage.tsdb.path="$STATE_DIR/prometheus-data" --web.enable-lifecycle
}
observability_down() { stop_daemon prometheus; stop_daemon alertmanager; }

print_env() {
  echo "export AMQP_URL='amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2F'"
  echo "export POSTGRES_DSN='postgresql://$PG_USER:$PG_PASS@127.0.0.1:$PG_PORT/$PG_DB'"
  if mongo_external; then echo "export MONGO_URL='$MONGO_URL'";
  else echo "export MONGO_URL='mongodb://127.0.0.1:$MONGO_PORT/'"; fi
  echo "export REDIS_URL='redis://127.0.0.1:$REDIS_PORT/0'"
  echo "export OBSERVATORY_PROMETHEUS_URL='http://127.0.0.1:$PROM_PORT'"
  echo "export OBSERVATORY_ALERTMANAGER_URL='http://127.0.0.1:$AM_PORT'"
  echo "export OBSERVATORY_WEBHOOK_SECRET='$(webhook_secret)'"
}

status() {
  local rc=0
  pg_ready 2>/dev/null && echo "postgresql: up (127.0.0.1:$PG_PORT)" || { echo "postgresql: down"; rc=1; }
  port_open "$AMQP_PORT" && echo "rabbitmq:   up (127.0.0.1:$AMQP_PORT)" || { echo "rabbitmq:   down"; rc=1; }
  redis_ready 2>/dev/null && echo "redis:      up (127.0.0.1:$REDIS_PORT)" || { echo "redis:      down"; rc=1; }
  if mongo_external; then echo "mongodb:    external ($MONGO_URL)";
  elif ! port_open "$MONGO_PORT"; then echo "ferretdb:   down"; rc=1;
  elif pg_ready 2>/dev/null; then echo "ferretdb:   up (127.0.0.1:$MONGO_PORT)";
  else echo "ferretdb:   listening on 127.0.0.1:$MONGO_PORT but unusable: its PostgreSQL backend is down"; rc=1; fi
  port_open "$PROM_PORT" && echo "prometheus: up (127.0.0.1:$PROM_PORT)" || echo "prometheus: down (only with up --observability)"
  port_open "$AM_PORT" && echo "alertmanager: up (127.0.0.1:$AM_PORT)" || echo "alertmanager: down (only with up --observability)"
  return $rc
}

main() {
  mkdir -p "$STATE_DIR"
  case "${1:-}" in
    up)
      postgres_up; redis_up; rabbitmq_up; ferretdb_up
      [ "${2:-}" = "--observability" ] && observability_up
      log "all services are up" ;;
    down) observability_down; ferretdb_down; rabbitmq_down; redis_down; postgres_down; log "all services are down" ;;
    status) status ;;
    env) print_env ;;
    start|stop|restart)  # one server (outage drills in the tests): start|stop|restart postgresql|rabbitmq|redis
      case "${2:-}" in
        postgresql|rabbitmq|redis) ;;
        *) echo "usage: $0 $1 postgresql|rabbitmq|redis" >&2; exit 2 ;;
      esac
      local name=${2/postgresql/postgres}
      [ "$1" = start ] || "${name}_down"
      [ "$1" = stop ] || "${name}_up" ;;
    *) echo "usage: $0 up|down|status|env|start NAME|stop NAME|restart NAME" >&2; exit 2 ;;
  esac
}
main "$@"
