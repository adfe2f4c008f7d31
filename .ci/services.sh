# shellcheck shell=bash
# Source it (". .ci/services.sh"): installs if needed and starts PostgreSQL and an MLflow
# tracking server on 127.0.0.1, then exports for the tests
#   BENCH_TEST_PG_URL      postgresql://bench:<password>@127.0.0.1:<port>/bench_optuna
#   BENCH_TEST_MLFLOW_URL  http://127.0.0.1:<port>
# Idempotent and quick when everything already runs. Needs root to install/start
# PostgreSQL; otherwise it reuses what it finds and, failing that, leaves the variables
# unset so the `server` tests skip with a reason.
# Settings: BENCH_CI_DIR (/tmp/bench-ci), BENCH_PG_PORT (5432), BENCH_MLFLOW_PORT (5055).

# PostgreSQL's tools run as the postgres user from /, which can enter it (the checkout
# may be in a directory only root can read).
_as_postgres() { (cd / && runuser -u postgres -- "$@"); }

_bench_services() {
    local dir="${BENCH_CI_DIR:-/tmp/bench-ci}"
    local pg_port="${BENCH_PG_PORT:-5432}"
    local ml_port="${BENCH_MLFLOW_PORT:-5055}"
    local py="${BENCH_PYTHON:-python}"
    mkdir -p "$dir" && chmod 700 "$dir"

    # --- PostgreSQL -----------------------------------------------------------------
    if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "services: installing PostgreSQL (apt-get)" >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null \
                || { apt-get update -q >/dev/null && \
                     DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null; } \
                || { echo "services: could not install PostgreSQL" >&2; return 1; }
        else
            echo "services: PostgreSQL missing and not root: server tests will skip" >&2
            return 1
        fi
    fi
    local bin
    bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
    local pgdata="$dir/pgdata"
    if ! "$bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port"; then
        [ "$(id -u)" = 0 ] || { echo "services: PostgreSQL down and not root" >&2; return 1; }
        if [ ! -s "$pgdata/PG_VERSION" ]; then
            mkdir -p "$pgdata" && chown postgres:postgres "$pgdata" "$dir"
            # Administration through the local socket as the postgres OS user (peer);
            # over TCP every role needs its password.
            _as_postgres "$bin/initdb" -D "$pgdata" -U postgres --auth-local=peer \
                --auth-host=scram-sha-256 >"$dir/initdb.log" 2>&1 \
                || { echo "services: initdb failed, see $dir/initdb.log" >&2; return 1; }
        fi
        mkdir -p "$dir/run" && chown postgres:postgres "$dir/run"
        _as_postgres "$bin/pg_ctl" -D "$pgdata" -l "$dir/postgres.log" -w -s \
            -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $dir/run" start \
            || { echo "services: PostgreSQL did not start, see $dir/postgres.log" >&2; return 1; }
    fi
    local pwfile="$dir/pg_password"
    if [ ! -s "$pwfile" ]; then
        (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$pwfile")
    fi
    local pw
    pw="$(cat "$pwfile")"
    if [ "$(id -u)" = 0 ] && [ -S "$dir/run/.s.PGSQL.$pg_port" ]; then
        local psql=(_as_postgres "$bin/psql" -h "$dir/run" -p "$pg_port" -qtAX -d postgres)
        local verb=ALTER
        if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname='bench'")" != 1 ]; then
            verb=CREATE
        fi
        # The password goes through psql's stdin: a -c argument would show it in `ps`.
        "${psql[@]}" -v ON_ERROR_STOP=1 >/dev/null <<SQL
$verb ROLE bench LOGIN PASSWORD '$pw';
SQL
        local db
        for db in bench_optuna bench_mlflow; do
            if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname='$db'")" != 1 ]; then
                "${psql[@]}" -c "CREATE DATABASE $db OWNER bench" >/dev/null
            fi
        done
    fi
    export BENCH_TEST_PG_URL="postgresql://bench:${pw}@127.0.0.1:${pg_port}/bench_optuna"

    # --- MLflow tracking server (backend store in PostgreSQL) ------------------------
    export BENCH_TEST_MLFLOW_URL="http://127.0.0.1:${ml_port}"
    if ! "$py" - "$BENCH_TEST_MLFLOW_URL" <<'EOF' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/health", timeout=2)
EOF
    then
        # The store URI goes through the environment, not argv, so `ps` never shows it.
        # postgresql+psycopg2: SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3.
        MLFLOW_BACKEND_STORE_URI="postgresql+psycopg2://bench:${pw}@127.0.0.1:${pg_port}/bench_mlflow" \
            nohup "$py" -m mlflow server --host 127.0.0.1 --port "$ml_port" --workers 2 \
            --artifacts-destination "$dir/mlartifacts" >"$dir/mlflow.log" 2>&1 &
        echo $! > "$dir/mlflow.pid"
        local i
        for i in $(seq 1 90); do
            if "$py" - "$BENCH_TEST_MLFLOW_URL" <<'EOF' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/health", timeout=2)
EOF
            then break; fi
            kill -0 "$(cat "$dir/mlflow.pid")" 2>/dev/null || { i=90; break; }
            sleep 1
        done
        [ "$i" -lt 90 ] || { echo "services: MLflow server did not start, see $dir/mlflow.log" >&2
                             unset BENCH_TEST_MLFLOW_URL; return 1; }
    fi
    echo "services: PostgreSQL on 127.0.0.1:$pg_port, MLflow on $BENCH_TEST_MLFLOW_URL" >&2
}

_bench_services
_bench_rc=$?
unset -f _bench_services _as_postgres
return "$_bench_rc" 2>/dev/null || exit "$_bench_rc"
