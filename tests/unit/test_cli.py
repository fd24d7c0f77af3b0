"""The CLI for people: money and tables as the usage page shows them, relative dates, credentials the demo
keeps in the data folder, and one clear line with an exit code (never a traceback) for bad files and
arguments. No store, no broker: everything here fails before either would be opened."""

from __future__ import annotations

import io
import os
from datetime import date
from pathlib import Path

import pytest

from pipeline.cli import main, package_version
from pipeline.commands.alerts import render_alerts
from pipeline.commands.demo import demo_settings, status_line
from pipeline.commands.format import table, usd
from pipeline.commands.local import kept_secret, native_stderr_captured, with_kept_credentials
from pipeline.commands.usage import copy_csv, render_usage, resolve_day
from pipeline.config import load_settings
from pipeline.devtools.gateway import SyntheticGateway
from pipeline.usage.tokens import verify

LONG_MODEL = "anthropic.claude-sonnet-4-5-20250929-v1:0-with-a-very-long-deployment-name"


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """A data folder of its own, and no meterline settings from the surrounding environment."""
    for name in list(os.environ):
        if name.startswith("METERLINE_"):
            monkeypatch.delenv(name)
    folder = tmp_path / "data"
    monkeypatch.setenv("METERLINE_DATA_DIR", str(folder))
    return folder


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.mark.parametrize(("amount", "shown"), [
    ("0", "$0.00"), ("0E-24", "$0.00"), ("12.345678901234567890123456", "$12.35"), ("424.08680662", "$424.09"),
    ("1234567.891", "$1,234,567.89"), ("0.005", "$0.005"), ("0.00125", "$0.0012"), ("0.00135", "$0.0014"),
    ("0.009999", "$0.01"), ("0.0000004", "< $0.000001"), ("0.000001", "$0.000001"), ("-12.345", "-$12.34"),
    ("-0.004", "-$0.004"), ("0.01", "$0.01"), ("2.5", "$2.50"),
])
def test_money_is_shown_as_the_usage_page_shows_it(amount, shown):
    # pipeline/web/js/format.js: cents from $0.01 up (half-even), two significant digits below, a floor.
    assert usd(amount) == shown


def test_tables_are_as_wide_as_their_widest_cell():
    lines = table(("model", "requests"), [[LONG_MODEL, "1"], ["gpt-4o", "12,345"]], right=(1,))
    assert lines[1].startswith(LONG_MODEL + "  ")
    assert {len(line) for line in lines} == {len(LONG_MODEL) + 2 + len("requests")}
    assert lines[2].endswith("  12,345")


@pytest.mark.parametrize(("text", "day"), [
    ("today", "2026-03-01"), ("yesterday", "2026-02-28"), ("tomorrow", "2026-03-02"), ("today-7", "2026-02-22"),
    ("today+1", "2026-03-02"), ("TODAY", "2026-03-01"), ("yesterday-1", "2026-02-27"), ("2026-01-01", "2026-01-01"),
    ("2026-01-01T10:00:00Z", "2026-01-01T10:00:00Z"), ("todayx", "todayx"), ("today-", "today-"),
])
def test_relative_days(text, day):
    assert resolve_day(text, "UTC", today=date(2026, 3, 1)) == day


def test_today_is_the_date_in_the_requested_zone():
    east, west = resolve_day("today", "Pacific/Kiritimati"), resolve_day("today", "Pacific/Pago_Pago")
    assert date.fromisoformat(east) - date.fromisoformat(west) in (date(2000, 1, 2) - date(2000, 1, 1),
                                                                   date(2000, 1, 3) - date(2000, 1, 1))
    assert resolve_day("today", "Not/AZone") == "today"  # left for parse_request to report the zone


def test_csv_copy_counts_records_not_lines():
    body = b'a,b\r\n1,"two\r\nlines"\r\n3,4\r\n'
    out = io.BytesIO()
    assert copy_csv(io.BytesIO(body), out) == 2
    assert out.getvalue() == body
    assert copy_csv(io.BytesIO(b"a,b\r\n"), io.BytesIO()) == 0


