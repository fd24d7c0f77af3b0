#!/usr/bin/env bash
# Mutation testing of the core modules with cosmic-ray (tests/mutation/run.py; not part of deploy/dev.sh test).
#   deploy/mutation.sh                       every module of tests/mutation/modules.toml, one after another
#   deploy/mutation.sh dedup rollup --jobs 2 some modules, two side by side
#   deploy/mutation.sh rollup --again        re-test only the last run's survivors (after adding tests)
# Needs `deploy/dev.sh setup`. Results in .mutation/ (summary.md; <module>/survivors.md).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[[ -x "$root/.venv/bin/cosmic-ray" ]] || { echo "mutation.sh: no cosmic-ray in .venv (run deploy/dev.sh setup)" >&2; exit 1; }
cd "$root"
exec "$root/.venv/bin/python" "$root/tests/mutation/run.py" "$@"
