#!/bin/sh
# docker-entrypoint.sh of acgs-local/redis:7 (scripts/images.sh): the behaviour of the official
# redis image's entrypoint, for Debian's redis-server.
#   - a first argument that is an option (`--requirepass x`) or a config file (`x.conf`) means
#     `redis-server` with those arguments;
#   - started as root, it hands the working directory (/data) to the redis user and runs again
#     as redis (started with --user redis, nothing to hand over);
#   - the official image compiles redis with protected mode off; Debian's is on, so without a
#     config file `--protected-mode no` is put first (any later option still wins; not before
#     the options redis only reads first: --version, --help, --test-memory, --check-system);
#   - umask 0077 unless the caller set one.
set -eu

if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
	set -- redis-server "$@"
fi

if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
	find . \! -user redis -exec chown redis '{}' + || :
	exec setpriv --reuid=redis --regid=redis --init-groups -- "$0" "$@"
fi

if [ "$1" = redis-server ]; then
	shift
	case "${1:-}" in
		*.conf | - | -v | --version | -h | --help | --test-memory | --check-system) set -- redis-server "$@" ;;
		*) set -- redis-server --protected-mode no "$@" ;;
	esac
fi

if [ "$(umask)" = 0022 ]; then
	umask 0077
fi

exec "$@"
