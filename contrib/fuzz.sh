#!/usr/bin/env bash
# Runs every fuzz target of the module for a bounded time each
# (FUZZTIME, default 5s; CI runs it through `make fuzz` as part of
# `make check`). A failing input is written by `go test` to the package's
# testdata/fuzz/<Target>/ directory; the script stops at the first failure.
# Optional arguments are package directories (./quota ./fs) to fuzz only
# those.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
fuzztime=${FUZZTIME:-5s}

dirs=("$@")
if [ ${#dirs[@]} -eq 0 ]; then
	mapfile -t dirs < <(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u)
fi

total=0
flaked=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$(date +%s)
for d in "${dirs[@]}"; do
	d=./${d#./}
	mapfile -t targets < <(for f in "$d"/*_test.go; do { grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" || true; } | sed 's/^func //'; done | sort -u)
	for t in "${targets[@]}"; do
		[ -n "$t" ] || continue
		echo "fuzz: $d $t ($fuzztime)"
		corpus="$d/testdata/fuzz/$t"
		before=$(ls "$corpus" 2>/dev/null | sort || true)
		if ! go test -run '^$' -fuzz "^${t}\$" -fuzztime "$fuzztime" "$d" >"$log" 2>&1; then
			after=$(ls "$corpus" 2>/dev/null | sort || true)
			# Go 1.26's fuzz coordinator can report its own -fuzztime
			# deadline as a failure ("context deadline exceeded") without
			# any failing input (go.dev/issue/75804, fixed in Go 1.27).
			# A real failure always writes a reproducer to the corpus dir.
			if [ "$before" = "$after" ] && grep -q 'context deadline exceeded' "$log" &&
				! grep -q 'Failing input written' "$log"; then
				echo "fuzz: $d $t: coordinator deadline race at the end of -fuzztime, no failing input (go.dev/issue/75804); counted as passed"
				flaked=$((flaked + 1))
			else
				cat "$log"
				echo "fuzz: $d $t FAILED (the failing input is under $corpus/)" >&2
				exit 1
			fi
		fi
		total=$((total + 1))
	done
done
echo "fuzz: $total targets, ${fuzztime} each, passed in $(( $(date +%s) - start ))s ($flaked hit the coordinator deadline race)"
