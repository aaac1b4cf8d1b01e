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

# The ops tests run the real prometheus, promtool and amtool (issue 7), and the ledger's
# schema tests a throwaway PostgreSQL server (issue 16; its binaries live off PATH, in
# /usr/lib/postgresql/<version>/bin): install Debian's packages when they are missing. Fast
# when present; as root only, never interactive.
system_tools() {
    local packages=() bin pg_found=""
    command -v promtool >/dev/null && command -v amtool >/dev/null \
        && command -v prometheus >/dev/null || packages+=(prometheus prometheus-alertmanager)
    for bin in /usr/lib/postgresql/*/bin; do
        [[ -x $bin/initdb && -x $bin/pg_ctl && -x $bin/postgres ]] && pg_found=$bin
    done
    [[ -n $pg_found ]] || packages+=(postgresql)
    [[ ${#packages[@]} -eq 0 ]] && return 0
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
        echo "dev.sh: missing Debian packages: ${packages[*]}: install them (the ops tests" \
             "skip without prometheus; the ledger schema tests fail without postgresql)" >&2
        return 0
    fi
    echo "dev.sh: installing ${packages[*]} (apt)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
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
