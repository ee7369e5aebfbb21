#!/usr/bin/env bash
# scripts/load.sh — acgs's HTTP rate, quoted as a ratio of a hello-world's rate measured in the
# same run, on the same machine, with the same wrk settings.
#
# Usage:   scripts/load.sh
#          DURATION=30s scripts/load.sh
#          METHOD=POST ROUTE=/api/v1/decide PORT=8005 BODY='{"...":"..."}' scripts/load.sh
#          PRESET=decide scripts/load.sh      # POST /api/v1/decide with an agent's token (logging all)
#
# Steps: build `acgs` and `examples/hello.rs` in release mode; wrk the hello-world (GET /) on a
# free port; stop it; start `acgs up` on a fresh data dir with a generated admin password; record
# its idle RSS; get a bearer token from the auth service; wrk the target route with that token;
# print a summary table. Every process it starts is stopped on exit.
#
# Environment (all optional):
#   DURATION     wrk duration per target (default 10s)
#   THREADS      wrk threads (default 2)          CONNECTIONS  wrk connections (default 64)
#   METHOD       HTTP method of the acgs request (default GET)
#   ROUTE        path of the acgs request (default /api/v1/users/me)
#   PORT         acgs port serving ROUTE (default 8000; `acgs up` uses 8000–8006)
#   BODY         request body (default none; sent with Content-Type: $CONTENT_TYPE)
#   CONTENT_TYPE default application/json
#   TOKEN_ROLE   admin (default: the admin's password grant) or agent (a machine client with the
#                agent role, created by the admin, client_credentials grant)
#   PRESET       decide = METHOD=POST ROUTE=/api/v1/decide PORT=8005 TOKEN_ROLE=agent and a body
#                asking whether an agent may execute a low-risk tool (an allow, logged)
#   UNIQUE       1 = every request a different body (each UNIQUE_TOKEN in BODY replaced by a value
#                no other request uses; with PRESET=decide the tool id t1), so the decision cache
#                never answers: the rate of evaluating every decision
#   ONLY_HELLO   1 = build and measure the hello-world only (checks this script and the machine)
#   ACGS_BIN     an acgs binary to measure instead of building this tree's (e.g. another commit's)
#
# Traffic goes to 127.0.0.1 only; every wrk run is bounded by DURATION.
set -euo pipefail

step() { printf '==> %s\n' "$*" >&2; }
die() { printf '==> ERROR: %s\n' "$*" >&2; exit 1; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PRESET="${PRESET:-}"
case "$PRESET" in
  "") ;;
  decide)
    METHOD=POST; ROUTE=/api/v1/decide; PORT=8005; TOKEN_ROLE=agent
    BODY='{"principal":{"type":"Acgs::Agent","id":"a1"},"action":{"type":"Acgs::Action","id":"execute"},"resource":{"type":"Acgs::Tool","id":"t1"},"context":{"irreversible":false,"human_approved":false},"entities":[{"uid":{"type":"Acgs::Agent","id":"a1"},"parents":[],"attrs":{"trust_level":50,"owner":{"__entity":{"type":"Acgs::User","id":"ada"}}}},{"uid":{"type":"Acgs::Tool","id":"t1"},"parents":[],"attrs":{"risk":"low"}}]}'
    ;;
  *) printf '==> ERROR: unknown PRESET %s (known: decide)\n' "$PRESET" >&2; exit 2 ;;
esac
TOKEN_ROLE="${TOKEN_ROLE:-admin}"
UNIQUE="${UNIQUE:-0}"
UNIQUE_TOKEN="${UNIQUE_TOKEN:-}"
if [ "$UNIQUE" = 1 ] && [ -z "$UNIQUE_TOKEN" ]; then
  [ "$PRESET" = decide ] || { printf '==> ERROR: UNIQUE=1 needs UNIQUE_TOKEN (or PRESET=decide)\n' >&2; exit 2; }
  UNIQUE_TOKEN=t1
