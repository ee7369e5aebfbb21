#!/usr/bin/env bash
# scripts/images.sh — build the container images the Docker (bootstrap) tests use, without any
# container registry: Debian packages only. scripts/test.sh runs it when ACGS_SLOW_TESTS=1; it
# also works by hand.
#
# Usage:   scripts/images.sh [--force] [IMAGE...]     IMAGE: dind postgres redis nats prometheus solver
#                                                     (default: all of them)
#          scripts/images.sh --list                   each image's name and tag, one a line
#
# How: `debootstrap --variant=minbase bookworm` once into a cached base root filesystem (about a
# minute), then per image a copy of it, `apt-get install` of Debian's packages in a chroot, the
# entrypoint and configuration files from scripts/images/<image>/, and
# `tar | docker import`, then the official image's metadata (ENTRYPOINT, CMD, USER, ENV, VOLUME,
# EXPOSE, WORKDIR, STOPSIGNAL) from a metadata-only Dockerfile. Each image is labelled `acgs.recipe=<sha256>` of its
# recipe (the shell functions below that make it, and its files); an image whose tag exists with
# the same label is not built again. Downloaded .deb files are kept for the next build.
#
#   tag                          stands in for        what Debian gives
#   acgs-local/dind:bookworm     docker:dind          docker.io 20.10 (API 1.41), iptables
#   acgs-local/postgres:15       postgres:15          postgresql-15
#   acgs-local/redis:7           redis:7              redis-server 7.0
#   acgs-local/nats:2            nats:2               nats-server 2.9
#   acgs-local/prometheus:2      prom/prometheus:v2   prometheus 2.42 (and promtool)
#   acgs-local/cvc5:1.4.2        (none: a base for     python3 with PyPI's cvc5 wheel behind
#                                the verification     scripts/cvc5-adapter.py as `cvc5`
#                                service's solver)
#
# Environment:
#   ACGS_IMAGES_DIR       work and cache directory (default: target/images in the repository)
#   ACGS_IMAGE_PREFIX     tag prefix (default acgs-local)
#   ACGS_DEBIAN_MIRROR    default http://deb.debian.org/debian
#   ACGS_DEBIAN_SECURITY  default http://deb.debian.org/debian-security
# Needs root (debootstrap, chroot; it re-runs itself through sudo otherwise), debootstrap and a
# Docker daemon the `docker` client reaches (DOCKER_HOST is honoured).
set -euo pipefail

step() { printf '==> %s\n' "$*" >&2; }
die() { printf '==> ERROR: %s\n' "$*" >&2; exit 1; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT=$(pwd)
FILES_DIR="$REPO_ROOT/scripts/images"
ALL_IMAGES=(dind postgres redis nats prometheus solver)
CVC5_VERSION=1.4.2
SUITE=bookworm
PREFIX="${ACGS_IMAGE_PREFIX:-acgs-local}"
MIRROR="${ACGS_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${ACGS_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}"
IMAGES_DIR="${ACGS_IMAGES_DIR:-$REPO_ROOT/target/images}"
BASE="$IMAGES_DIR/base-$SUITE"
DEB_CACHE="$IMAGES_DIR/debs"

tag_of() {
  case "$1" in
    dind) echo "$PREFIX/dind:bookworm" ;;
    postgres) echo "$PREFIX/postgres:15" ;;
    redis) echo "$PREFIX/redis:7" ;;
    nats) echo "$PREFIX/nats:2" ;;
    prometheus) echo "$PREFIX/prometheus:2" ;;
    solver) echo "$PREFIX/cvc5:$CVC5_VERSION" ;;
    *) return 1 ;;
  esac
}

force=0
images=()
for arg; do
  case "$arg" in
    --force) force=1 ;;
    --list) for i in "${ALL_IMAGES[@]}"; do printf '%s %s\n' "$i" "$(tag_of "$i")"; done; exit 0 ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    -*) die "unknown option '$arg' (see --help)" ;;
    *) tag_of "$arg" >/dev/null || die "unknown image '$arg' (one of: ${ALL_IMAGES[*]})"; images+=("$arg") ;;
  esac
done
[ "${#images[@]}" -gt 0 ] || images=("${ALL_IMAGES[@]}")

if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || die "not root and no sudo: debootstrap and chroot need root"
  exec sudo --preserve-env=DOCKER_HOST,DOCKER_CERT_PATH,DOCKER_TLS_VERIFY,ACGS_IMAGES_DIR,ACGS_IMAGE_PREFIX,ACGS_DEBIAN_MIRROR,ACGS_DEBIAN_SECURITY -- "$0" "$@"
