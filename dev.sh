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

cmd=${1:-}
[[ $# -gt 0 ]] && shift
case "$cmd" in
    run)
        setup
        exec "$VENV/bin/pipeline" run "$@"
        ;;
    test)
        setup
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