fi
case "$TOKEN_ROLE" in admin|agent) ;; *) printf '==> ERROR: TOKEN_ROLE must be admin or agent\n' >&2; exit 2 ;; esac
DURATION="${DURATION:-10s}"
THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-64}"
METHOD="${METHOD:-GET}"
ROUTE="${ROUTE:-/api/v1/users/me}"
PORT="${PORT:-8000}"
BODY="${BODY:-}"
CONTENT_TYPE="${CONTENT_TYPE:-application/json}"
ONLY_HELLO="${ONLY_HELLO:-0}"
AUTH_PORT=8000 # the auth service of `acgs up` (ACGS_PORTS_AUTH left at its default)
case "$ROUTE" in /*) ;; *) die "ROUTE must start with / (got '$ROUTE')" ;; esac

if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi
if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi

# --- tools ------------------------------------------------------------------------------------
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
command -v ps >/dev/null || missing+=(procps)
if [ "${#missing[@]}" -gt 0 ]; then
  step "installing Debian packages: ${missing[*]}"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi
command -v python3 >/dev/null || die "python3 not found"

# --- cleanup ----------------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/acgs-load.XXXXXX")
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
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_http() { # url pid seconds: until the url answers anything, while pid lives
  local url=$1 pid=$2 secs=$3 i
  for i in $(seq 1 $((secs * 10))); do
    if curl -s -o /dev/null --max-time 1 "$url"; then return 0; fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# --- wrk and its output -----------------------------------------------------------------------
# Writes a Lua script for wrk: method, optional body, and headers (header lines "Name: value").
wrk_lua() { # file method body header...
  local file=$1 method=$2 body=$3; shift 3
  {
    printf 'wrk.method = [==[%s]==]\n' "$method"
    if [ -n "$body" ]; then printf 'wrk.body = [==[%s]==]\n' "$body"; fi
    local h
    for h in "$@"; do
      printf 'wrk.headers[ [==[%s]==] ] = [==[%s]==]\n' "${h%%:*}" "$(printf '%s' "${h#*:}" | sed 's/^ *//')"
    done
  } >"$file"
}

run_wrk() { # name url lua-file -> writes $WORK/name.wrk, echoes it to stderr
  local name=$1 url=$2 lua=$3
  step "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency $url ($name)"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$lua" "$url" >"$WORK/$name.wrk"
  sed 's/^/    /' "$WORK/$name.wrk" >&2
}

wrk_rps() { awk '/^Requests\/sec:/ { print $2 }' "$WORK/$1.wrk"; }
wrk_p99() { awk '$1 == "99%" { print $2 }' "$WORK/$1.wrk"; }
wrk_non2xx() { awk '/Non-2xx or 3xx responses:/ { print $NF }' "$WORK/$1.wrk"; }
wrk_errors() { grep '^ *Socket errors:' "$WORK/$1.wrk" || true; }

check_wrk() { # name: fails when the run answered anything but 2xx/3xx, or not at all
  local n rps
  n=$(wrk_non2xx "$1"); rps=$(wrk_rps "$1")
  [ -n "$rps" ] || die "$1: wrk printed no Requests/sec"
  if [ -n "$n" ] && [ "$n" != 0 ]; then
    die "$1: $n responses were not 2xx/3xx: the rate measures errors, not work (check ROUTE/METHOD/BODY/PORT)"
  fi
  if [ -n "$(wrk_errors "$1")" ]; then step "note, $1: $(wrk_errors "$1" | sed 's/^ *//')"; fi
}

# --- build ------------------------------------------------------------------------------------
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
if [ "$ONLY_HELLO" = 1 ] || [ -n "${ACGS_BIN:-}" ]; then
  step "cargo build --release --example hello"
  cargo build --release --example hello
else
  step "cargo build --release --bin acgs --example hello"
  cargo build --release --bin acgs --example hello
fi
HELLO_BIN="$TARGET_DIR/release/examples/hello"
ACGS_BIN="${ACGS_BIN:-$TARGET_DIR/release/acgs}"
[ "$ONLY_HELLO" = 1 ] || [ -x "$ACGS_BIN" ] || die "no acgs binary at $ACGS_BIN"

