#!/usr/bin/env bash
# scripts/test.sh — THE one test command of acgs (README points here; .ci/run execs exactly this).
#
# Usage:   scripts/test.sh [CARGO_TEST_ARGS...]
#          scripts/test.sh auth                  # extra args go to both `cargo test` runs
#          ACGS_SLOW_TESTS=0 scripts/test.sh      # quick local run: skip the Docker/bootstrap suites
#
# What it does, on a brand-new Debian 12 machine (as root, or through sudo when not root), and
# again on the same machine (idempotent: a second run installs nothing and is fast):
#   1. installs what is missing: Debian's postgresql (server), prometheus (for promtool),
#      nats-server, redis-server and redis-tools (the distributed topology and the shims' tests);
#      Python's PyJWT and cryptography (used by the tests) and nats-py (pinned; the NATS shim's
#      conformance test); `apt-get update` only when needed;
#      the cvc5 solver for the verification service: a `cvc5` (1.3 or newer) already on PATH, or
#      PyPI's cvc5 wheel (pinned) with the `cvc5` command target/cvc5/bin/cvc5 running
#      scripts/cvc5-adapter.py (Debian 12's cvc5 is 1.0.3, too old; the wheel has no executable);
#      the Rust target x86_64-unknown-linux-musl and Debian's musl-tools (static binaries);
#   2. with ACGS_SLOW_TESTS=1 (the default), for the Docker/bootstrap suites: installs Debian's
#      docker.io and debootstrap, starts `dockerd` in the background if no daemon answers (log:
#      target/dockerd.log; at most 60 s for `docker info`), and builds the local images the
#      suites use with scripts/images.sh (no registry is reachable: debootstrap + docker import;
#      about 5 minutes the first time, a second each time after);
#   3. starts PostgreSQL on 127.0.0.1 only, sets a password generated for this run on the
#      superuser role `acgs_test`, and builds ACGS_TEST_DATABASE_URL from it;
#   4. runs the suite twice:
#        pass 1: `cargo test --locked [ARGS]`          with ACGS_TEST_DATABASE_URL unset (SQLite)
#        pass 2: `cargo test --locked --tests [ARGS]`  with ACGS_TEST_DATABASE_URL set (PostgreSQL)
#      and exits non-zero if either pass fails. The PostgreSQL server is left running.
#
# Environment read by this script and passed on to the tests:
#   ACGS_SLOW_TESTS   default 1 (CI runs everything). 0 = tests skip the slow Docker/bootstrap
#                     suites, and this script does not install or start Docker for them.
#   DOCKER_HOST       (slow suites) the daemon to use; set to unix:///var/run/docker.sock when
#                     unset. A DOCKER_HOST that does not answer is an error (nothing is started).
#   ACGS_TEST_DIND_IMAGE, ACGS_TEST_POSTGRES_IMAGE, ACGS_TEST_REDIS_IMAGE, ACGS_TEST_NATS_IMAGE,
#   ACGS_TEST_PROMETHEUS_IMAGE
#                     (slow suites) set by this script to the local images scripts/images.sh
#                     built (acgs-local/dind:bookworm, acgs-local/postgres:15, ...): stand-ins with
#                     the official images' interface (docs/docker-sandbox.md)
#   ACGS_CVC5         set by this script to the cvc5 command (the verification tests need it and
#                     fail, saying to run this script, without it)
#   ACGS_TEST_PG_RESTART
#                     set for pass 2 only: the command that restarts that PostgreSQL server
#                     (tests/distributed.rs restarts it under running services)
#   ACGS_TEST_DATABASE_URL
#                     set by this script for pass 2 only (postgres://acgs_test:PW@127.0.0.1:PORT/postgres);
#                     tests create and drop their own databases through it. Unset in pass 1.
set -euo pipefail

step() { printf '==> %s\n' "$*" >&2; }
warn() { printf '==> WARNING: %s\n' "$*" >&2; }
die() { printf '==> ERROR: %s\n' "$*" >&2; exit 1; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT=$(pwd)

export ACGS_SLOW_TESTS="${ACGS_SLOW_TESTS:-1}"
case "$ACGS_SLOW_TESTS" in
  0|1) ;;
  *) die "ACGS_SLOW_TESTS must be 0 or 1 (got '$ACGS_SLOW_TESTS')" ;;
esac
# Pass 1 must see no database URL, whatever the caller's environment holds.
unset ACGS_TEST_DATABASE_URL

