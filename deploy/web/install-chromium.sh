#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium for the usage page's browser tests (tests marked `browser`).
# Idempotent: does nothing when /usr/bin/chromium exists. Runs `apt-get update` only when the package lists
# do not know `chromium` yet (a fresh machine), so a warm machine pays nothing.
# The tests drive it with Python Playwright's `executable_path`: Playwright's own browser download
# (`playwright install`) cannot work here, the machine reaches package registries only.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
else
    sudo=""
fi
export DEBIAN_FRONTEND=noninteractive
# apt-cache policy prints "Candidate: (none)" (or nothing) when the lists are missing or stale for it.
if ! apt-cache policy chromium 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    $sudo apt-get update -q
fi
$sudo apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
/usr/bin/chromium --version