fi
command -v debootstrap >/dev/null || die "debootstrap not installed (apt-get install debootstrap; scripts/test.sh does)"
command -v docker >/dev/null || die "docker client not installed (apt-get install docker.io; scripts/test.sh does)"
docker info >/dev/null 2>&1 || die "no Docker daemon answers (docker info failed${DOCKER_HOST:+ for DOCKER_HOST=$DOCKER_HOST}); scripts/test.sh starts one"

mkdir -p "$IMAGES_DIR" "$DEB_CACHE"
exec 9>"$IMAGES_DIR/.lock"
flock -w 1800 9 || die "another scripts/images.sh holds $IMAGES_DIR/.lock"

# Trees being worked on: their /proc is unmounted whatever happens.
ACTIVE_ROOTS=()
on_exit() {
  local r
  for r in "${ACTIVE_ROOTS[@]}"; do
    if mountpoint -q "$r/proc" 2>/dev/null; then umount "$r/proc" 2>/dev/null || umount -l "$r/proc" || true; fi
  done
}
trap on_exit EXIT

# LOG WHAT CMD...: run CMD in a subshell with errexit really on (never call it from a condition,
# `||` or `&&`: bash would switch errexit off inside), output appended to LOG; on failure show
# the log's end and stop.
run_logged() {
  local log=$1 what=$2 rc
  shift 2
  ("$@") >>"$log" 2>&1 &
  set +e
  wait "$!"
  rc=$?
  set -e
  if [ "$rc" -ne 0 ]; then
    tail -n 25 "$log" >&2
    die "$what failed (exit $rc; log: $log)"
  fi
}

# --- working in a root filesystem ---------------------------------------------------------------
# Everything from here to the recipes is part of every image's recipe hash.

in_root() { # ROOT CMD...: run CMD inside ROOT with a clean environment
  local root=$1; shift
  chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}

mounted_under() { # ROOT: true if anything is mounted at or below ROOT
  awk -v r="$1" '$2 == r || index($2, r "/") == 1 { found = 1 } END { exit !found }' /proc/mounts
}

release_root() { # ROOT: unmount what enter_root mounted (idempotent)
  local root=$1
  if mountpoint -q "$root/proc" 2>/dev/null; then umount "$root/proc" || umount -l "$root/proc"; fi
  ! mounted_under "$root" || die "something is still mounted under $root; not touching it"
}

remove_root() { # ROOT: delete a work tree, never across a mount
  release_root "$1"
  rm -rf --one-file-system "$1"
}

enter_root() { # ROOT: /proc, DNS and the cached .deb files, for apt in a chroot
  local root=$1
  ACTIVE_ROOTS+=("$root")
  mount -t proc proc "$root/proc"
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  find "$DEB_CACHE" -maxdepth 1 -name '*.deb' -exec cp -l -t "$root/var/cache/apt/archives/" {} + 2>/dev/null \
    || find "$DEB_CACHE" -maxdepth 1 -name '*.deb' -exec cp -t "$root/var/cache/apt/archives/" {} +
}

apt_in() { # ROOT PKG...: install Debian packages (no recommends) in ROOT, upgrading what is there
  local root=$1; shift
  in_root "$root" apt-get update -q
  in_root "$root" apt-get -y -q -o Dpkg::Options::=--force-confold dist-upgrade
  if [ "$#" -gt 0 ]; then in_root "$root" apt-get install -y -q --no-install-recommends "$@"; fi
}