# --- privileges -------------------------------------------------------------------------------
if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
  as_postgres() { (cd / && runuser -u postgres -- "$@"); }
else
  command -v sudo >/dev/null || die "not root and no sudo: run as root or install sudo"
  SUDO=(sudo)
  as_postgres() { (cd / && sudo -u postgres -- "$@"); }
fi

# --- toolchains on PATH (CI's environment may lack the login shell's PATH additions) ----------
if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null || die "cargo not found (the machine's rustup toolchain is expected)"
if ! command -v python3 >/dev/null && [ -d "$HOME/.pyenv/shims" ]; then
  PATH="$HOME/.pyenv/shims:$PATH"
fi
command -v python3 >/dev/null || die "python3 not found"

# --- Debian packages --------------------------------------------------------------------------
# The PostgreSQL server, not just the client (the client package also creates /usr/lib/postgresql/N).
pg_server_version() {
  local d
  for d in /usr/lib/postgresql/*/bin/postgres; do
    [ -x "$d" ] || continue
    d=${d#/usr/lib/postgresql/}; printf '%s\n' "${d%%/*}"
  done | sort -V | tail -n 1
}

apt_pkgs=()
[ -n "$(pg_server_version)" ] && command -v pg_lsclusters >/dev/null || apt_pkgs+=(postgresql)
command -v promtool >/dev/null || apt_pkgs+=(prometheus)
# The distributed topology's shared servers (tests/common/distributed.rs starts its own on free
# ports; without them it would fall back to the shims).
command -v nats-server >/dev/null || apt_pkgs+=(nats-server)
command -v redis-server >/dev/null || apt_pkgs+=(redis-server)
command -v redis-cli >/dev/null || apt_pkgs+=(redis-tools)
# Static binaries (x86_64-unknown-linux-musl): the C parts (rusqlite's bundled SQLite, ring).
command -v musl-gcc >/dev/null || apt_pkgs+=(musl-tools)
# Docker for the slow suites: the engine (dockerd; a docker client alone is not enough), its
# iptables, and debootstrap for scripts/images.sh. (In /usr/sbin: not on every user's PATH.)
have_sbin() { command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ]; }
if [ "$ACGS_SLOW_TESTS" = 1 ]; then
  have_sbin dockerd || apt_pkgs+=(docker.io)
  have_sbin iptables || apt_pkgs+=(iptables)
  have_sbin debootstrap || apt_pkgs+=(debootstrap)
fi

if [ "${#apt_pkgs[@]}" -gt 0 ]; then
  step "installing Debian packages: ${apt_pkgs[*]}"
  # Keep package scripts from starting services (prometheus on :9090 and the like): we start
  # what the tests need ourselves. Only if the machine has no policy of its own already.
  policy_created=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${SUDO[@]}" chmod 755 /usr/sbin/policy-rc.d
    policy_created=1
  fi
  apt_rc=0
  {
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
      "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${apt_pkgs[@]}"
  } || apt_rc=$?
  if [ "$policy_created" = 1 ]; then "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d; fi
  [ "$apt_rc" -eq 0 ] || die "apt-get failed (exit $apt_rc)"
else
  slow_pkgs=''
  if [ "$ACGS_SLOW_TESTS" = 1 ]; then slow_pkgs=', docker.io, iptables, debootstrap'; fi
  step "Debian packages: postgresql, prometheus (promtool), nats-server, redis-server, redis-tools, musl-tools$slow_pkgs already installed"
fi
command -v promtool >/dev/null || die "promtool still missing after installing prometheus"

# --- Python packages the tests use ------------------------------------------------------------
if python3 -c 'import jwt, cryptography' 2>/dev/null; then
  step "Python packages: PyJWT, cryptography already installed"
else
  step "installing Python packages: PyJWT cryptography"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore PyJWT cryptography
  python3 -c 'import jwt, cryptography' || die "PyJWT/cryptography still not importable"
fi
# nats-py, the official Python NATS client: tests/shim_nats.rs drives tests/nats_py_conformance.py
# with it against `acgs shim nats`. Pinned, so a new release cannot change what the test checks.
NATS_PY_VERSION=2.16.0
if [ "$(python3 -c 'import importlib.metadata as m; print(m.version("nats-py"))' 2>/dev/null)" = "$NATS_PY_VERSION" ]; then
  step "Python package: nats-py $NATS_PY_VERSION already installed"
else
  step "installing Python package: nats-py==$NATS_PY_VERSION"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "nats-py==$NATS_PY_VERSION"
  python3 -c 'import nats' || die "nats-py still not importable"
fi

# --- cvc5 for the verification service --------------------------------------------------------
CVC5_WHEEL_VERSION=1.4.2
cvc5_good() { # $1 = command; true if it reports cvc5 1.3 or newer
  local v
  v=$("$1" --version 2>/dev/null | sed -n 's/.*cvc5 version \([0-9][0-9]*\)\.\([0-9][0-9]*\).*/\1 \2/p' | head -n 1)
  [ -n "$v" ] || return 1
  # shellcheck disable=SC2086 # two numbers, split on purpose
  set -- $v
  [ "$1" -gt 1 ] || { [ "$1" -eq 1 ] && [ "$2" -ge 3 ]; }
}
if [ -n "${ACGS_CVC5:-}" ] && cvc5_good "$ACGS_CVC5"; then
  step "cvc5: $ACGS_CVC5 (from ACGS_CVC5)"
