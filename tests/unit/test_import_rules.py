"""The architecture's import rules (pipeline/__init__.py), checked on the code itself:

- only the CLI (pipeline/cli.py, pipeline/commands/) imports ``agents`` (the Faust app);
- the write path (pipeline/metering) and the read path (pipeline/usage) do not import each other;
- production code never imports development tools (pipeline/devtools) or test tools.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEST_TOOLS = ("tests", "support", "pytest", "hypothesis", "schemathesis", "bench", "jsonschema")


def module_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def imports_of(source: str, module: str) -> set[str]:
    """Every module named by an import statement anywhere in ``source`` (functions included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing module's package
                base = module.split(".")[:-node.level]
                found.add(".".join([*base, node.module] if node.module else base))
            else:
                found.add(node.module or "")
            found.update(f"{node.module}.{alias.name}" for alias in node.names if node.module)
    return found


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def broken_rules(module: str, imported: set[str]) -> list[str]:
    cli = module == "pipeline.cli" or within(module, "pipeline.commands")
    production = (within(module, "pipeline") or within(module, "agents")) and not cli \
        and not within(module, "pipeline.devtools")
    problems = []
    for name in sorted(imported):
        if within(name, "agents") and not (cli or within(module, "agents")):
            problems.append(f"{module} imports {name}: only the CLI may import agents")
        if within(module, "pipeline.metering") and within(name, "pipeline.usage"):
            problems.append(f"{module} imports {name}: the write path must not import the read path")
        if within(module, "pipeline.usage") and within(name, "pipeline.metering"):
            problems.append(f"{module} imports {name}: the read path must not import the write path")
        if production and (within(name, "pipeline.devtools") or any(within(name, t) for t in TEST_TOOLS)):
            problems.append(f"{module} imports {name}: production code must not import dev or test tools")
    return problems


def test_the_code_keeps_the_import_rules():
    sources = [*ROOT.joinpath("pipeline").rglob("*.py"), *ROOT.joinpath("agents").rglob("*.py")]
    assert len(sources) > 40
    problems = [problem for path in sources
                for problem in broken_rules(module_of(path), imports_of(path.read_text(), module_of(path)))]
    assert problems == []


@pytest.mark.parametrize("module, source", [
    ("pipeline.usage.query", "from pipeline.metering.pricing import PriceBook"),
    ("pipeline.metering.sink", "def f():\n    import pipeline.usage.export\n"),
    ("pipeline.ingest.server", "from pipeline.devtools.brokers import free_port"),
    ("pipeline.alerts.runner", "from agents.app import build_worker"),
    ("agents.app", "from support.workload import generate"),
    ("pipeline.metering.rollup", "from ..usage import query"),
])
def test_each_rule_catches_its_break(module, source):
    assert broken_rules(module, imports_of(source, module))


def test_the_cli_may_start_the_worker_and_the_demo_may_use_dev_tools():
    assert broken_rules("pipeline.commands.core", {"agents.app"}) == []
    assert broken_rules("pipeline.commands.demo", {"pipeline.devtools.brokers"}) == []
