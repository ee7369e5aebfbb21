#!/usr/bin/env bash
# scripts/dind-smoke.sh — the nested-Docker path of `acgs bootstrap`, end to end, by hand: proof
# that it works on this machine and a reference for the flags (docs/docker-sandbox.md).
#
# Usage:   scripts/dind-smoke.sh
#
#   1. mutual-TLS certificates from `acgs certs` (CA, server certificate for the inner daemon,
#      client certificate) in a temporary directory;
#   2. the local dind image (scripts/images.sh) created with the flags that work here: Docker's
#      --privileged first, and when it is refused ("unable to apply caps") the capability set
#      of docs/docker-sandbox.md; `dockerd` with mutual TLS on 2376, published on 127.0.0.1
#      only, its /var/lib/docker on a volume; the server certificates copied in through the API
#      (docker cp, as bollard's upload) before it starts;
#   3. waits (bounded) until the inner daemon answers over TLS with the client certificate, and
#      checks it refuses a client without one;
#   4. loads acgs-local/postgres:15 into it (docker save | docker load, timed);
#   5. runs PostgreSQL inside as the bootstrap runs services: non-root, read-only root with
#      tmpfs where PostgreSQL writes, --cap-drop ALL, no-new-privileges, memory/CPU limits,
#      a health check, on a user-defined network; waits for healthy, then from a second
#      container checks pg_isready and a password login over TCP by the container's DNS name;
#   6. removes everything it created (every object is labelled acgs.test=dind-smoke), also on
#      failure or Ctrl-C.
#
# Environment: ACGS_BIN (default target/debug/acgs, built with `cargo build` if missing),
# ACGS_SMOKE_TIMEOUT (seconds to wait for each readiness, default 90), DOCKER_HOST (the outer
# daemon; default the local socket). Needs the images: scripts/images.sh dind postgres.
set -euo pipefail

step() { printf '==> %s\n' "$*" >&2; }
die() { printf '==> ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; } # seconds since $1

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT=$(pwd)
TIMEOUT="${ACGS_SMOKE_TIMEOUT:-90}"
DIND_IMAGE="${ACGS_DIND_IMAGE:-acgs-local/dind:bookworm}"
PG_IMAGE="${ACGS_POSTGRES_IMAGE:-acgs-local/postgres:15}"
LABEL=acgs.test=dind-smoke
NAME="acgs-smoke-$$"

command -v docker >/dev/null || die "docker client not found (scripts/test.sh installs docker.io)"
docker info >/dev/null 2>&1 || die "no Docker daemon answers (docker info failed); scripts/test.sh starts one"
for img in "$DIND_IMAGE" "$PG_IMAGE"; do
  docker image inspect "$img" >/dev/null 2>&1 || die "image $img missing: run scripts/images.sh dind postgres"
done

ACGS_BIN="${ACGS_BIN:-$REPO_ROOT/target/debug/acgs}"
if [ ! -x "$ACGS_BIN" ]; then
  step "building acgs (cargo build)"
  cargo build -q
fi
[ -x "$ACGS_BIN" ] || die "no acgs binary at $ACGS_BIN"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/acgs-dind-smoke.XXXXXX")
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  step "cleaning up (label $LABEL)"
  docker rm -f -v "$NAME" >/dev/null 2>&1 || true
  docker volume rm "$NAME-docker" >/dev/null 2>&1 || true
  rm -rf "$WORK"
  if [ "$rc" -eq 0 ]; then step "dind smoke test passed"; else step "dind smoke test FAILED (exit $rc)"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. certificates --------------------------------------------------------------------------
step "certificates: $ACGS_BIN certs --dir $WORK/certs --name $NAME"
"$ACGS_BIN" certs --dir "$WORK/certs" --name "$NAME" >/dev/null
C="$WORK/certs/client"

# --- 2. the inner daemon ----------------------------------------------------------------------
# `dockerd` with its flags given explicitly works with this image and with docker:dind (whose
# entrypoint runs a command starting with `dockerd` as given).
DOCKERD=(dockerd --host=unix:///var/run/docker.sock --host=tcp://0.0.0.0:2376 --tlsverify
  --tlscacert=/certs/server/ca.pem --tlscert=/certs/server/cert.pem --tlskey=/certs/server/key.pem)
COMMON=(--name "$NAME" --hostname "$NAME" --label "$LABEL" -p 127.0.0.1::2376
  -v "$NAME-docker:/var/lib/docker" -e DOCKER_TLS_CERTDIR=/certs)
# What works in a sandbox without CAP_SYS_RESOURCE (where --privileged is refused), cgroup v1:
# every capability it has, no seccomp/AppArmor filter, writable /proc/sys, all devices, and a
# private cgroup namespace in which the image's entrypoint mounts the cgroup hierarchies
# read-write (inner containers nest under this one). With an image whose entrypoint does not
# (docker:dind), use -v /sys/fs/cgroup:/sys/fs/cgroup:rw instead of --cgroupns private.
FALLBACK=(--cap-add ALL --cap-drop SYS_RESOURCE --security-opt seccomp=unconfined
  --security-opt apparmor=unconfined --security-opt systempaths=unconfined
  --device-cgroup-rule 'a *:* rwm' --cgroupns private)

docker volume create --label "$LABEL" "$NAME-docker" >/dev/null
start_dind() { # FLAGS...: create, copy the server certificates in, start
  docker create "${COMMON[@]}" "$@" "$DIND_IMAGE" "${DOCKERD[@]}" >/dev/null || return 1
  docker cp "$WORK/certs/server" "$NAME:/certs/server" || return 1
  docker start "$NAME" >/dev/null 2>"$WORK/start.err"
}
step "starting $DIND_IMAGE as $NAME (--privileged)"
if ! start_dind --privileged; then
  step "--privileged refused: $(grep -o 'unable to apply caps[^:]*' "$WORK/start.err" || head -c 200 "$WORK/start.err")"
  docker rm -f "$NAME" >/dev/null
  step "starting $DIND_IMAGE with the capability set: ${FALLBACK[*]}"
  start_dind "${FALLBACK[@]}" || die "the dind container does not start: $(tr '\n' ' ' <"$WORK/start.err")"
fi
HOSTPORT=$(docker port "$NAME" 2376/tcp | head -n 1)
case "$HOSTPORT" in 127.0.0.1:*) ;; *) die "2376 is published on '$HOSTPORT', not on 127.0.0.1 only" ;; esac
INNER=(docker --tlsverify -H "tcp://$HOSTPORT" --tlscacert "$C/ca.pem" --tlscert "$C/cert.pem" --tlskey "$C/key.pem")

