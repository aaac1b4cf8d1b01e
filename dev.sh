#!/usr/bin/env bash
# One entry point for a fresh machine: `./dev.sh run` trades on the embedded default,
# `./dev.sh test` runs ruff, mypy --strict and pytest. Both create and update .venv first.
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv
STAMP=$VENV/.installed

setup() {
    if [[ ! -x $VENV/bin/python || constraints.txt -nt $STAMP || pyproject.toml -nt $STAMP ]]; then
        echo "dev.sh: installing into $VENV (pins from constraints.txt)" >&2
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet --upgrade pip
        "$VENV/bin/pip" install --quiet -c constraints.txt -e '.[dev]'
        touch "$STAMP"
    fi
}

# The ops tests run the real prometheus, promtool and amtool (issue 7): install Debian's
# packages when they are missing. Fast when present; as root only, never interactive.
system_tools() {
    command -v promtool >/dev/null && command -v amtool >/dev/null \
        && command -v prometheus >/dev/null && return 0
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
        echo "dev.sh: prometheus/promtool/amtool missing: install Debian's prometheus and" \
             "prometheus-alertmanager packages (the ops tests skip without them)" >&2
        return 0
    fi
    echo "dev.sh: installing prometheus and prometheus-alertmanager (apt)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager >/dev/null
}

cmd=${1:-}
[[ $# -gt 0 ]] && shift
case "$cmd" in
    run)
        setup
        exec "$VENV/bin/pipeline" run "$@"
        ;;
    test)
        setup
        system_tools
        echo "== ruff" && "$VENV/bin/ruff" check pipeline tests tools
        echo "== mypy --strict" && "$VENV/bin/mypy" --strict pipeline
        echo "== pytest"
        set +e
        "$VENV/bin/pytest" "$@"
        code=$?
        set -e
        if [[ $code -eq 5 ]]; then
            echo "dev.sh: pytest collected no tests: failing" >&2
        fi
        exit $code
        ;;
    *)
        echo "usage: ./dev.sh run [pipeline run options] | ./dev.sh test [pytest options]" >&2
        exit 2
        ;;
esac