# --- hello-world baseline ---------------------------------------------------------------------
HELLO_PORT=$(free_port)
step "starting hello-world on 127.0.0.1:$HELLO_PORT"
PORT="$HELLO_PORT" "$HELLO_BIN" "$HELLO_PORT" >"$WORK/hello.log" 2>&1 &
hello_pid=$!
PIDS+=("$hello_pid")
wait_http "http://127.0.0.1:$HELLO_PORT/" "$hello_pid" 30 || { cat "$WORK/hello.log" >&2; die "hello-world did not start"; }
[ "$(curl -s "http://127.0.0.1:$HELLO_PORT/")" = "Hello, World!" ] || die "hello-world answered something else"
wrk_lua "$WORK/hello.lua" GET ""
run_wrk hello "http://127.0.0.1:$HELLO_PORT/" "$WORK/hello.lua"
check_wrk hello
stop_pid "$hello_pid"

HELLO_RPS=$(wrk_rps hello); HELLO_P99=$(wrk_p99 hello)

if [ "$ONLY_HELLO" = 1 ]; then
  printf '\n%-36s %14s %12s\n' "target (wrk -t$THREADS -c$CONNECTIONS -d$DURATION)" "req/s" "p99"
  printf '%-36s %14s %12s\n' "hello-world GET /" "$HELLO_RPS" "$HELLO_P99"
  exit 0
fi

# --- acgs -------------------------------------------------------------------------------------
for p in $(seq 8000 8006); do
  port_busy "$p" && die "127.0.0.1:$p is already in use: acgs up needs 8000–8006 free (stop what listens there)"
done

ADMIN_PW=$(od -An -N18 -tx1 /dev/urandom | tr -d ' \n')
DATA_DIR="$WORK/data"
mkdir -p "$DATA_DIR"
step "starting acgs up --data-dir $DATA_DIR"
ACGS_ADMIN_PASSWORD="$ADMIN_PW" "$ACGS_BIN" up --data-dir "$DATA_DIR" >"$WORK/acgs.log" 2>&1 &
acgs_pid=$!
PIDS+=("$acgs_pid")
for p in $(printf '%s\n' "$AUTH_PORT" "$PORT" | sort -u); do
  step "waiting for http://127.0.0.1:$p/health"
  wait_http "http://127.0.0.1:$p/health" "$acgs_pid" 60 || {
    tail -n 40 "$WORK/acgs.log" >&2
    die "acgs did not answer on 127.0.0.1:$p/health within 60 s"
  }
done

# Start-up verifies the policy set in force in the background (without a solver, by bounded
# enumeration, which takes a core for a while); measure once it is done, when the compliance
# score appears.
for _ in $(seq 1 1200); do
  curl -s --max-time 1 "http://127.0.0.1:8003/metrics" | grep -q '^acgs_constitutional_compliance_score' && break
  sleep 0.1
done
# Idle RSS: after start-up, before any load.
sleep 1
IDLE_RSS_KB=$(ps -o rss= -p "$acgs_pid" | tr -d ' ')
IDLE_RSS_MB=$(awk -v k="$IDLE_RSS_KB" 'BEGIN { printf "%.1f", k / 1024 }')

step "getting a token for admin from 127.0.0.1:$AUTH_PORT/api/v1/auth/token"
TOKEN=$(curl -s --max-time 10 -d grant_type=password -d username=admin --data-urlencode "password=$ADMIN_PW" \
  "http://127.0.0.1:$AUTH_PORT/api/v1/auth/token" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])') ||
  die "no access_token from /api/v1/auth/token (see the acgs log: $(tail -n 5 "$WORK/acgs.log"))"

if [ "$TOKEN_ROLE" = agent ]; then
  step "creating a machine client with the agent role"
  CLIENT_JSON=$(curl -s --max-time 10 -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"name":"load-agent","roles":["agent"]}' "http://127.0.0.1:$AUTH_PORT/api/v1/clients")
  CLIENT_ID=$(printf '%s' "$CLIENT_JSON" | python3 -c 'import json, sys; print(json.load(sys.stdin)["client_id"])') ||
    die "cannot create an agent client: $CLIENT_JSON"
  CLIENT_SECRET=$(printf '%s' "$CLIENT_JSON" | python3 -c 'import json, sys; print(json.load(sys.stdin)["client_secret"])')
  TOKEN=$(curl -s --max-time 10 -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=client_credentials \
    "http://127.0.0.1:$AUTH_PORT/api/v1/auth/token" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])') || die "no agent token"
