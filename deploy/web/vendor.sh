#!/usr/bin/env bash
# Vendors the usage page's charting library from the npm registry into pipeline/usage/web/vendor/ (no CDN, no
# build step: the page loads the UMD file as a plain <script>).
#
#   deploy/web/vendor.sh            re-vendor the pinned version and check it against deploy/web/vendor.sha256
#   deploy/web/vendor.sh --record   after changing VERSION: vendor it and record the new hashes
#
# tests/unit/test_vendored_assets.py checks the committed files against vendor.sha256, so an accidental edit
# of a vendored file (or a re-vendor that silently changed it) fails the suite.
set -euo pipefail

PACKAGE="chart.js"
VERSION="4.6.1"
# file inside the npm tarball -> name in pipeline/usage/web/vendor/
FILES=("package/dist/chart.umd.js:chart.umd.js" "package/LICENSE.md:chart.js.LICENSE.md")

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
vendor="$root/pipeline/usage/web/vendor"
manifest="$root/deploy/web/vendor.sha256"
record=false
[ "${1:-}" = "--record" ] && record=true

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# npm pack checks the tarball against the registry's integrity hash before writing it.
(cd "$work" && npm pack --silent "$PACKAGE@$VERSION" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work"
mkdir -p "$vendor"
for pair in "${FILES[@]}"; do
    cp "$work/${pair%%:*}" "$vendor/${pair##*:}"
done

if $record; then
    {
        echo "# $PACKAGE@$VERSION, vendored by deploy/web/vendor.sh; paths relative to pipeline/usage/web/vendor/"
        (cd "$vendor" && for pair in "${FILES[@]}"; do sha256sum "${pair##*:}"; done)
    } > "$manifest"
    echo "recorded $PACKAGE@$VERSION in ${manifest#"$root"/}"
else
    (cd "$vendor" && grep -v '^#' "$manifest" | sha256sum --check --strict)
    echo "vendored $PACKAGE@$VERSION into ${vendor#"$root"/}"
fi
