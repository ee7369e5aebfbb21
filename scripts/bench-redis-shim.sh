#!/usr/bin/env bash
# scripts/bench-redis-shim.sh — `acgs shim redis` against redis-server, measured in the same run,
# on the same machine, with the same redis-benchmark settings, and quoted as a ratio.
#
# Usage:   scripts/bench-redis-shim.sh
#          REQUESTS=20000 MODES=always scripts/bench-redis-shim.sh
#
# For each durability mode the shim and a redis-server configured alike are started on free ports
# on 127.0.0.1 (fresh data directories), then
#     redis-benchmark -q -t $TESTS -n $REQUESTS -c $CLIENTS            (one request at a time)
#     redis-benchmark -q -t $TESTS -n $REQUESTS -c $CLIENTS -P $PIPELINE
# runs against each, redis-server first; both are stopped before the next mode. The table gives
# requests per second and shim / redis-server. Modes:
#   memory    shim --in-memory                  redis-server --save "" --appendonly no
#   everysec  shim --fsync everysec (redb)      redis-server --appendonly yes --appendfsync everysec
#   always    shim --fsync always (the default) redis-server --appendonly yes --appendfsync always
#
# Environment (all optional):
#   REQUESTS   requests per test (default 100000)    CLIENTS   connections (default 50)
#   PIPELINE   the -P of the pipelined run (default 16)
#   TESTS      redis-benchmark tests (default set,get,incr,ping)
#   MODES      which of memory, everysec, always to run (default all three, in that order)
#   ACGS_BIN   an acgs binary to measure instead of building this tree's in release mode
#
# Every process it starts is stopped on exit; traffic goes to 127.0.0.1 only.
set -euo pipefail

step() { printf '==> %s\n' "$*" >&2; }
die() { printf '==> ERROR: %s\n' "$*" >&2; exit 1; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."

REQUESTS="${REQUESTS:-100000}"
CLIENTS="${CLIENTS:-50}"
PIPELINE="${PIPELINE:-16}"
TESTS="${TESTS:-set,get,incr,ping}"
MODES="${MODES:-memory everysec always}"
for mode in $MODES; do
  case "$mode" in memory|everysec|always) ;; *) die "unknown mode '$mode' (known: memory, everysec, always)" ;; esac
done

if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi
if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi

# --- tools ------------------------------------------------------------------------------------
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-benchmark >/dev/null || missing+=(redis-tools)
if [ "${#missing[@]}" -gt 0 ]; then
  step "installing Debian packages: ${missing[*]}"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi
command -v python3 >/dev/null || die "python3 not found"

# --- cleanup ----------------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/acgs-bench-redis.XXXXXX")
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

stop_pid() { # stop one process this script started, by its id
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_redis() { # port pid name: until PING is answered, while pid lives
  local port=$1 pid=$2 name=$3
  for _ in $(seq 1 300); do
    [ "$(redis-cli -h 127.0.0.1 -p "$port" PING 2>/dev/null)" = PONG ] && return 0
    kill -0 "$pid" 2>/dev/null || die "$name exited (see $WORK/$name.log: $(tail -n 3 "$WORK/$name.log" 2>/dev/null))"
    sleep 0.1
  done
  die "$name did not answer PING on 127.0.0.1:$port within 30 s"
}

# --- build ------------------------------------------------------------------------------------
if [ -z "${ACGS_BIN:-}" ]; then
  TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
  step "cargo build --release --bin acgs"
  cargo build --release --bin acgs
  ACGS_BIN="$TARGET_DIR/release/acgs"
fi
[ -x "$ACGS_BIN" ] || die "no acgs binary at $ACGS_BIN"

# --- runs -------------------------------------------------------------------------------------
bench() { # name port pipeline → $WORK/<name>-P<pipeline>.csv
  local name=$1 port=$2 pipeline=$3
  step "redis-benchmark -q -t $TESTS -n $REQUESTS -c $CLIENTS -P $pipeline against $name"
  redis-benchmark -h 127.0.0.1 -p "$port" -q --csv -t "$TESTS" -n "$REQUESTS" -c "$CLIENTS" -P "$pipeline" \
    >"$WORK/$name-P$pipeline.csv"
}

for mode in $MODES; do
  case "$mode" in
    memory)   redis_args=(--save "" --appendonly no);               shim_args=(--in-memory) ;;
    everysec) redis_args=(--save "" --appendonly yes --appendfsync everysec); shim_args=(--fsync everysec) ;;
    always)   redis_args=(--save "" --appendonly yes --appendfsync always);   shim_args=(--fsync always) ;;
  esac
  [ "$mode" = memory ] || shim_args+=(--data-dir "$WORK/shim-$mode")

  port=$(free_port)
  mkdir -p "$WORK/redis-$mode"
  step "mode $mode: redis-server ${redis_args[*]} on 127.0.0.1:$port"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$WORK/redis-$mode" "${redis_args[@]}" \
    >"$WORK/redis-$mode.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  wait_redis "$port" "$pid" "redis-$mode"
  bench "redis-$mode" "$port" 1
  bench "redis-$mode" "$port" "$PIPELINE"
  stop_pid "$pid"

  port=$(free_port)
  step "mode $mode: acgs shim redis ${shim_args[*]} on 127.0.0.1:$port"
  "$ACGS_BIN" shim redis --port "$port" "${shim_args[@]}" --log-level warn >"$WORK/shim-$mode.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  wait_redis "$port" "$pid" "shim-$mode"
  bench "shim-$mode" "$port" 1
  bench "shim-$mode" "$port" "$PIPELINE"
  stop_pid "$pid"
done

# --- table ------------------------------------------------------------------------------------
python3 - "$WORK" "$PIPELINE" "$REQUESTS" "$CLIENTS" "$MODES" <<'PY'
import csv, math, sys
work, pipeline, requests, clients, modes = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5].split()

def rates(name):
    with open(f"{work}/{name}.csv") as f:
        return {row["test"]: float(row["rps"]) for row in csv.DictReader(f)}

print(f"\nredis-benchmark -q -n {requests} -c {clients}, requests per second (127.0.0.1, same machine, same run)")
print(f"{'mode':<10} {'-P':>3} {'test':<12} {'redis-server':>14} {'acgs shim':>14} {'shim/redis':>11}")
every = []
for mode in modes:
    ratios = []
    for p in ("1", pipeline):
        ours, theirs = rates(f"shim-{mode}-P{p}"), rates(f"redis-{mode}-P{p}")
        for test, r in theirs.items():
            s = ours.get(test)
            if s and r:
                ratios.append(s / r)
            ratio = f"{100 * s / r:.0f}%" if s and r else "-"
            print(f"{mode:<10} {p:>3} {test:<12} {r:>14,.0f} {s or 0:>14,.0f} {ratio:>11}")
    if ratios:
        print(f"{mode:<10} {'':>3} {'geomean':<12} {'':>14} {'':>14} {100 * math.prod(ratios) ** (1 / len(ratios)):>10.0f}%")
    every += ratios
if every:
    print(f"{'all':<10} {'':>3} {'geomean':<12} {'':>14} {'':>14} {100 * math.prod(every) ** (1 / len(every)):>10.0f}%")
PY
