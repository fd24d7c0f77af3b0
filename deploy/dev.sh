#!/usr/bin/env bash
# meterline's developer entry point. Everything a fresh machine needs is installed here.
#   deploy/dev.sh demo   run the quick start on the embedded default (chDB + embedded broker)
#   deploy/dev.sh test   run the whole test suite against real Kafka and embedded ClickHouse
#                        (installs the venv, Apache Kafka from Maven Central and Debian's Chromium;
#                        slow tests build Alertmanager and promtool from their Go modules, cached)
#   deploy/dev.sh setup  only create .venv and install meterline with its test extras
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"

setup() {
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv"
    fi
    # Re-installs only when pyproject.toml changed since the last successful install.
    local stamp="$venv/.meterline-installed"
    if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root[test,embedded-broker]"
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
