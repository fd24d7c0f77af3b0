"""The Grafana "API key usage" dashboard's ClickHouse queries, expanded the way the grafana-clickhouse-datasource
plugin expands them (tests/integration/test_grafana_panels.py says how, with the plugin's sources; bench/read.py
times the same expansions)."""

from __future__ import annotations

import json
import re
import urllib.parse
from datetime import datetime

from pipeline.devtools.dashboards import DASHBOARD_DIR

DASHBOARD = json.loads((DASHBOARD_DIR / "key-usage.json").read_text())
CLICKHOUSE_UID = "meterline-clickhouse"
ALL = "$__all"  # the value Grafana gives a variable whose "All" option is selected


def macro_arguments(sql: str, open_paren: int) -> tuple[list[str], int]:
    """The comma-separated arguments of the macro call whose '(' is at ``open_paren`` and the index after its
    ')', splitting only at depth 1 (the plugin's getMacroArgs)."""
    depth, start, args = 0, open_paren + 1, []
    for i in range(open_paren, len(sql)):
        if sql[i] == "(":
            depth += 1
        elif sql[i] == ")":
            depth -= 1
            if depth == 0:
                return args + [sql[start:i]], i + 1
        elif sql[i] == "," and depth == 1:
            args.append(sql[start:i])
            start = i + 1
    raise AssertionError(f"unbalanced macro call in {sql!r}")


def conditional_all(sql: str, variables: dict[str, str]) -> str:
    macro = "$__conditionalAll("
    while (at := sql.rfind(macro)) != -1:  # the plugin also works from the last call backwards
        args, end = macro_arguments(sql, at + len(macro) - 1)
        assert len(args) == 2, f"$__conditionalAll takes 2 arguments: {args}"
        name = re.search(r"(?<=\$\{)\w+(?=\})|(?<=\$)\w+", args[1].strip()).group(0)
        value = variables[name]
        sql = sql[:at] + ("1=1" if value in ("", ALL) else args[0]) + sql[end:]
    return sql


def percent_encode(value: str) -> str:
    return urllib.parse.quote(value, safe="")  # UTF-8; keeps A-Z a-z 0-9 -_.~, like encodeURIComponentStrict


def template_variables(sql: str, variables: dict[str, str]) -> str:
    sql = re.sub(r"\$\{(\w+):percentencode\}", lambda m: percent_encode(variables[m.group(1)]), sql)
    unsupported = re.findall(r"\$\{\w+[^}]*\}|\$(?!__)\w+", sql)
    assert not unsupported, f"write template variables as ${{name:percentencode}}, not {unsupported}"
    return sql


def backend_macros(sql: str, start: datetime, end: datetime, interval_s: int) -> str:
    from_s, to_s, n = int(start.timestamp()), int(end.timestamp()), max(interval_s, 1)
    sql = re.sub(r"\$__timeFilter\(([^)]*)\)",
                 lambda m: f"{m.group(1)} >= toDateTime({from_s}) AND {m.group(1)} <= toDateTime({to_s})", sql)
    sql = re.sub(r"\$__timeInterval\(([^)]*)\)",
                 lambda m: f"toStartOfInterval(toDateTime({m.group(1)}), INTERVAL {n} second)", sql)
    sql = re.sub(r"\$__fromTime\b", f"toDateTime({from_s})", sql)
    sql = re.sub(r"\$__toTime\b", f"toDateTime({to_s})", sql)
    return re.sub(r"\$__interval_s\b", str(n), sql)


def expand(sql: str, start: datetime, end: datetime, interval_s: int = 3600, **variables: str) -> str:
    sql = backend_macros(template_variables(conditional_all(sql, variables), variables), start, end, interval_s)
    assert "$" not in sql, f"unexpanded macro in {sql}"
    return sql


def clickhouse_panels() -> list[dict]:
    return [p for p in DASHBOARD["panels"] if p.get("datasource", {}).get("uid") == CLICKHOUSE_UID]


def panel_sql(title: str) -> str:
    panel, = [p for p in clickhouse_panels() if p["title"] == title]
    target, = panel["targets"]
    assert target["datasource"]["uid"] == CLICKHOUSE_UID and target["editorType"] == "sql"
    return target["rawSql"]


def variable_sql(name: str) -> str:
    variable, = [v for v in DASHBOARD["templating"]["list"] if v["name"] == name]
    assert variable["datasource"]["uid"] == CLICKHOUSE_UID
    return variable["query"]
