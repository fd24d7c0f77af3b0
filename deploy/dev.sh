#!/usr/bin/env bash
# meterline's developer entry point. Everything a fresh machine needs is installed here.
#   deploy/dev.sh demo   run the quick start on the embedded default (chDB + embedded broker)
#   deploy/dev.sh test   run the whole test suite against real Kafka and embedded ClickHouse
#                        (installs the venv, Apache Kafka from Maven Central and Debian's Chromium;
#                        slow tests build Alertmanager and promtool from their Go modules, cached)
#   deploy/dev.sh setup  only create .venv and install meterline with the embedded engine, the embedded
#                        broker and the test tools, at the versions of lock/dev.txt (hash-checked)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
lock="$root/lock/dev.txt"

setup() {
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv"
    fi
    # Re-installs only when pyproject.toml or the lock changed since the last successful install.
    local stamp="$venv/.meterline-installed"
    if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ] || [ "$lock" -nt "$stamp" ]; then
        # Exactly the locked versions, each checked against its hash (deploy/lock.sh refreshes the lock):
        # runtime + embedded (chDB) + embedded-broker + test + lock, and setuptools to build meterline.
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes -r "$lock"
        # meterline itself, editable, built with the locked setuptools; its dependencies are all in the lock.
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation \
            -e "$root"
        touch "$stamp"
    fi
}

cmd="${1:-}"
shift || true
case "$cmd" in
    setup) setup ;;
    test)
        setup
        "$root/deploy/kafka/kafka.sh" install
        "$root/deploy/web/install-chromium.sh"
        cd "$root"
        # pytest's exit code is ours: 5 (nothing collected) fails CI like any failure.
        exec "$venv/bin/python" -m pytest "$@"
        ;;
    demo)
        setup
        cd "$root"
        exec "$venv/bin/meterline" demo "$@"
        ;;
    *)
        echo "usage: deploy/dev.sh demo|test|setup [args...]" >&2
        exit 2
        ;;
esac
