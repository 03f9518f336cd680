#!/bin/sh
# replay.sh HARNESS TRACE JOBS: the harness's replay of TRACE (HARNESS TRACE)
# split into JOBS shares run at once (HARNESS TRACE I/JOBS), one core each:
# the replay runs the emulator on one thread, and under ThreadSanitizer it
# is the longest step of make test-sanitize. The shares' outputs follow in
# order once each ends; the exit status is 1 when any share failed.
set -u
harness=$1 trace=$2 jobs=$3
dir=$(mktemp -d) || exit 1
trap 'rm -rf "$dir"' EXIT
pids=
i=0
while [ "$i" -lt "$jobs" ]; do
	"$harness" "$trace" "$i/$jobs" >"$dir/$i" 2>&1 &
	pids="$pids $!"
	i=$((i + 1))
done
rc=0
i=0
for pid in $pids; do
	wait "$pid" || rc=1
	cat "$dir/$i"
	i=$((i + 1))
done
exit $rc
