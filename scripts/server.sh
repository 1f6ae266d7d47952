#!/usr/bin/env bash
# A local Prefect server for augment-market, bound to 127.0.0.1, analytics off.
#
#   scripts/server.sh start    start the server in the background (UI: http://127.0.0.1:$PORT)
#   scripts/server.sh deploy   create the process work pool, then `prefect deploy --all`
#   scripts/server.sh worker   run a process worker for the pool here (foreground; Ctrl-C stops)
#   scripts/server.sh stop     stop the server
#
# Then: `prefect deployment run augment-market/default` (the demo) or augment-market/market1501.
# Settings: PORT (4200), POOL (augment-market), PREFECT (the prefect command; default: the
# project's .venv, else `uv run prefect`). PREFECT_HOME is kept as set (default ~/.prefect).
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

wait_healthy() {
    for _ in $(seq 1 120); do
        if curl -fsS "${PREFECT_API_URL}/health" >/dev/null 2>&1; then return 0; fi
        sleep 1
    done
    echo "server did not answer on ${PREFECT_API_URL} within 120 s" >&2
    return 1
}

case "${1:-}" in
    start)
        $PREFECT server start --background --host 127.0.0.1 --port "$PORT"
        wait_healthy
        echo "Prefect server: http://127.0.0.1:${PORT} (export PREFECT_API_URL=${PREFECT_API_URL})"
        ;;
    deploy)
        wait_healthy
        $PREFECT work-pool inspect "$POOL" >/dev/null 2>&1 \
            || $PREFECT work-pool create "$POOL" --type process
        $PREFECT --no-prompt deploy --all
        ;;
    worker)
        wait_healthy
        exec $PREFECT worker start --pool "$POOL" --type process
        ;;
    stop)
        $PREFECT server stop
        ;;
    *)
        sed -n '2,13p' "$0" >&2
        exit 2
        ;;
esac
