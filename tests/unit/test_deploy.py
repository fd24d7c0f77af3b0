"""The production stack as files: docker-compose.yml, deploy/Dockerfile, the ClickHouse users, Grafana's
provisioning and dashboards, Prometheus' config and rules, Alertmanager's config.

No Docker engine runs here, so the compose file is checked by reading it: every file it mounts exists, every
meterline service runs a real subcommand with settings meterline reads, host ports do not clash, health-gated
dependencies have health checks. Prometheus files go through the real `promtool` (built from its Go module by
deploy/prometheus/build-promtool.sh; slow on a fresh machine), Alertmanager's through the real alertmanager
(deploy/alertmanager/build.sh).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import yaml

from pipeline import cli, dashboards
from pipeline.brokers import free_port
from pipeline.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]


def is_meterline(service: dict) -> bool:
    return service.get("image") == "meterline:local" or "build" in service


METERLINE_SERVICES = {name: s for name, s in SERVICES.items() if is_meterline(s)}


# --- docker-compose.yml -------------------------------------------------------------------------------------

def test_the_stack_has_its_services():
    assert {"kafka", "clickhouse", "migrate", "worker", "api", "alerts", "collector", "prometheus", "alertmanager",
            "grafana"} <= set(SERVICES)
    assert SERVICES["worker"]["deploy"]["replicas"] == 2
    assert SERVICES["migrate"]["restart"] == "no"


def test_every_third_party_image_is_pinned():
    for name, service in SERVICES.items():
        if is_meterline(service):
            assert service["build"] == {"context": ".", "dockerfile": "deploy/Dockerfile"}, name
            continue
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest" and re.search(r"\d", tag), f"{name}: pin {image}"


def bind_mounts(service: dict) -> Iterator[tuple[str, str]]:
    for volume in service.get("volumes", []):
        source, target = (volume["source"], volume["target"]) if isinstance(volume, dict) else volume.split(":")[:2]
        if source.startswith((".", "/")):
            yield source, target


def test_compose_references_only_files_that_exist():
    for name, service in SERVICES.items():
        if "build" in service:
            context = ROOT / service["build"]["context"]
            assert (context / service["build"]["dockerfile"]).is_file(), name
        for source, _ in bind_mounts(service):
            assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"


def test_named_volumes_are_declared():
    declared = set(COMPOSE.get("volumes") or {})
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} is not declared"


def subcommands(parser) -> dict:
    action, = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return action.choices


def test_every_meterline_service_runs_a_real_subcommand():
    parser = cli.build_parser()
    for name, service in METERLINE_SERVICES.items():
        command = service["command"]
        assert isinstance(command, list), f"{name}: write the command as a list"
        choices = subcommands(parser)
        assert command[0] in choices, f"{name}: `meterline {command[0]}` is not a subcommand (registered: " \
                                      f"{', '.join(choices)})"
        try:
            args = parser.parse_args(command)
        except SystemExit:
            pytest.fail(f"{name}: `meterline {' '.join(command)}` does not parse")
        assert callable(args.handler), name


class RecordingEnv(Mapping):
    """An environment that remembers which variables load_settings() asked for."""

    def __init__(self, values: dict[str, str]) -> None:
        self._values, self.asked = values, set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        return self._values[name]

    def get(self, name, default=None):
        self.asked.add(name)
        return self._values.get(name, default)

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def interpolated(value: str) -> str:
    """A compose value with ${VAR:?message} / ${VAR:-default} replaced by a placeholder."""
    return re.sub(r"\$\{(\w+)(?::?[-?][^}]*)?\}", lambda m: f"x{m.group(1).lower()}", str(value))


def test_meterline_services_set_only_settings_meterline_reads():
    for name, service in METERLINE_SERVICES.items():
        environment = {key: interpolated(value) for key, value in service["environment"].items()}
        env = RecordingEnv(environment)
        settings = load_settings(env)  # also proves every value parses (ports, durations, URLs)
        unread = set(environment) - env.asked
        assert not unread, f"{name}: pipeline/config.py never reads {sorted(unread)}"
        assert settings.web.host == "0.0.0.0", f"{name}: listen on all interfaces inside the container"
        assert settings.clickhouse.url.startswith("http://meterline:") and settings.clickhouse.url.endswith(
            "@clickhouse:8123/meterline"), name


def published_ports(service: dict) -> Iterator[int]:
    for port in service.get("ports", []):
        if isinstance(port, dict):
            yield int(port["published"])
        else:
            parts = str(port).split(":")
            assert len(parts) >= 2, f"publish with an explicit host port: {port}"
            yield int(parts[-2])


def test_host_ports_do_not_clash():
    ports = Counter(p for service in SERVICES.values() for p in published_ports(service))
    assert ports and not [p for p, n in ports.items() if n > 1]
    for name, service in SERVICES.items():
        replicas = service.get("deploy", {}).get("replicas", 1)
        assert replicas == 1 or not service.get("ports"), f"{name}: {replicas} replicas cannot share a host port"


def test_dependency_conditions_can_be_met():
    for name, service in SERVICES.items():
        for target, spec in (service.get("depends_on") or {}).items():
            assert target in SERVICES, f"{name} depends on unknown {target}"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in SERVICES[target], f"{name} waits for {target} to be healthy: it has no check"
            elif condition == "service_completed_successfully":
                assert SERVICES[target].get("restart") == "no", f"{target} must run once"
            else:
                assert condition == "service_started", condition


def test_long_running_meterline_services_wait_for_the_schema():
    for name in ("worker", "api", "alerts"):
        assert SERVICES[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}


def test_passwords_reach_clickhouse_and_grafana_from_the_environment():
    users = ElementTree.parse(ROOT / "deploy/clickhouse/users.d/meterline.xml").getroot()
    clickhouse_env = SERVICES["clickhouse"]["environment"]
    for user in ("meterline", "grafana"):
        password = users.find(f"users/{user}/password")
        assert password is not None and not (password.text or "").strip(), f"{user}: no password in the file"
        assert password.get("from_env") in clickhouse_env
    assert "GRAFANA_CLICKHOUSE_PASSWORD" in SERVICES["grafana"]["environment"]


def test_the_grafana_user_can_only_read():
    users = ElementTree.parse(ROOT / "deploy/clickhouse/users.d/meterline.xml").getroot()
    profile = users.find("users/grafana/profile").text
    assert users.find(f"profiles/{profile}/readonly").text in ("1", "2")
    assert [q.text for q in users.findall("users/grafana/grants/query")] == ["GRANT SELECT ON meterline.*"]


# --- deploy/Dockerfile --------------------------------------------------------------------------------------

def test_the_image_installs_the_package_and_runs_unprivileged():
    dockerfile = (ROOT / "deploy/Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.M)
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.M)
    assert 'ENTRYPOINT ["meterline"]' in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    for source in re.findall(r"^COPY (\S+) ", dockerfile, re.M):
        assert (ROOT / source).exists(), source
        assert source not in ignored, f".dockerignore drops {source}, which the image copies"


# --- Grafana ------------------------------------------------------------------------------------------------

def test_committed_dashboards_are_the_generators_output():
    for name, build in dashboards.DASHBOARDS.items():
        path = dashboards.DASHBOARD_DIR / name
        assert path.read_text() == dashboards.render(build), f"{name} is stale: run python -m pipeline.dashboards"
    assert dashboards.main(["--check"]) == 0


def test_provisioned_data_sources_are_the_ones_the_dashboards_use():
    provisioning = ROOT / "deploy/grafana/provisioning"
    sources = yaml.safe_load((provisioning / "datasources/clickhouse.yaml").read_text())["datasources"]
    by_uid = {s["uid"]: s for s in sources}
    assert by_uid[dashboards.CLICKHOUSE["uid"]]["type"] == dashboards.CLICKHOUSE["type"]
    assert by_uid[dashboards.PROMETHEUS["uid"]]["type"] == "prometheus"
    clickhouse = by_uid[dashboards.CLICKHOUSE["uid"]]["jsonData"]
    assert (clickhouse["protocol"], clickhouse["host"], clickhouse["port"], clickhouse["username"],
            clickhouse["defaultDatabase"]) == ("http", "clickhouse", 8123, "grafana", "meterline")
    used = {p["datasource"]["uid"] for build in dashboards.DASHBOARDS.values() for p in build()["panels"]
            if "datasource" in p}
    assert used <= set(by_uid)
    provider, = yaml.safe_load((provisioning / "dashboards/meterline.yaml").read_text())["providers"]
    mounts = dict(bind_mounts(SERVICES["grafana"]))
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    assert "grafana-clickhouse-datasource" in SERVICES["grafana"]["environment"]["GF_PLUGINS_PREINSTALL_SYNC"]


def test_dashboard_uids_and_panel_ids():
    for build in dashboards.DASHBOARDS.values():
        dashboard = build()
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids))
    assert dashboards.key_usage_dashboard()["uid"] == "meterline-key-usage"
    assert dashboards.pipeline_dashboard()["uid"] == "meterline-pipeline"


# --- Prometheus and Alertmanager ----------------------------------------------------------------------------

PROMETHEUS_DIR = ROOT / "deploy/prometheus"
BUILTIN_SERIES = {"up"}


def declared_metrics() -> set[str]:
    """Metric names declared as literals anywhere in the package (pipeline/metrics.py, pipeline/ingest, ...)."""
    names = set()
    for path in (ROOT / "pipeline").rglob("*.py"):
        names |= set(re.findall(r"""["'](meterline_[a-z0-9_]+)["']""", path.read_text()))
    return names | {f"{n}{suffix}" for n in names for suffix in ("_bucket", "_sum", "_count")}


def metrics_in(expression: str) -> set[str]:
    return set(re.findall(r"\b(meterline_[a-z0-9_]+|up)\b(?=\s*[{\[)\s]|$)", expression))


def prometheus_expressions() -> Iterator[tuple[str, str]]:
    for group in yaml.safe_load((PROMETHEUS_DIR / "rules/meterline.yml").read_text())["groups"]:
        for rule in group["rules"]:
            yield f"rule {rule['alert']}", rule["expr"]
    for panel in dashboards.pipeline_dashboard()["panels"]:
        for target in panel.get("targets", []):
            yield f"panel {panel['title']}", target["expr"]


def test_dashboards_and_rules_use_only_metrics_meterline_exports():
    known = declared_metrics() | BUILTIN_SERIES
    for where, expression in prometheus_expressions():
        used = metrics_in(expression)
        assert used, f"{where}: no metric found in {expression!r}"
        assert used <= known, f"{where}: unknown metrics {sorted(used - known)}"


def test_prometheus_scrapes_the_compose_services_on_their_ports():
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    worker, = jobs["meterline-worker"]["dns_sd_configs"]
    assert worker["names"] == ["worker"]
    assert worker["port"] == int(SERVICES["worker"]["environment"]["METERLINE_WEB_PORT"])
    collector, = jobs["meterline-collector"]["dns_sd_configs"]
    assert collector["names"] == ["collector"]
    assert collector["port"] == int(SERVICES["collector"]["environment"]["METERLINE_INGEST_PORT"])
    alerts_port = SERVICES["alerts"]["environment"]["METERLINE_ALERTS_METRICS_PORT"]
    assert jobs["meterline-alerts"]["static_configs"] == [{"targets": [f"alerts:{alerts_port}"]}]
    assert config["alerting"]["alertmanagers"] == [{"static_configs": [{"targets": ["alertmanager:9093"]}]}]
    mounts = dict(bind_mounts(SERVICES["prometheus"]))
    assert mounts["./deploy/prometheus/rules"] + "/*.yml" == config["rule_files"][0]


def test_alertmanager_routes_only_to_defined_receivers():
    config = yaml.safe_load((ROOT / "deploy/alertmanager/alertmanager.yml").read_text())
    receivers = {r["name"] for r in config["receivers"]}

    def walk(route):
        yield route
        for child in route.get("routes", []):
            yield from walk(child)
    assert all(route["receiver"] in receivers for route in walk(config["route"]) if "receiver" in route)


def build_tool(script: str) -> str:
    if shutil.which("go") is None:
        pytest.skip(f"{script} needs the go command, which is not installed here")
    done = subprocess.run(["bash", str(ROOT / script)], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, f"{script} failed:\n{done.stderr[-3000:]}"
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_promtool_accepts_the_config_and_rules_and_the_rule_tests_pass(tmp_path):
    promtool = build_tool("deploy/prometheus/build-promtool.sh")
    # The config names the rules by their path inside the container: check it with the rules laid out there.
    config = (PROMETHEUS_DIR / "prometheus.yml").read_text()
    config = config.replace("/etc/prometheus/rules/", f"{PROMETHEUS_DIR}/rules/")
    (tmp_path / "prometheus.yml").write_text(config)
    for command in (["check", "config", str(tmp_path / "prometheus.yml")],
                    ["check", "rules", str(PROMETHEUS_DIR / "rules/meterline.yml")],
                    ["test", "rules", str(PROMETHEUS_DIR / "meterline.rules.test.yml")]):
        done = subprocess.run([promtool, *command], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"promtool {' '.join(command)}:\n{done.stdout}\n{done.stderr}"
    assert "SUCCESS: 1 rule files found" in subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True).stdout


@pytest.mark.slow
def test_alertmanager_loads_its_config(tmp_path):
    """Alertmanager has no dry run: it exits at once on a bad config, and serves with a good one."""
    alertmanager = build_tool("deploy/alertmanager/build.sh")
    process = subprocess.Popen(
        [alertmanager, f"--config.file={ROOT / 'deploy/alertmanager/alertmanager.yml'}",
         f"--storage.path={tmp_path}", f"--web.listen-address=127.0.0.1:{free_port()}", "--cluster.listen-address="],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output = ""
        for line in process.stdout:
            output += line
            if "Listening on" in line:
                break
        assert process.poll() is None, f"alertmanager refused the config:\n{output}"
    finally:
        process.terminate()
        process.wait(timeout=20)


# --- meterline api ------------------------------------------------------------------------------------------

def http_get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.mark.clickhouse
def test_the_api_command_serves_health_and_the_usage_api_and_stops_on_sigterm(tmp_path):
    """`meterline api` as the compose service runs it, on its own embedded store (a subprocess: one chDB
    folder per process)."""
    port = free_port()
    env = {**os.environ, "METERLINE_CLICKHOUSE_URL": f"chdb://{tmp_path / 'store'}", "METERLINE_WEB_PORT": str(port),
           "METERLINE_API_ADMIN_TOKEN": "admin-token", "METERLINE_DATA_DIR": str(tmp_path)}
    meterline = [sys.executable, "-m", "pipeline.cli"]
    subprocess.run([*meterline, "migrate"], env=env, check=True, capture_output=True, timeout=120)
    server = subprocess.Popen([*meterline, "api"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, body = http_get(f"{base}/healthz")
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None and time.monotonic() < deadline, server.stdout.read().decode()
                time.sleep(0.2)
        assert (status, body) == (200, b'{"status": "ok"}')
        assert http_get(f"{base}/api/v1/summary?scope=key&id=k&from=2026-11-01&to=2026-11-02")[0] == 401
        status, body = http_get(f"{base}/api/v1/summary?scope=key&id=k&from=2026-11-01&to=2026-11-02", "admin-token")
        assert status == 200 and b'"unknown"' in body
        assert http_get(f"{base}/api/v1/openapi.json")[0] == 200
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=30)
    assert code == 0
