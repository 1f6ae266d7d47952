#!/usr/bin/env bash
# A local Prefect server for augment-market, bound to 127.0.0.1, analytics off.
#
#   scripts/server.sh start    start the server in the background (UI: http://127.0.0.1:$PORT;
#                              log: $PREFECT_HOME/server.log)
#   scripts/server.sh deploy   create the process work pool, then `prefect deploy --all`
#   scripts/server.sh worker   run a process worker for the pool here (foreground; Ctrl-C stops)
#   scripts/server.sh stop     stop the server
#
# The Makefile's server-start, server-deploy, server-worker and server-stop call these; then
# `make submit DEPLOYMENT=default` (the demo) runs a deployment (augment-market submit).
# Settings: PORT (4200), POOL (augment-market), PREFECT (the prefect command; default: the
# project's .venv, else `uv run prefect`), HEALTH_WAIT (seconds to wait for the server, 300).
# PREFECT_HOME is kept as set (default ~/.prefect).
set -euo pipefail

cd "$(dirname "$0")/.."
export AUGMENT_MARKET_HOME="${AUGMENT_MARKET_HOME:-$PWD}"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_SERVER_API_HOST=127.0.0.1
PORT="${PORT:-4200}"
POOL="${POOL:-augment-market}"
export PREFECT_SERVER_API_PORT="$PORT"
export PREFECT_API_URL="http://127.0.0.1:${PORT}/api"
if [[ -z "${PREFECT:-}" ]]; then
    if [[ -x .venv/bin/prefect ]]; then PREFECT=.venv/bin/prefect; else PREFECT="uv run --locked prefect"; fi
fi

PID_FILE="${PREFECT_HOME:-$HOME/.prefect}/server.pid"  # where `prefect server stop` looks too
LOG_FILE="${PREFECT_HOME:-$HOME/.prefect}/server.log"

# A PID file whose process died (a crash, a reboot) would make `stop` signal a stranger and
# `prefect server start --background` refuse: remove it, and say so.
clear_stale_pid_file() {
    [[ -f "$PID_FILE" ]] || return 0
    local pid
    pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        return 0
    fi
    echo "removing stale $PID_FILE (server process ${pid:-?} is gone)" >&2
    rm -f "$PID_FILE"
}

# `prefect deploy` and `work-pool create` end with generic hints (`prefect worker start` starts
# a worker without AUGMENT_MARKET_HOME; `prefect deployment run` needs prefect on PATH and
# PREFECT_API_URL): drop them, the deploy command prints this project's.
drop_generic_hints() {
    awk '/To execute flow runs/ { until = "prefect deployment run" }
         /To start a worker for this work pool/ { until = "prefect worker start" }
         until == "" { print }
         until != "" && index($0, until) { until = "" }'
}

# A loaded 2-core machine has taken over two minutes to bring the server up.
HEALTH_WAIT="${HEALTH_WAIT:-300}"

wait_healthy() {
    for _ in $(seq 1 "$HEALTH_WAIT"); do
        if curl -fsS "${PREFECT_API_URL}/health" >/dev/null 2>&1; then return 0; fi
        sleep 1
    done
    echo "server did not answer on ${PREFECT_API_URL} within ${HEALTH_WAIT} s" >&2
    return 1
}

case "${1:-}" in
    start)
        clear_stale_pid_file
        if curl -fsS "${PREFECT_API_URL}/health" >/dev/null 2>&1; then
            echo "a Prefect server already answers on http://127.0.0.1:${PORT}"
            exit 0
        fi
        # Not `prefect server start --background`: that leaves the server's output on pipes
        # that close when the command exits, and the server dies at its first log line after
        # that (seen under load: a 500, then connection refused). Its log goes to a file here.
        mkdir -p "$(dirname "$PID_FILE")"
        nohup $PREFECT server start --host 127.0.0.1 --port "$PORT" >>"$LOG_FILE" 2>&1 </dev/null &
        echo $! >"$PID_FILE"
        wait_healthy
        echo "Prefect server: http://127.0.0.1:${PORT} (export PREFECT_API_URL=${PREFECT_API_URL}); log: ${LOG_FILE}"
        echo "Next: make server-deploy"
        ;;
    deploy)
        wait_healthy
        $PREFECT work-pool inspect "$POOL" >/dev/null 2>&1 \
            || $PREFECT work-pool create "$POOL" --type process | drop_generic_hints
        $PREFECT --no-prompt deploy --all | drop_generic_hints
        cat <<EOF

Next:
  make server-worker                  # another terminal: runs the flows in ${AUGMENT_MARKET_HOME}
  make submit DEPLOYMENT=default      # the demo, about 8 minutes on 2 CPU cores
  make submit DEPLOYMENT=default SET="alpha=3 generator.max_steps=20"   # with settings changed
  open http://127.0.0.1:${PORT}/runs  # and watch it
EOF
        ;;
    worker)
        wait_healthy
        exec $PREFECT worker start --pool "$POOL" --type process
        ;;
    stop)
        if [[ ! -f "$PID_FILE" ]]; then
            echo "no server started from ${PID_FILE%/*} (no $PID_FILE)"
            exit 0
        fi
        kill -TERM "$(cat "$PID_FILE")" 2>/dev/null || echo "the server had already stopped"
        rm -f "$PID_FILE"
        echo "Prefect server stopped"
        ;;
    *)
        sed -n '2,12p' "$0" >&2
        exit 2
        ;;
esac
