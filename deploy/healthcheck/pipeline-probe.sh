#!/bin/sh
# The pipeline container's probe, for act.sh. Exit status:
#   0  all four processes answer `pipeline admin status`
#   1  supervisord does not answer, or a process it reports RUNNING does not answer (hung):
#      a container restart helps
#   2  supervisor is (re)starting a process or gave up on one (FATAL, or EXITED with code 2:
#      the operator must fix the config): a container restart would only stop the healthy
#      processes too; ProcessDown pages instead
# Paths come from the image's environment (deploy/Dockerfile); SUPERVISOR_CONF may override.
set -u
conf=${SUPERVISOR_CONF:-/etc/supervisor/supervisord.conf}
ctl=$(dirname "$PIPELINE_BIN")/supervisorctl

states=$("$ctl" -c "$conf" status 'pipeline:*' 2>&1)
echo "$states"
if ! echo "$states" | grep -q '^pipeline:'; then
    exit 1
fi
if echo "$states" | grep '^pipeline:' | grep -qv ' RUNNING '; then
    exit 2
fi
"$PIPELINE_BIN" admin --config "$PIPELINE_CONFIG" --data-dir "$PIPELINE_DATA_DIR" status \
    || exit 1
