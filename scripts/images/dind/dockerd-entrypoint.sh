#!/bin/sh
# dockerd-entrypoint.sh of acgs-local/dind:bookworm (scripts/images.sh): what the official
# docker:dind entrypoint does, for Debian's docker.io, minus certificate generation.
#   - no arguments, or a first argument that is an option: `dockerd` on the unix socket plus,
#     when $DOCKER_TLS_CERTDIR (default /certs) is set, mutual TLS on tcp://0.0.0.0:2376 with
#     $DOCKER_TLS_CERTDIR/server/{ca,cert,key}.pem (made by `acgs certs`/`acgs bootstrap`; this
#     image does not generate them), or plain TCP on 2375 when DOCKER_TLS_CERTDIR is empty
#     (unauthenticated: as upstream, only for a trusted network);
#   - `dockerd ...`: runs exactly that, after removing a stale pid file, mounting a tmpfs on
#     /tmp (as moby's hack/dind), making the cgroup hierarchies writable (cgroup v1 in a
#     private cgroup namespace, or v2 nesting), and picking iptables-legacy if iptables (nft)
#     cannot work;
#   - anything else runs as given.
set -eu

if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
	if [ -n "${DOCKER_TLS_CERTDIR:-}" ]; then
		d=$DOCKER_TLS_CERTDIR/server
		for f in ca.pem cert.pem key.pem; do
			if [ ! -s "$d/$f" ]; then
				echo "dockerd-entrypoint.sh: no $d/$f (this image does not make certificates: mount them, e.g. from 'acgs certs')" >&2
				exit 1
			fi
		done
		set -- dockerd --host=unix:///var/run/docker.sock --host=tcp://0.0.0.0:2376 --tlsverify \
			--tlscacert "$d/ca.pem" --tlscert "$d/cert.pem" --tlskey "$d/key.pem" "$@"
	else
		echo "dockerd-entrypoint.sh: WARNING: DOCKER_TLS_CERTDIR is empty: the API is on tcp://0.0.0.0:2375 without TLS" >&2
		set -- dockerd --host=unix:///var/run/docker.sock --host=tcp://0.0.0.0:2375 "$@"
	fi
fi

if [ "$1" = dockerd ]; then
	find /run /var/run -iname 'docker*.pid' -delete 2>/dev/null || :
	if ! mountpoint -q /tmp; then mount -t tmpfs none /tmp 2>/dev/null || :; fi
	if ! iptables -nL >/dev/null 2>&1 && iptables-legacy -nL >/dev/null 2>&1; then
		echo "dockerd-entrypoint.sh: iptables (nft) does not work here; using iptables-legacy" >&2
		update-alternatives --quiet --set iptables /usr/sbin/iptables-legacy
		update-alternatives --quiet --set ip6tables /usr/sbin/ip6tables-legacy
	fi
	# cgroup v1 in a private cgroup namespace (docker run --cgroupns private, without a bind
	# mount of the host's /sys/fs/cgroup): Docker mounts the hierarchies read-only; mounted
	# again here they are writable and rooted at this container's own cgroup, so the inner
	# daemon's containers nest below it (and within its limits).
	if [ ! -f /sys/fs/cgroup/cgroup.controllers ] && ! grep -qv ':/$' /proc/self/cgroup; then
		awk '$3 == "cgroup" && $4 ~ /(^|,)ro(,|$)/ { print $2 }' /proc/mounts | while read -r dir; do
			opts=$(awk -v d="$dir" '$2 == d { print $4 }' /proc/mounts | tr , '\n' \
				| grep -vxE 'ro|rw|nosuid|nodev|noexec|relatime' | paste -sd, -)
			umount "$dir" && mount -t cgroup -o "$opts" cgroup "$dir" \
				|| echo "dockerd-entrypoint.sh: cannot mount cgroup $opts on $dir read-write" >&2
		done
	fi
	# cgroup v2: move this process out of the root group so the inner daemon can enable
	# controllers for its containers (moby's hack/dind). Nothing to do on cgroup v1.
	if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
		mkdir -p /sys/fs/cgroup/init
		xargs -rn1 </sys/fs/cgroup/cgroup.procs >/sys/fs/cgroup/init/cgroup.procs 2>/dev/null || :
		sed -e 's/ / +/g' -e 's/^/+/' </sys/fs/cgroup/cgroup.controllers >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || :
	fi
	set -- docker-init -- "$@"
fi

exec "$@"