elif command -v cvc5 >/dev/null && cvc5_good "$(command -v cvc5)"; then
  ACGS_CVC5=$(command -v cvc5)
  step "cvc5: $ACGS_CVC5 on PATH"
else
  PYTHON=$(python3 -c 'import sys; print(sys.executable)')
  if [ "$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("cvc5"))' 2>/dev/null)" != "$CVC5_WHEEL_VERSION" ]; then
    step "installing Python package: cvc5==$CVC5_WHEEL_VERSION (the solver library)"
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "cvc5==$CVC5_WHEEL_VERSION"
  fi
  ACGS_CVC5="$REPO_ROOT/target/cvc5/bin/cvc5"
  wrapper="#!/bin/sh
# Written by scripts/test.sh: the cvc5 command, from PyPI's cvc5 wheel through scripts/cvc5-adapter.py.
exec '$PYTHON' '$REPO_ROOT/scripts/cvc5-adapter.py' \"\$@\""
  if [ "$(cat "$ACGS_CVC5" 2>/dev/null || true)" != "$wrapper" ]; then
    mkdir -p "$(dirname "$ACGS_CVC5")"
    printf '%s\n' "$wrapper" >"$ACGS_CVC5"
    chmod 755 "$ACGS_CVC5"
  fi
  cvc5_good "$ACGS_CVC5" || die "cvc5: $ACGS_CVC5 does not report cvc5 1.3 or newer: $("$ACGS_CVC5" --version 2>&1 | head -n 3)"
  step "cvc5: $("$ACGS_CVC5" --version | head -n 1) ($ACGS_CVC5)"
fi
export ACGS_CVC5

# --- Rust targets -----------------------------------------------------------------------------
# The static build (`cargo build --target x86_64-unknown-linux-musl`) the bootstrap's image uses.
MUSL_TARGET=x86_64-unknown-linux-musl
if command -v rustup >/dev/null; then
  if ! rustup target list --installed | grep -qx "$MUSL_TARGET"; then
    step "rustup target add $MUSL_TARGET"
    rustup target add "$MUSL_TARGET" >&2
  fi
  step "Rust: $(cargo --version), targets: $(rustup target list --installed | paste -sd ' ' -)"
else
  warn "no rustup: cannot add the $MUSL_TARGET target (static builds will fail)"
  step "Rust: $(cargo --version)"
fi

locked=()
if [ -f "$REPO_ROOT/Cargo.lock" ]; then locked=(--locked); else warn "no Cargo.lock: running without --locked"; fi

