#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the collector's PostgreSQL tests, on 127.0.0.1 only,
# on a non-default port, in a temporary directory; trust authentication (loopback only).
#
#   crates/collector/tests/pg.sh start   # prints: export AUPWATCH_TEST_PG_URL=… AUPWATCH_TEST_PG_CA=…
#   eval "$(crates/collector/tests/pg.sh start)"
#   cargo test -p aupwatch-collector --test store_postgres -- --include-ignored
#   crates/collector/tests/pg.sh stop
#
# The server takes TLS too (ssl=on, a self-signed certificate for 127.0.0.1 made with openssl,
# AUPWATCH_TEST_PG_CA). Needs Debian's postgresql and openssl. Run as root (the cluster runs
# as the postgres user) or as an ordinary user (the cluster runs as that user).
# AUPWATCH_PG_DIR (default /tmp/aupwatch-pg-test) and AUPWATCH_PG_PORT (default 55432)
# override the place and port. fsync is off (a test cluster); AUPWATCH_PG_FSYNC=on for
# benchmarks.
set -euo pipefail

DIR="${AUPWATCH_PG_DIR:-/tmp/aupwatch-pg-test}"
PORT="${AUPWATCH_PG_PORT:-55432}"
FSYNC="${AUPWATCH_PG_FSYNC:-off}"
BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
if [ -z "$BIN" ]; then
  echo "pg.sh: no /usr/lib/postgresql/*/bin: apt-get install -y postgresql" >&2
  exit 2
fi

as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

case "${1:-}" in
  start)
    if [ ! -d "$DIR/data" ]; then
      mkdir -p "$DIR"
      [ "$(id -u)" = 0 ] && chown postgres: "$DIR"
      as_owner "$BIN/initdb" -D "$DIR/data" -U postgres -A trust --no-sync >"$DIR/initdb.log" 2>&1 \
        || { cat "$DIR/initdb.log" >&2; exit 2; }
      # A self-signed certificate for 127.0.0.1, so TLS connections can be tested: the
      # server takes plain and TLS connections alike.
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
        -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
        -addext basicConstraints=critical,CA:FALSE \
        -keyout "$DIR/data/server.key" -out "$DIR/data/server.crt" >"$DIR/openssl.log" 2>&1 \
        || { cat "$DIR/openssl.log" >&2; exit 2; }
      chmod 600 "$DIR/data/server.key"
      [ "$(id -u)" = 0 ] && chown postgres: "$DIR/data/server.key" "$DIR/data/server.crt"
    fi
    if ! as_owner "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
      as_owner "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 start \
        -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c fsync=$FSYNC -c max_connections=200 -c ssl=on" >&2 \
        || { cat "$DIR/server.log" >&2; exit 2; }
    fi
    echo "export AUPWATCH_TEST_PG_URL='host=127.0.0.1 port=$PORT user=postgres dbname=postgres'"
    echo "export AUPWATCH_TEST_PG_CA='$DIR/data/server.crt'"
    ;;
  stop)
    if [ -d "$DIR/data" ]; then
      as_owner "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >&2 || true
      rm -rf "$DIR"
    fi
    ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