def usage_body(model: str) -> dict:
    totals = {"requests": 3, "error_requests": 0, "unpriced_requests": 0, "input_tokens": 1000, "output_tokens": 20,
              "total_tokens": 1020, "cache_read_tokens": 0, "cache_write_tokens": 0, "reasoning_tokens": 0,
              "input_cost": "0.0025", "output_cost": "0.0002", "total_cost": "424.08680662",
              "avg_tokens_per_request": "340", "output_input_ratio": "0.02"}
    request = {"scope": "key", "scope_id": "k", "start": "2026-03-01T00:00:00+00:00",
               "end": "2026-03-02T00:00:00+00:00", "tz": "UTC", "granularity": "day"}
    status = {"has_usage": True, "state": "usage", "message": ""}
    freshness = {"counted_through": "2026-03-02T10:15:30.250000+00:00", "lateness_bound_s": 604800}
    return {"summary": {"request": request, "status": status, "totals": totals, "freshness": freshness},
            "models": {"models": [{"model": model, "provider": "aws.bedrock", "request_share": "1",
                                   "totals": totals}]},
            "series": {"buckets": [{"start": "2026-03-01T00:00:00+00:00", "requests": 3, "error_requests": 0,
                                    "input_tokens": 1000, "output_tokens": 20, "total_tokens": 1020,
                                    "total_cost": "424.08680662"}]}}


def test_usage_tables_keep_whole_model_names_and_round_money():
    text = render_usage(usage_body(LONG_MODEL))
    assert LONG_MODEL in text and "aws.bedrock" in text
    assert "$424.09" in text and "424.0868" not in text
    assert "100.0%" in text and "$0.0025" in text
    assert "counted through 2026-03-02 10:15:30 UTC" in text and "up to 7 d late" in text


def test_usage_says_when_nothing_is_counted_yet():
    body = usage_body("gpt-4o")
    body["summary"]["freshness"] = {"counted_through": None, "lateness_bound_s": 3600}
    assert "nothing counted yet; events may arrive up to 1 h late" in render_usage(body)


def test_alert_list_keeps_whole_model_names():
    from datetime import UTC, datetime

    from pipeline.alerts.model import AlertKey
    from pipeline.alerts.state import AlertRecord

    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    records = [AlertRecord(AlertKey("key_with_a_rather_long_identifier_0001", LONG_MODEL, "cost"), "firing", "warning",
                           "baseline", "why", now, None, now, 24.6375, 20.0, 3.5, 24.6375, 0)]
    text = render_alerts(records)
    assert LONG_MODEL in text and "key_with_a_rather_long_identifier_0001" in text
    assert "$24.64" in text and "$3.50" in text and "$20.00" in text


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"meterline {package_version()}"
    assert package_version() != "unknown"


def test_export_to_a_missing_folder_or_a_directory_is_one_line_and_exit_2(data_dir, tmp_path, capsys):
    code, _, err = run(capsys, "export", "--key", "k", "--out", str(tmp_path / "nonexistent" / "x.csv"))
    assert code == 2
    assert err.strip() == f"meterline: --out {tmp_path / 'nonexistent' / 'x.csv'}: the folder " \
                          f"{tmp_path / 'nonexistent'} does not exist"
    code, _, err = run(capsys, "export", "--key", "k", "--out", str(tmp_path))
    assert code == 2 and "is a directory" in err
    assert not (data_dir / "clickhouse").exists()  # refused before the store was opened


def test_export_to_a_file_that_cannot_be_created_is_one_line(data_dir, tmp_path, capsys):
    (tmp_path / "plain-file").write_text("")
    code, _, err = run(capsys, "export", "--key", "k", "--out", str(tmp_path / "plain-file" / "x.csv"))
    assert code == 2 and err.strip().endswith("plain-file is not a folder")
    # A name the file system refuses passes the folder checks and fails at open(): still one line.
    from pipeline.commands import usage

    class Source:
        def export(self, request, out):
            raise AssertionError("must not be reached")

    with pytest.raises(usage.OutputError, match="cannot write it .File name too long"):
        usage._export_to_file(Source(), None, tmp_path / ("x" * 300))


def test_produce_from_a_missing_file(data_dir, tmp_path, capsys):
    code, _, err = run(capsys, "produce", str(tmp_path / "missing.jsonl"))
    assert code == 2
    assert err.strip() == f"meterline produce: cannot read {tmp_path / 'missing.jsonl'}: No such file or directory"


def test_produce_to_an_unreachable_kafka_is_one_line_and_exit_1(data_dir, tmp_path, capsys, monkeypatch):
    events = tmp_path / "events.jsonl"
    now_ms = int(__import__("time").time() * 1000)
    events.write_text(f'{{"request_id": "r1", "api_key_id": "k", "model": "gpt-4o", "timestamp": {now_ms}, '
                      '"input_tokens": 1, "output_tokens": 1}\n')
    monkeypatch.setenv("METERLINE_KAFKA_BROKERS", "127.0.0.1:1")
    code, _, err = run(capsys, "produce", str(events))
    assert code == 1 and err.startswith("meterline produce: Kafka at 127.0.0.1:1 refused the events: ")
    assert len(err.strip().splitlines()) == 1