fi

URL="http://127.0.0.1:$PORT$ROUTE"
headers=("Authorization: Bearer $TOKEN")
[ -n "$BODY" ] && headers+=("Content-Type: $CONTENT_TYPE")
# One request first: a route that fails is reported as such, not measured.
probe=(curl -s -o "$WORK/probe.out" -w '%{http_code}' --max-time 10 -X "$METHOD" -H "${headers[0]}")
[ -n "$BODY" ] && probe+=(-H "${headers[1]}" --data-binary "$BODY")
code=$("${probe[@]}" "$URL") || true
case "$code" in
  2??) ;;
  *) die "$METHOD $URL answered HTTP $code: $(head -c 300 "$WORK/probe.out")" ;;
esac

wrk_lua "$WORK/acgs.lua" "$METHOD" "$BODY" "${headers[@]}"
if [ "$UNIQUE" = 1 ]; then
  # Every request its own body: each occurrence of UNIQUE_TOKEN becomes a value no other
  # request (of any wrk thread) uses, so no answer can come from the decision cache.
  cat >>"$WORK/acgs.lua" <<LUA
local threads = 0
function setup(thread) threads = threads + 1; thread:set("tid", threads) end
local counter = 0
function request()
  counter = counter + 1
  local body = string.gsub(wrk.body, [==[$UNIQUE_TOKEN]==], tid .. "-" .. counter)
  return wrk.format(nil, nil, nil, body)
end
LUA
fi
run_wrk acgs "$URL" "$WORK/acgs.lua"
check_wrk acgs
if [ "$PRESET" = decide ]; then
  # What the load decided, and what reached the log: a full log queue would turn allows into denies.
  sleep 2
  METRICS=$(curl -s --max-time 5 "http://127.0.0.1:8005/metrics")
  DECISIONS=$(printf '%s\n' "$METRICS" | awk '/^acgs_decisions_total|^acgs_decision_cache_total/ { printf "%s ", $0 }')
  REFUSED=$(printf '%s\n' "$METRICS" | awk '/^acgs_decisions_logged_total\{outcome="refused"\}/ { print $2 }')
  LOG_SIZE=$(curl -s --max-time 5 "http://127.0.0.1:8002/api/v1/log/checkpoint" | sed -n 2p)
  step "decisions: $DECISIONS"
  step "integrity log tree size after the load: $LOG_SIZE"
  if [ "${REFUSED:-0}" != 0 ]; then
    step "WARNING: $REFUSED decisions were denied because the log queue was full (fail closed): the log did not keep up, and the rate counts those denies"
  fi
fi
LOADED_RSS_KB=$(ps -o rss= -p "$acgs_pid" | tr -d ' ')
LOADED_RSS_MB=$(awk -v k="$LOADED_RSS_KB" 'BEGIN { printf "%.1f", k / 1024 }')
stop_pid "$acgs_pid"

ACGS_RPS=$(wrk_rps acgs); ACGS_P99=$(wrk_p99 acgs)
RATIO=$(awk -v a="$ACGS_RPS" -v h="$HELLO_RPS" 'BEGIN { printf "%.1f%%", 100 * a / h }')

printf '\n%-40s %14s %12s\n' "target (wrk -t$THREADS -c$CONNECTIONS -d$DURATION)" "req/s" "p99"
printf '%-40s %14s %12s\n' "hello-world GET /" "$HELLO_RPS" "$HELLO_P99"
label="acgs $METHOD $ROUTE ($TOKEN_ROLE token)"
[ "$UNIQUE" = 1 ] && label="$label, unique bodies"
printf '%-40s %14s %12s\n' "$label" "$ACGS_RPS" "$ACGS_P99"
printf '%-40s %14s\n' "ratio acgs / hello" "$RATIO"
[ "$PRESET" = decide ] && printf '%-40s %14s\n' "denied: log queue full" "${REFUSED:-0}"
printf '%-40s %14s\n' "acgs idle RSS (MB)" "$IDLE_RSS_MB"
printf '%-40s %14s\n' "acgs RSS after load (MB)" "$LOADED_RSS_MB"
