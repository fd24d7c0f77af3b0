#!/usr/bin/env bash
# Builds Prometheus' `promtool` from its Go module (through the Go module proxy) into a cache folder and
# prints its path. Used by tests/unit/test_deploy.py to run `promtool check config` / `check rules` on
# deploy/prometheus/. Idempotent: a binary already built for the pinned version is reused.
# Needs only `go` (>= the module's go line, 1.26.7 for v0.316.0) and the module proxy.
#
#   deploy/prometheus/build-promtool.sh   -> prints e.g. ~/.cache/meterline/bin/promtool-v0.316.0-dns
#   PROMTOOL_VERSION=v0.315.1 deploy/prometheus/build-promtool.sh
#
# Prometheus' Go module versions are v0.<major><minor>.<patch>: v0.316.0 is Prometheus 3.16.0, the same
# release as the prom/prometheus image pinned in docker-compose.yml.
set -euo pipefail

version="${PROMTOOL_VERSION:-v0.316.0}"
# Service discovery plugins are opt-out build tags (plugins/plugin_*.go). Our config uses only static and
# DNS discovery, so every other SD (the AWS, Azure, GCE, ... SDKs: most of the build time) is left out.
# A config using an SD that is not built in fails the check ("field ..._sd_configs not found"): add its
# enable_<name>_sd tag here, which also changes the binary's name so a stale build is not reused.
tags="remove_all_sd,enable_dns_sd"
cache_dir="${METERLINE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/meterline}"
bin_dir="$cache_dir/bin"
target="$bin_dir/promtool-$version-dns"

if [[ -x "$target" ]]; then
  echo "$target"
  exit 0
fi
command -v go >/dev/null || { echo "build-promtool.sh: the go command is not installed" >&2; exit 1; }
mkdir -p "$bin_dir"

# One build at a time (parallel test processes may all ask); the loser finds the binary afterwards.
exec 9>"$bin_dir/.promtool.lock"
flock 9
if [[ -x "$target" ]]; then
  echo "$target"
  exit 0
fi

staging="$(mktemp -d "$bin_dir/.build-promtool-XXXXXX")"
trap 'rm -rf "$staging"' EXIT
started=$SECONDS
# `go install module/pkg@version` builds outside any go.mod with exactly the dependency versions the
# module's own go.mod pins (it has no replace/exclude directives, which would forbid this form). -mod
# flags do not apply to it, so GOFLAGS is cleared of them. CGO off: a static binary; -trimpath and no
# debug info (-s -w): a smaller link; -X: `promtool --version` names the module version it was built from.
GOFLAGS="" CGO_ENABLED=0 GOBIN="$staging" \
  go install -trimpath -tags "$tags" \
  -ldflags "-s -w -X github.com/prometheus/common/version.Version=${version}" \
  "github.com/prometheus/prometheus/cmd/promtool@$version" >&2
mv "$staging/promtool" "$target"   # atomic: a half-built binary is never found at $target
echo "build-promtool.sh: built promtool $version (tags $tags) in $((SECONDS - started))s" >&2
echo "$target"
