#!/bin/sh
# PyMongo's own sync test suite, plain and green, against nx-27017 in a loopback-only
# network namespace; writes compat/RESULTS.md. Options: see `compat/run.sh --help`.
set -eu
cd "$(dirname "$0")/.."
exec nice -n "${COMPAT_NICE:-0}" "${MOTORPATCH_VENV:-.venv}/bin/python" -m compat "$@"