# --- Docker engine for the slow suites --------------------------------------------------------
if [ "$ACGS_SLOW_TESTS" = 1 ]; then
  command -v docker >/dev/null || die "no docker client on PATH after installing docker.io"
  if [ -n "${DOCKER_HOST:-}" ] && [ "$DOCKER_HOST" != unix:///var/run/docker.sock ]; then
    # Somebody else's daemon: use it, never start one in its place.
    docker info >/dev/null 2>&1 || die "DOCKER_HOST=$DOCKER_HOST does not answer (docker info failed): $(docker info 2>&1 | tail -n 1)"
    step "Docker: $DOCKER_HOST ($(docker version -f '{{.Server.Version}}' 2>/dev/null))"
  else
    export DOCKER_HOST=unix:///var/run/docker.sock
    docker_log="$REPO_ROOT/target/dockerd.log"
    dockerd_alive() { [ -s /var/run/docker.pid ] && "${SUDO[@]}" kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; }
    if docker info >/dev/null 2>&1; then
      step "Docker: daemon already running ($(docker version -f '{{.Server.Version}}' 2>/dev/null))"
    else
      if dockerd_alive; then
        step "Docker: dockerd (pid $(cat /var/run/docker.pid)) is running but not answering yet: waiting"
      else
        step "starting dockerd in the background (log: $docker_log)"
        mkdir -p "$REPO_ROOT/target"
        # Its own session, so that Ctrl-C on this script or the end of the CI step's process
        # group does not take the daemon down with it.
        "${SUDO[@]}" setsid -f dockerd >"$docker_log" 2>&1 </dev/null
      fi
      t0=$SECONDS
      until docker info >/dev/null 2>&1; do
        if [ $((SECONDS - t0)) -ge 60 ]; then
          tail -n 15 "$docker_log" >&2 2>/dev/null || true
          die "Docker daemon not answering after 60 s (docker info: $(docker info 2>&1 | tail -n 1); log: $docker_log)"
        fi
        if [ $((SECONDS - t0)) -ge 2 ] && ! dockerd_alive; then
          tail -n 15 "$docker_log" >&2 2>/dev/null || true
          die "dockerd exited (log: $docker_log)"
        fi
        sleep 0.5
      done
      step "Docker: dockerd $(docker version -f '{{.Server.Version}}' 2>/dev/null) ready in $((SECONDS - t0)) s"
    fi
  fi
  # The local images (no registry here): built once, then only when their recipe changes.
  nice scripts/images.sh || die "scripts/images.sh failed (see above)"
  while read -r name tag; do
    export "ACGS_TEST_${name^^}_IMAGE=$tag"
  done < <(scripts/images.sh --list)
  # The acgs image is built from a static binary (a FROM scratch image under 25 MB).
  step "cargo build --profile image --target $MUSL_TARGET --bin acgs (the static binary the bootstrap tests put in the image)"
  nice cargo build "${locked[@]}" --profile image --target "$MUSL_TARGET" --bin acgs || die "the static build failed"
  export ACGS_TEST_STATIC_BIN="$REPO_ROOT/target/$MUSL_TARGET/image/acgs"
  step "static binary: $ACGS_TEST_STATIC_BIN ($(du -h "$ACGS_TEST_STATIC_BIN" | cut -f1))"
else
  step "ACGS_SLOW_TESTS=0: slow (Docker/bootstrap) suites will be skipped"
fi

# --- PostgreSQL -------------------------------------------------------------------------------
PG_VER=$(pg_server_version)
[ -n "$PG_VER" ] || die "no PostgreSQL server under /usr/lib/postgresql/*/bin/postgres"
PG_CLUSTER=main

cluster_field() { # $1 = column number of `pg_lsclusters -h` (3 port, 4 status)
  pg_lsclusters -h | awk -v v="$PG_VER" -v c="$PG_CLUSTER" -v f="$1" '$1 == v && $2 == c { print $f }'
}

if [ -z "$(cluster_field 3)" ]; then
  step "creating PostgreSQL $PG_VER cluster '$PG_CLUSTER'"
  "${SUDO[@]}" pg_createcluster "$PG_VER" "$PG_CLUSTER" >&2
fi
PG_PORT=$(cluster_field 3)
[ -n "$PG_PORT" ] || die "cannot read the port of cluster $PG_VER/$PG_CLUSTER from pg_lsclusters"

# Listen on 127.0.0.1 only (Debian's default 'localhost' also means ::1). A drop-in file in the
# cluster's conf.d (Debian's postgresql.conf includes it) keeps postgresql.conf untouched.
need_restart=0
pg_conf_dir="/etc/postgresql/$PG_VER/$PG_CLUSTER"
pg_dropin="$pg_conf_dir/conf.d/acgs-test.conf"
pg_dropin_text="# Written by acgs scripts/test.sh: the test server listens on loopback IPv4 only.
listen_addresses = '127.0.0.1'"
if [ "$("${SUDO[@]}" cat "$pg_dropin" 2>/dev/null || true)" != "$pg_dropin_text" ]; then
  step "PostgreSQL $PG_VER/$PG_CLUSTER: listen_addresses = '127.0.0.1' ($pg_dropin)"
  "${SUDO[@]}" mkdir -p "$pg_conf_dir/conf.d"
  printf '%s\n' "$pg_dropin_text" | "${SUDO[@]}" tee "$pg_dropin" >/dev/null
  need_restart=1
fi

pg_log="/var/log/postgresql/postgresql-$PG_VER-$PG_CLUSTER.log"
pg_action() { # start | restart; "already running" is fine
  local out rc=0
  out=$("${SUDO[@]}" pg_ctlcluster "$PG_VER" "$PG_CLUSTER" "$1" 2>&1) || rc=$?
  if [ "$rc" -ne 0 ]; then
    case "$out" in
      *"already running"*) ;;
      *) printf '%s\n' "$out" >&2
         "${SUDO[@]}" tail -n 20 "$pg_log" >&2 2>/dev/null || true
         die "pg_ctlcluster $PG_VER $PG_CLUSTER $1 failed (exit $rc)" ;;
    esac
  fi
}

