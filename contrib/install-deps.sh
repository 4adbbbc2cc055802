#!/usr/bin/env bash
# Installs what building and testing vfolder needs on a fresh Debian machine.
# Idempotent and non-interactive: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH

# Debian packages the tests and the benchmark harness use (etcd-server: the
# cluster tests start private etcd processes; it is not started as a service;
# docker.io: the Docker tests start a private dockerd of their own, the
# packaged service is not started either; jq: they check the README's jq line).
APT_PACKAGES=(util-linux mount procps crun runc busybox-static fio fuse bindfs mergerfs etcd-server rsync stress-ng docker.io jq)
# dpkg: make package's test installs the .deb into a private root.
APT_PACKAGES+=(dpkg)
# openssh-client and rclone: the SFTP tests drive the endpoint with them.
APT_PACKAGES+=(openssh-client rclone)
# curl: the file API tests send range requests over the socket.
APT_PACKAGES+=(curl)

need=()
for p in "${APT_PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-deps: need root to install: ${need[*]}" >&2
		exit 1
	fi
	echo "install-deps: installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# Packaged services (etcd) must not be started by the install: tests
	# start their own instances on private ports and directories.
	policy=/usr/sbin/policy-rc.d
	made_policy=
	if ! [ -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
		trap 'rm -f "$policy"' EXIT
	fi
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	[ -z "$made_policy" ] || { rm -f "$policy"; trap - EXIT; }
fi

if ! command -v go >/dev/null 2>&1; then
	echo "install-deps: Go 1.26 or newer is required (expected at /usr/local/go)" >&2
	exit 1
fi

go mod download
# The packager (make package) is a module of its own.
(cd contrib/package && go mod download)
mkdir -p bin/tools
if ! [ -x bin/tools/staticcheck ]; then
	echo "install-deps: installing staticcheck"
	GOBIN="$PWD/bin/tools" go install "honnef.co/go/tools/cmd/staticcheck@${STATICCHECK_VERSION:-v0.8.2}"
fi
