#!/bin/sh
# A container healthcheck that acts:  act.sh STATE_FILE LIMIT PROBE [ARG...]
#
# Docker and compose mark a container unhealthy but never restart it. This runs PROBE and,
# after LIMIT consecutive failures, sends SIGTERM to the container's main process (PID 1, or
# $HEALTHCHECK_TARGET_PID): it exits and the restart policy (unless-stopped) starts the
# container again. The count lives in STATE_FILE, so it survives between checks.
#
# PROBE's exit status: 0 healthy (the count starts again); 1 a failure a restart can fix
# (counted); anything else unhealthy but not worth a restart (reported, the count starts again).
set -u
state=$1
limit=$2
shift 2

"$@"
status=$?
if [ "$status" -eq 0 ]; then
    rm -f "$state"
    exit 0
fi
if [ "$status" -ne 1 ]; then
    rm -f "$state"
    echo "healthcheck: unhealthy (probe exit $status); a restart would not help" >&2
    exit 1
fi
failures=$(( $(cat "$state" 2>/dev/null || echo 0) + 1 ))
if [ "$failures" -lt "$limit" ]; then
    echo "$failures" > "$state"
    echo "healthcheck: failure $failures of $limit" >&2
    exit 1
fi
rm -f "$state"
target=${HEALTHCHECK_TARGET_PID:-1}
echo "healthcheck: $failures failures in a row: SIGTERM to pid $target" >&2
kill -TERM "$target"
exit 1