leave_root() { # ROOT: keep the downloaded .deb files, make the tree small, unmount
  local root=$1
  find "$root/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -exec cp -n -l -t "$DEB_CACHE/" {} + 2>/dev/null \
    || find "$root/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -exec cp -n -t "$DEB_CACHE/" {} +
  in_root "$root" apt-get clean
  release_root "$root"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old \
    "$root"/var/log/apt/* "$root"/var/log/*.log "$root"/tmp/* "$root"/var/tmp/* \
    "$root"/root/.bash_history "$root"/etc/machine-id "$root"/var/lib/dbus/machine-id
  find "$root"/usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || :
  find "$root"/usr/share/doc -mindepth 1 -type d -empty -delete 2>/dev/null || :
  rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/*
  find "$root"/usr/share/locale -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} + 2>/dev/null || :
  # Docker provides these at run time.
  : >"$root/etc/resolv.conf"
  rm -f "$root/etc/hostname"
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
}

put_file() { # ROOT SRC DEST MODE: a file from scripts/images/ into the tree
  install -D -m "$4" "$FILES_DIR/$2" "$1$3"
}

# --- the base root filesystem (cached) ----------------------------------------------------------

base_recipe() { # ROOT: after debootstrap --variant=minbase
  local root=$1
  printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n' \
    "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" "$SECURITY_MIRROR" "$SUITE" >"$root/etc/apt/sources.list"
  rm -f "$root"/etc/apt/sources.list.d/*
  # Slim, like Debian's own container images: no documentation but licences, no translations.
  cat >"$root/etc/dpkg/dpkg.cfg.d/acgs-slim" <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
EOF
  cat >"$root/etc/apt/apt.conf.d/acgs-container" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
EOF
  # Package scripts must not start services in a chroot or an image build.
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod 755 "$root/usr/sbin/policy-rc.d"
}

base_hash() {
  { echo "$SUITE"; declare -f base_recipe; } | sha256sum | cut -c1-64
}

ensure_base() {
  local want have=''
  want=$(base_hash)
  [ -f "$BASE.recipe" ] && have=$(cat "$BASE.recipe")
  if [ -d "$BASE" ] && [ "$have" = "$want" ]; then
    step "base root filesystem: $BASE (cached)"
    return
  fi
  step "debootstrap --variant=minbase $SUITE $BASE ($MIRROR; about a minute)"
  local t0=$SECONDS tmp="$BASE.tmp"
  [ ! -e "$tmp" ] || remove_root "$tmp"
  local log="$IMAGES_DIR/debootstrap.log"
  if ! nice debootstrap --variant=minbase --components=main --cache-dir="$DEB_CACHE" "$SUITE" "$tmp" "$MIRROR" >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    [ ! -f "$tmp/debootstrap/debootstrap.log" ] || tail -n 20 "$tmp/debootstrap/debootstrap.log" >&2
    die "debootstrap failed (log: $log)"
  fi
  base_recipe "$tmp"
  enter_root "$tmp"
  run_logged "$log" "apt-get in the base" apt_in "$tmp"
  run_logged "$log" "cleaning the base" leave_root "$tmp"
  [ ! -e "$BASE" ] || remove_root "$BASE"
  mv "$tmp" "$BASE"
  printf '%s\n' "$want" >"$BASE.recipe"
  step "base root filesystem ready in $((SECONDS - t0)) s ($(du -sh --one-file-system "$BASE" | cut -f1))"
}

# --- the images ---------------------------------------------------------------------------------
# recipe_<image> ROOT makes the tree from a copy of the base, with the files in
# scripts/images/<image>/; changes_<image> prints the official image's metadata as Dockerfile
# instructions, one a line.

recipe_dind() {
  local root=$1
  apt_in "$root" docker.io ca-certificates iptables
  put_file "$root" dind/dockerd-entrypoint.sh /usr/local/bin/dockerd-entrypoint.sh 755
  mkdir -p "$root/var/lib/docker" "$root/certs"
}

changes_dind() {
  printf '%s\n' \
    'ENV DOCKER_TLS_CERTDIR=/certs' \
    'VOLUME /var/lib/docker' \
    'EXPOSE 2375/tcp 2376/tcp' \
    'ENTRYPOINT ["dockerd-entrypoint.sh"]' \
    'CMD []'
}

recipe_postgres() {
  local root=$1
  # The official image's ids (999), created before the package would pick its own.
  in_root "$root" groupadd -r -g 999 postgres
  in_root "$root" useradd -r -g postgres -u 999 -d /var/lib/postgresql -s /bin/bash postgres
  mkdir -p "$root/var/lib/postgresql" "$root/etc/postgresql-common"
  # No cluster from the package: the entrypoint runs initdb on the data volume.
  printf 'create_main_cluster = false\n' >"$root/etc/postgresql-common/createcluster.conf"
  apt_in "$root" postgresql-15 locales
  in_root "$root" localedef -i en_US -c -f UTF-8 -A /usr/share/locale/locale.alias en_US.UTF-8
  sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '*'!" "$root/usr/share/postgresql/15/postgresql.conf.sample"
  grep -qF "listen_addresses = '*'" "$root/usr/share/postgresql/15/postgresql.conf.sample" \
    || die "postgres: listen_addresses not found in postgresql.conf.sample"
  put_file "$root" postgres/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh 755
  mkdir -p "$root/docker-entrypoint-initdb.d" "$root/var/lib/postgresql/data" "$root/var/run/postgresql"
  in_root "$root" chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
  chmod 1777 "$root/var/lib/postgresql/data"
  chmod 3777 "$root/var/run/postgresql"
}

changes_postgres() {
  printf '%s\n' \
    'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'ENV LANG=en_US.utf8' \
    'ENV PG_MAJOR=15' \
    'ENV PGDATA=/var/lib/postgresql/data' \
    'VOLUME /var/lib/postgresql/data' \
    'EXPOSE 5432/tcp' \
    'STOPSIGNAL SIGINT' \
    'ENTRYPOINT ["docker-entrypoint.sh"]' \
    'CMD ["postgres"]'
}

recipe_redis() {
  local root=$1
  in_root "$root" groupadd -r -g 999 redis
  in_root "$root" useradd -r -g redis -u 999 -d /data -s /usr/sbin/nologin redis
  apt_in "$root" redis-server
  put_file "$root" redis/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh 755
  mkdir -p "$root/data"
  in_root "$root" chown redis:redis /data
}

changes_redis() {
  printf '%s\n' \
    'VOLUME /data' \
    'WORKDIR /data' \
    'EXPOSE 6379/tcp' \
    'ENTRYPOINT ["docker-entrypoint.sh"]' \
    'CMD ["redis-server"]'
}

recipe_nats() {
  local root=$1
  apt_in "$root" nats-server
  ln -sf /usr/sbin/nats-server "$root/nats-server"
  put_file "$root" nats/nats-server.conf /nats-server.conf 644
}

changes_nats() {
  printf '%s\n' \
    'USER nobody' \
    'EXPOSE 4222/tcp 6222/tcp 8222/tcp' \
    'ENTRYPOINT ["/nats-server"]' \
    'CMD ["--config", "nats-server.conf"]'
}

recipe_prometheus() {
  local root=$1
  apt_in "$root" prometheus
  # 212 MB of per-year time-zone data no page of Prometheus' (Debian's classic) web UI loads: it
  # uses moment-timezone-with-data.min.js.
  rm -rf "$root/usr/share/javascript/moment-timezone/data"
  # prom/prometheus's layout: /bin/prometheus (/bin is /usr/bin here), /bin/promtool, the
  # console files under /usr/share/prometheus, data in /prometheus owned by nobody.
  put_file "$root" prometheus/prometheus.yml /etc/prometheus/prometheus.yml 644
  ln -sfn /etc/prometheus/console_libraries "$root/usr/share/prometheus/console_libraries"
  ln -sfn /etc/prometheus/consoles "$root/usr/share/prometheus/consoles"
  mkdir -p "$root/prometheus"
  in_root "$root" chown -R nobody:nogroup /etc/prometheus /prometheus
}

changes_prometheus() {
  printf '%s\n' \
    'USER nobody' \
    'EXPOSE 9090/tcp' \
    'VOLUME /prometheus' \
    'WORKDIR /prometheus' \
    'ENTRYPOINT ["/bin/prometheus"]' \
    'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", "--web.console.libraries=/usr/share/prometheus/console_libraries", "--web.console.templates=/usr/share/prometheus/consoles"]'
}

recipe_solver() {
  local root=$1 wheels="$IMAGES_DIR/wheels"
  apt_in "$root" python3 python3-pip
  # The wheel comes through this machine's pip (its index, proxy and certificates), for the
  # chroot's Python (3.11, as Debian 12's), and is installed in the chroot from the file.
  mkdir -p "$wheels"
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux2014_x86_64 --dest "$wheels" "cvc5==$CVC5_VERSION"
  mkdir -p "$root/tmp/wheels"
  cp "$wheels"/cvc5-"$CVC5_VERSION"-*.whl "$root/tmp/wheels/"
  in_root "$root" sh -c 'python3 -m pip install --quiet --no-cache-dir --no-index --break-system-packages \
    --root-user-action=ignore /tmp/wheels/*.whl'
  rm -rf "$root/tmp/wheels"
  put_file "$root" ../cvc5-adapter.py /usr/local/lib/acgs/cvc5-adapter.py 644
  put_file "$root" solver/cvc5 /usr/local/bin/cvc5 755
  in_root "$root" apt-get purge -y -q --auto-remove python3-pip
}

changes_solver() {
  printf '%s\n' \
    'USER nobody' \
    'ENTRYPOINT ["cvc5"]' \
    'CMD ["--version"]'
}

# A quick check that the imported image does what its recipe promises.
check_image() { # IMAGE TAG
  local out rc=0
  case "$1" in
    dind) out=$(docker run --rm --entrypoint dockerd "$2" --version 2>&1) || rc=$? ;;
    postgres) out=$({ docker run --rm "$2" postgres --version && docker run --rm "$2" pg_isready --version; } 2>&1) || rc=$? ;;
    redis) out=$(docker run --rm "$2" redis-server --version 2>&1) || rc=$? ;;
    nats) out=$(docker run --rm "$2" --version 2>&1) || rc=$? ;;
    prometheus) out=$({ docker run --rm "$2" --version && docker run --rm --entrypoint promtool "$2" --version; } 2>&1) || rc=$? ;;
    solver) out=$(printf '(set-logic QF_LIA)(declare-const x Int)(assert (> x 1))(check-sat)\n' \
      | docker run --rm -i "$2" --lang smt 2>&1) || rc=$?
      [ "$out" = sat ] || rc=1 ;;
  esac
  [ "$rc" -eq 0 ] || die "$2 does not run: $(printf '%s' "$out" | tr '\n' ' ')"
  printf '%s\n' "$out" | { grep -v -e '^[[:space:]]' -e '^$' || true; } | sed 's/^/    /' >&2
}

recipe_hash() { # IMAGE
  {
    base_hash
    declare -f in_root mounted_under release_root remove_root enter_root apt_in leave_root put_file \
      build_image "recipe_$1" "changes_$1"
    (cd "$FILES_DIR/$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
    if [ "$1" = solver ]; then printf '%s\n' "$CVC5_VERSION"; sha256sum <"$REPO_ROOT/scripts/cvc5-adapter.py"; fi
  } | sha256sum | cut -c1-64
}

build_image() { # IMAGE
  local name=$1 tag hash have old_id root t0=$SECONDS
  tag=$(tag_of "$name")
  hash=$(recipe_hash "$name")
  have=$(docker image inspect -f '{{index .Config.Labels "acgs.recipe"}}' "$tag" 2>/dev/null || true)
  if [ "$force" = 0 ] && [ "$have" = "$hash" ]; then
    step "$tag: up to date (recipe ${hash:0:12})"
    return
  fi
  ensure_base
  step "$tag: building (recipe ${hash:0:12})"
  root="$IMAGES_DIR/rootfs-$name"
  [ ! -e "$root" ] || remove_root "$root"
  cp -a "$BASE" "$root"
  local log="$IMAGES_DIR/$name.log"
  : >"$log"
  enter_root "$root"
  run_logged "$log" "$tag: recipe_$name" "recipe_$name" "$root"
  run_logged "$log" "$tag: cleaning the tree" leave_root "$root"
  old_id=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
  # The tree becomes a one-layer image; the official image's metadata goes on top with a
  # Dockerfile that only sets metadata (`docker import --change` cannot set STOPSIGNAL), so the
  # build needs no registry and no network.
  local tmp_tag="$PREFIX/rootfs-$name:${hash:0:12}"
  tar --numeric-owner --xattrs --xattrs-include=security.capability -C "$root" \
    --exclude=./dev/* --exclude=./proc/* --exclude=./sys/* -c . \
    | docker import - "$tmp_tag" >>"$log" 2>&1 \
    || die "$tag: docker import failed (log: $log)"
  { printf 'FROM %s\n' "$tmp_tag"; "changes_$name"; printf 'LABEL acgs.recipe=%s\n' "$hash"; } \
    | DOCKER_BUILDKIT=0 docker build -q -t "$tag" - >>"$log" 2>&1 \
    || { tail -n 10 "$log" >&2; die "$tag: docker build of the metadata failed (log: $log)"; }
  docker rmi "$tmp_tag" >/dev/null
  remove_root "$root"
  local new_id
  new_id=$(docker image inspect -f '{{.Id}}' "$tag")
  if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then docker rmi "$old_id" >/dev/null 2>&1 || true; fi
  check_image "$name" "$tag"
  step "$tag: built in $((SECONDS - t0)) s, $(docker image inspect -f '{{.Size}}' "$tag" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
}

t_all=$SECONDS
for name in "${images[@]}"; do build_image "$name"; done
step "images ready in $((SECONDS - t_all)) s: $(for n in "${images[@]}"; do printf '%s ' "$(tag_of "$n")"; done)"