# --- 3. wait for it over mutual TLS -----------------------------------------------------------
step "waiting for the inner daemon on tcp://$HOSTPORT (mutual TLS, at most $TIMEOUT s)"
t0=$SECONDS t0f=$(now)
until "${INNER[@]}" info >/dev/null 2>&1; do
  if [ "$(docker inspect -f '{{.State.Running}}' "$NAME")" != true ]; then
    docker logs --tail 15 "$NAME" >&2 || true
    die "the dind container exited"
  fi
  [ $((SECONDS - t0)) -lt "$TIMEOUT" ] || { docker logs --tail 15 "$NAME" >&2; die "inner daemon not ready after $TIMEOUT s"; }
  sleep 0.5
done
step "inner daemon ready in $(since "$t0f") s after docker start: $("${INNER[@]}" version -f 'Docker {{.Server.Version}}, API {{.Server.APIVersion}}'), $("${INNER[@]}" info -f 'storage {{.Driver}}, cgroup v{{.CgroupVersion}}')"
if docker -H "tcp://$HOSTPORT" --tls --tlscacert "$C/ca.pem" info >/dev/null 2>&1; then
  die "the inner daemon answered a client without a certificate"
fi
if docker -H "tcp://$HOSTPORT" info >/dev/null 2>&1; then
  die "the inner daemon answered plain HTTP"
fi
step "a client without the client certificate is refused"

# --- 4. load the image ------------------------------------------------------------------------
step "loading $PG_IMAGE into the inner daemon (docker save | docker load)"
t0f=$(now)
docker save "$PG_IMAGE" | "${INNER[@]}" load >/dev/null
step "loaded in $(since "$t0f") s ($(docker image inspect -f '{{.Size}}' "$PG_IMAGE" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"

# --- 5. PostgreSQL inside, locked down --------------------------------------------------------
PW=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
"${INNER[@]}" network create --label "$LABEL" smoke-net >/dev/null
"${INNER[@]}" volume create --label "$LABEL" smoke-pgdata >/dev/null
step "running PostgreSQL in the inner daemon: --user postgres --read-only --cap-drop ALL, no-new-privileges, limits, health check"
t0=$SECONDS t0f=$(now)
"${INNER[@]}" run -d --name pg --label "$LABEL" --network smoke-net \
  --user postgres --read-only --tmpfs /var/run/postgresql:uid=999,gid=999,mode=0755 --tmpfs /tmp \
  --cap-drop ALL --security-opt no-new-privileges --memory 256m --cpus 1 --pids-limit 200 \
  --health-cmd 'pg_isready -U acgs -d acgs' --health-interval 1s --health-retries 60 \
  -v smoke-pgdata:/var/lib/postgresql/data \
  -e POSTGRES_USER=acgs -e POSTGRES_DB=acgs -e POSTGRES_PASSWORD="$PW" \
  -p 5432 "$PG_IMAGE" >/dev/null
until [ "$("${INNER[@]}" inspect -f '{{.State.Health.Status}}' pg)" = healthy ]; do
  [ "$("${INNER[@]}" inspect -f '{{.State.Running}}' pg)" = true ] || { "${INNER[@]}" logs --tail 20 pg >&2; die "PostgreSQL exited"; }
  [ $((SECONDS - t0)) -lt "$TIMEOUT" ] || { "${INNER[@]}" logs --tail 20 pg >&2; die "PostgreSQL not healthy after $TIMEOUT s"; }
  sleep 0.5
done
step "PostgreSQL healthy in $(since "$t0f") s"
"${INNER[@]}" run --rm --label "$LABEL" --network smoke-net --read-only --cap-drop ALL "$PG_IMAGE" \
  pg_isready -h pg -p 5432 -U acgs -d acgs >&2 \
  || die "pg_isready -h pg (by the container's DNS name on smoke-net) failed"
got=$("${INNER[@]}" run --rm --label "$LABEL" --network smoke-net --read-only --cap-drop ALL -e PGPASSWORD="$PW" \
  "$PG_IMAGE" psql -h pg -U acgs -d acgs -Atc 'SELECT current_user || 1') \
  || die "password login over TCP failed"
[ "$got" = acgs1 ] || die "unexpected answer from PostgreSQL: '$got'"
if "${INNER[@]}" run --rm --label "$LABEL" --network smoke-net -e PGPASSWORD=wrong "$PG_IMAGE" \
  psql -h pg -U acgs -d acgs -Atc 'SELECT 1' >/dev/null 2>&1; then
  die "PostgreSQL accepted a wrong password over TCP"
fi
step "pg_isready and a password login over TCP by DNS name work; a wrong password is refused"
inner_port=$("${INNER[@]}" port pg 5432/tcp | head -n 1)
[ -n "$inner_port" ] || die "the inner container's port 5432 is not published"
step "inner port publishing works (5432 -> $inner_port inside $NAME)"
