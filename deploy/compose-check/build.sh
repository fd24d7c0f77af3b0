#!/usr/bin/env bash
# Builds compose-check (main.go here: Docker Compose's own loader, the compose-go Go module, behind a small
# main of ours) into a cache folder and prints its path. Used by tests/unit/test_deploy.py to load
# docker-compose.yml exactly as `docker compose` would, without a Docker engine. Idempotent: a binary built
# from the same main.go, go.mod and go.sum is reused. Needs only `go` (>= 1.24) and the Go module proxy;
# go.sum pins every module's checksum, so the build fetches exactly what was reviewed.
#
#   deploy/compose-check/build.sh   -> prints e.g. ~/.cache/meterline/bin/compose-check-v2.16.2-3f2a9c01d4e5
#
# To move to another compose-go release: `go get github.com/compose-spec/compose-go/v2@vX.Y.Z && go mod tidy`
# in this folder, then commit go.mod and go.sum (the binary's name changes with them).
set -euo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_dir="${METERLINE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/meterline}"
bin_dir="$cache_dir/bin"
version="$(sed -n 's|^require github.com/compose-spec/compose-go/v2 \(v[^ ]*\).*|\1|p' "$src/go.mod")"
digest="$(cat "$src/main.go" "$src/go.mod" "$src/go.sum" | sha256sum | cut -c1-12)"
target="$bin_dir/compose-check-${version:-unknown}-$digest"

if [[ -x "$target" ]]; then
  echo "$target"
  exit 0
fi
PATH="$PATH:/usr/local/go/bin"   # where the Go toolchain lives on machines that do not put it on PATH
command -v go >/dev/null || { echo "build.sh: the go command is not installed" >&2; exit 1; }
mkdir -p "$bin_dir"

# One build at a time (parallel test processes may all ask); the loser finds the binary afterwards.
exec 9>"$bin_dir/.compose-check.lock"
flock 9
if [[ -x "$target" ]]; then
  echo "$target"
  exit 0
fi

staging="$(mktemp -d "$bin_dir/.build-compose-check-XXXXXX")"
trap 'rm -rf "$staging"' EXIT
started=$SECONDS
# -mod=readonly: go.mod and go.sum are used as committed (a mismatch fails instead of being "fixed").
# CGO off: a static binary; -trimpath and no debug info (-s -w): a smaller link.
(cd "$src" && GOFLAGS="-mod=readonly" CGO_ENABLED=0 \
  go build -trimpath -ldflags "-s -w" -o "$staging/compose-check" .) >&2
mv "$staging/compose-check" "$target"   # atomic: a half-built binary is never found at $target
echo "build.sh: built compose-check (compose-go $version) in $((SECONDS - started))s" >&2
echo "$target"