if [ "$(cluster_field 4)" = online ]; then
  if [ "$need_restart" = 1 ]; then
    step "restarting PostgreSQL $PG_VER/$PG_CLUSTER for listen_addresses"
    pg_action restart
  else
    step "PostgreSQL $PG_VER/$PG_CLUSTER already running on port $PG_PORT"
  fi
else
  step "starting PostgreSQL $PG_VER/$PG_CLUSTER on 127.0.0.1:$PG_PORT"
  pg_action start
fi

step "waiting for PostgreSQL on 127.0.0.1:$PG_PORT"
ready=0
for _ in $(seq 1 60); do
  if pg_isready -q -h 127.0.0.1 -p "$PG_PORT"; then ready=1; break; fi
  sleep 0.5
done
[ "$ready" = 1 ] || {
  "${SUDO[@]}" tail -n 20 "$pg_log" >&2 2>/dev/null || true
  die "PostgreSQL not ready on 127.0.0.1:$PG_PORT after 30 s"
}

# A password for this run only (hex: no quoting problems in SQL or in the URL). It goes to psql
# on stdin, never on a command line.
PG_PW=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
step "setting a fresh password on PostgreSQL role acgs_test (SUPERUSER)"
as_postgres psql -q -X -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres >/dev/null <<SQL
DO \$\$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'acgs_test') THEN
    ALTER ROLE acgs_test WITH SUPERUSER LOGIN PASSWORD '$PG_PW';
  ELSE
    CREATE ROLE acgs_test WITH SUPERUSER LOGIN PASSWORD '$PG_PW';
  END IF;
END
\$\$;
SQL
PG_URL="postgres://acgs_test:$PG_PW@127.0.0.1:$PG_PORT/postgres"
# Check the URL really works over TCP with the password before handing it to the tests.
PGPASSWORD="$PG_PW" psql -q -X -h 127.0.0.1 -p "$PG_PORT" -U acgs_test -d postgres -Atc 'SELECT 1' >/dev/null \
  || die "cannot log in as acgs_test over TCP on 127.0.0.1:$PG_PORT (check pg_hba.conf)"

# Tests create one database per test app (acgs_test_<uuid>); drop what earlier runs left.
step "dropping test databases left by earlier runs"
as_postgres psql -q -X -p "$PG_PORT" -d postgres -Atc \
  "SELECT datname FROM pg_database WHERE datname LIKE 'acgs\_test\_%'" 2>/dev/null \
  | while read -r db; do as_postgres psql -q -X -p "$PG_PORT" -d postgres -c "DROP DATABASE IF EXISTS \"$db\"" >/dev/null || true; done

# --- the suite, twice -------------------------------------------------------------------------

step "pass 1/2: cargo test ${locked[*]}${*:+ $*} (SQLite, ACGS_TEST_DATABASE_URL unset, ACGS_SLOW_TESTS=$ACGS_SLOW_TESTS)"
rc_sqlite=0
cargo test "${locked[@]}" --no-fail-fast "$@" || rc_sqlite=$?

step "pass 2/2: cargo test ${locked[*]} --tests${*:+ $*} (PostgreSQL 127.0.0.1:$PG_PORT, ACGS_SLOW_TESTS=$ACGS_SLOW_TESTS)"
rc_pg=0
ACGS_TEST_DATABASE_URL="$PG_URL" ACGS_TEST_PG_RESTART="${SUDO[*]} pg_ctlcluster $PG_VER $PG_CLUSTER restart" cargo test "${locked[@]}" --no-fail-fast --tests "$@" || rc_pg=$?

verdict() { if [ "$1" -eq 0 ]; then echo ok; else echo "FAILED (exit $1)"; fi; }
step "pass 1 (SQLite):     $(verdict "$rc_sqlite")"
step "pass 2 (PostgreSQL): $(verdict "$rc_pg")"
[ "$rc_sqlite" -eq 0 ] && [ "$rc_pg" -eq 0 ]
