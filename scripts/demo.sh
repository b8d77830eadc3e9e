#!/usr/bin/env bash
# One-node swarmlite demo: start (or reuse) a node in .cache/demo, deploy
# compose-examples/demo (3 replicas of swarmlite/demo-web:1 on port 8080),
# and show the requests being spread over the replicas.
# Expects `make install` to have run (make demo does that).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SWL="$ROOT/.venv/bin/swarmlite"
DATA=".cache/demo"
COMPOSE="compose-examples/demo/compose.yml"
URL="http://127.0.0.1:8080/"
NODE_WAIT="${DEMO_NODE_WAIT:-30}"   # seconds for the node's API to come up
SERVICE_WAIT="${DEMO_WAIT:-60}"      # seconds for the service to answer

say() { printf 'demo: %s\n' "$*"; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

[ -x "$SWL" ] || die "$SWL not found: run 'make install' first"
command -v curl >/dev/null || die "curl is missing: run scripts/install-deps.sh"

node_up() { "$SWL" service ls --data-dir "$DATA" >/dev/null 2>&1; }

if node_up; then
    say "reusing the node already running in $DATA"
else
    say "starting a one-node cluster in $DATA"
    mkdir -p "$DATA"
    if ! out="$("$SWL" init --data-dir "$DATA" --advertise-addr 127.0.0.1 2>&1)"; then
        printf '%s\n' "$out"
        # A node that already exists (but is still starting) is fine; anything else is not.
        grep -qi 'already' <<<"$out" || die "swarmlite init failed"
    else
        [ -z "$out" ] || printf '%s\n' "$out"
    fi
    deadline=$((SECONDS + NODE_WAIT))
    until node_up; do
        [ $SECONDS -lt $deadline ] || die "the node did not answer within ${NODE_WAIT} s (logs: $DATA)"
        sleep 0.5
    done
fi

say "deploying $COMPOSE"
"$SWL" deploy -f "$COMPOSE" --stack demo --data-dir "$DATA"

all_running() {
    "$SWL" service ls --format json --data-dir "$DATA" 2>/dev/null |
        "$ROOT/.venv/bin/python" -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if s and all(x["running"]==x["desired"] for x in s) else 1)'
}

say "waiting up to ${SERVICE_WAIT} s for every replica to be healthy and $URL to answer"
deadline=$((SECONDS + SERVICE_WAIT))
until all_running && curl -sf --max-time 2 "$URL" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
        "$SWL" service ls --data-dir "$DATA" || true
        die "$URL did not answer within ${SERVICE_WAIT} s"
    fi
    sleep 1
done

say "six requests to $URL:"
for i in 1 2 3 4 5 6; do
    printf '  %d: %s\n' "$i" "$(curl -s --max-time 2 "$URL" || echo '(no answer)')"
done

echo
"$SWL" service ls --data-dir "$DATA"
echo
say "the cluster keeps running. Stop it with: make clean"
say "  or: .venv/bin/swarmlite leave --force --data-dir $DATA"
