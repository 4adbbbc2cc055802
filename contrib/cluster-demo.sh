#!/usr/bin/env bash
# A local cluster: a single-member etcd and three vfolderd nodes (node1,
# node2, node3) on one machine, sharing one volume directory. Everything
# lives under .vfolder-cluster-demo/ in the checkout: etcd's data, the
# shared volume, and per node its state directory, socket, mount point and
# sessions directory. Ctrl-C stops every process this script started (by
# PID) and leaves the files for the next run.
#
# CLUSTER_DEMO_PORT (default 23790) is etcd's client port; the peer port is
# the next one.
set -euo pipefail
cd "$(dirname "$0")/.."
demo="$PWD/.vfolder-cluster-demo"
port="${CLUSTER_DEMO_PORT:-23790}"
peer=$((port + 1))
endpoint="http://127.0.0.1:$port"

etcd_bin="$(command -v etcd || true)"
if [[ -z "$etcd_bin" ]]; then
	echo "cluster-demo: no etcd binary: install Debian's etcd-server (contrib/install-deps.sh does)" >&2
	exit 1
fi
if [[ $EUID -ne 0 || ! -e /dev/fuse ]]; then
	echo "cluster-demo: needs root and /dev/fuse (vfolderd mounts its FUSE namespace)" >&2
	exit 1
fi

mkdir -p "$demo/etcd" "$demo/volumes/local"
pids=()
# stop [CODE]: stop everything; exit with CODE when given (a signal).
stop() {
	trap - INT TERM EXIT
	echo
	echo "stopping..."
	# The daemons first (they leave the cluster through etcd), then etcd.
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill -TERM "${pids[i]}" 2>/dev/null || true
		wait "${pids[i]}" 2>/dev/null || true
	done
	echo "stopped; the files stay in $demo"
	if [[ $# -gt 0 ]]; then exit "$1"; fi
}
trap 'stop 0' INT TERM
trap stop EXIT

# etcd answers {"health":"true"} on /health once it has a leader.
healthy() {
	local r=1
	{ exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || return 1
	printf 'GET /health HTTP/1.0\r\n\r\n' >&3
	grep -q '"health":"true"' <&3 && r=0
	exec 3<&-
	return $r
}

# Each process runs in a session of its own, so that Ctrl-C reaches this
# script only, which stops the daemons before etcd.
ETCD_UNSUPPORTED_ARCH="$(go env GOARCH 2>/dev/null || uname -m)" setsid "$etcd_bin" \
	--name demo --data-dir "$demo/etcd" \
	--listen-client-urls "$endpoint" --advertise-client-urls "$endpoint" \
	--listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
	--initial-cluster "demo=http://127.0.0.1:$peer" \
	--log-level warn >"$demo/etcd.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
	if healthy; then break; fi
	if ! kill -0 "${pids[0]}" 2>/dev/null; then
		echo "cluster-demo: etcd exited; see $demo/etcd.log" >&2
		exit 1
	fi
	sleep 0.1
done

for n in 1 2 3; do
	d="$demo/node$n"
	mkdir -p "$d/state" "$d/mnt"
	setsid bin/vfolderd \
		--etcd-endpoints "$endpoint" --node-id "node$n" \
		--volume "local=$demo/volumes/local" \
		--state-dir "$d/state" --socket "$d/vfolderd.sock" \
		--mount-point "$d/mnt" --sessions-dir "$d/sessions" \
		--force-stop --log-level info >"$d/vfolderd.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 300); do
		if [[ -S "$d/vfolderd.sock" ]] && bin/vfolder --socket "$d/vfolderd.sock" volume list >/dev/null 2>&1; then break; fi
		if ! kill -0 "${pids[-1]}" 2>/dev/null; then
			echo "cluster-demo: vfolderd node$n exited; see $d/vfolderd.log" >&2
			exit 1
		fi
		sleep 0.1
	done
done

cat <<EOT
etcd at $endpoint; nodes node1, node2, node3 share the volume $demo/volumes/local.
Logs: $demo/etcd.log, $demo/node*/vfolderd.log. In another terminal, try:
  D=$demo
  U=2b1a7c4e-5d3f-4a8e-9c0b-1f2e3d4c5b6a
  n1="bin/vfolder --socket \$D/node1/vfolderd.sock"
  n2="bin/vfolder --socket \$D/node2/vfolderd.sock"
  n3="bin/vfolder --socket \$D/node3/vfolderd.sock"
  \$n1 create data local --user \$U          # made through node1...
  ls \$D/node2/mnt/users/*/                 # ...in node2's views at once
  \$n3 create data local --user \$U          # refused: the name is taken cluster-wide
  \$n2 mount publish job-1 --user \$U data   # a session on node2 mounts it
  \$n1 delete data --user \$U                # refused, naming session job-1 on node node2
  \$n3 node list                            # the nodes and their sessions
  \$n1 quota-scope set local \$U 100MiB -t user     # one limit for the whole cluster
  for n in 1 2 3; do head -c 60M /dev/zero > \$(echo \$D/node\$n/mnt/users/*/data)/from-node\$n; done
                                           # node2's is cut short at 100 MiB in all, node3's gets EDQUOT
  \$n2 quota-scope get local \$U -t user     # the cluster-wide usage, on any node
  \$n3 node list                            # GRANTS: the room each node holds (none once full)
  \$n2 mount unpublish job-1; \$n1 delete data --user \$U
Press Ctrl-C to stop everything.
EOT
wait -n "${pids[@]}" || true
echo "cluster-demo: a process exited; see the logs in $demo" >&2