def test_bad_dates_zone_and_clickhouse_url_are_exit_2(data_dir, capsys, monkeypatch):
    code, _, err = run(capsys, "usage", "--key", "k", "--from", "garbage")
    assert code == 2 and "bad 'from'" in err
    code, _, err = run(capsys, "usage", "--key", "k", "--tz", "Mars/Olympus")
    assert code == 2 and "unknown time zone" in err
    monkeypatch.setenv("METERLINE_CLICKHOUSE_URL", "postgres://nope")
    code, _, err = run(capsys, "usage", "--key", "k")
    assert code == 2 and "METERLINE_CLICKHOUSE_URL" in err


def test_demo_arguments_are_checked(capsys):
    for argv in (["demo", "--rate", "0"], ["demo", "--history-days", "-1"], ["demo", "--rate", "nan"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        assert "Traceback" not in capsys.readouterr().err


def test_token_uses_the_secret_the_demo_keeps(data_dir, capsys, monkeypatch):
    code, _, err = run(capsys, "token", "--key", "key_globex_chat")
    assert code == 2 and "METERLINE_API_TOKEN_SECRET" in err and "token-secret" in err
    secret = kept_secret(data_dir, "token-secret", create=True)
    assert (data_dir / "token-secret").stat().st_mode & 0o777 == 0o600
    code, out, err = run(capsys, "token", "--key", "key_globex_chat")
    assert code == 0 and verify([secret], out.strip()).api_key_id == "key_globex_chat"
    assert str(data_dir / "token-secret") in err
    environment_secret = "from-the-environment-" + "x" * 32
    monkeypatch.setenv("METERLINE_API_TOKEN_SECRET", environment_secret)  # the environment wins
    code, out, err = run(capsys, "token", "--key", "key_globex_chat")
    assert verify([environment_secret], out.strip()).api_key_id == "key_globex_chat"
    assert "token-secret" not in err
    code, _, err = run(capsys, "token", "--key", " ")
    assert code == 2 and "--key" in err


def test_kept_credentials_fill_only_what_the_environment_leaves_empty(data_dir):
    admin = kept_secret(data_dir, "admin-token", create=True)
    settings, _ = with_kept_credentials(load_settings({"METERLINE_DATA_DIR": str(data_dir)}))
    assert settings.api.admin_token == admin and settings.api.token_secret == ""
    settings, _ = with_kept_credentials(load_settings({"METERLINE_DATA_DIR": str(data_dir),
                                                       "METERLINE_API_ADMIN_TOKEN": "mine"}))
    assert settings.api.admin_token == "mine"


def test_native_stderr_is_captured(capfd):
    with native_stderr_captured() as captured:
        os.write(2, b"Code: 76. DB::Exception: Cannot lock file\n")
    assert captured == [b"Code: 76. DB::Exception: Cannot lock file\n"]
    assert capfd.readouterr().err == ""


def test_demo_settings_turn_idempotence_off_only_on_the_embedded_broker(data_dir):
    settings = load_settings({"METERLINE_DATA_DIR": str(data_dir)})
    data_dir.mkdir()
    tansu = demo_settings(settings, "127.0.0.1:1", embedded_broker=True)
    assert tansu.ingest.idempotence is False
    assert tansu.ingest.tokens == ((data_dir / "ingest-token").read_text().strip(),)
    assert tansu.kafka.session_timeout_s <= 6 and tansu.kafka.usage_topic.startswith("meterline.usage.v1.demo")
    kafka = demo_settings(settings, "127.0.0.1:1", embedded_broker=False)
    assert kafka.ingest.idempotence is True and kafka.kafka.usage_topic == "meterline.usage.v1"
    assert kafka.api.admin_token == tansu.api.admin_token == (data_dir / "admin-token").read_text().strip()


def test_status_line_shows_history_progress_then_live():
    class Metrics:
        events_counted = events_duplicate = events_rejected = consumer_lag = __import__(
            "prometheus_client").Counter("x", "x", registry=None)

    async def send(key, value):
        pass

    gateway = SyntheticGateway(send, 5.0)
    gateway.stats.history_hours, gateway.stats.history_hours_sent = 48, 12
    assert status_line(gateway, Metrics).startswith("history 12/48 h  sent")
    gateway.stats.history_done = True
    assert status_line(gateway, Metrics).startswith("live")
