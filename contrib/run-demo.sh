#!/usr/bin/env bash
# Runs vfolderd in the foreground on the embedded default: a local directory
# as the volume ("local"), badger embedded in a node-local state directory.
# Everything lives under .vfolder-demo/ in the checkout; Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
demo="$PWD/.vfolder-demo"
mkdir -p "$demo/volumes/local" "$demo/state" "$demo/mnt"
sock="$demo/vfolderd.sock"
cat <<EOT
vfolderd: volume "local" at $demo/volumes/local, state in $demo/state
In another terminal, try:
  export VFOLDER_SOCKET=$sock
  bin/vfolder volume list
  bin/vfolder create mydata1 local --user 2b1a7c4e-5d3f-4a8e-9c0b-1f2e3d4c5b6a
  bin/vfolder list
  bin/vfolder quota-scope set local 2b1a7c4e-5d3f-4a8e-9c0b-1f2e3d4c5b6a 10G -t user
  bin/vfolder quota-scope get local 2b1a7c4e-5d3f-4a8e-9c0b-1f2e3d4c5b6a -t user
Press Ctrl-C to stop.
EOT
exec bin/vfolderd \
	--volume "local=$demo/volumes/local" \
	--state-dir "$demo/state" \
	--socket "$sock" \
	--mount-point "$demo/mnt" \
	--log-level info
