"""What each channel receives, field by field, and the links built from settings."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from pipeline.alerts.model import RESOLVED, AlertKey
from pipeline.alerts.notice import LinkSettings, build_notice
from pipeline.alerts.payloads import alertmanager_alerts, pagerduty_event, slack_message, webhook_body
from pipeline.alerts.state import AlertRecord

OPENED = datetime(2026, 11, 25, 12, 15, tzinfo=UTC)
NOW = OPENED + timedelta(minutes=10)
LINKS = LinkSettings("https://grafana.example", "{grafana_url}/d/meterline-key-usage?var-key={api_key_id}",
                     "https://runbooks.example/usage-spike")
RECORD = AlertRecord(
    key=AlertKey("key/1 a", "gpt-4o", "cost"), status="firing", severity="warning", rule="baseline",
    reason="4.0x its normal", opened_at=OPENED, resolved_at=None, updated_at=NOW, value=12.5, threshold=9.0,
    baseline=3.125, peak=14.0, below_runs=0)
DASHBOARD = "https://grafana.example/d/meterline-key-usage?var-key=key%2F1%20a"


def test_alertmanager_alert_has_identity_labels_links_and_a_validity_window():
    notice = build_notice(RECORD, LINKS, NOW, firing_validity_s=300)
    [alert] = alertmanager_alerts([notice])
    assert alert == {
        "labels": {"alertname": "MeterlineUsageSpike", "api_key_id": "key/1 a", "model": "gpt-4o",
                   "metric": "cost", "severity": "warning"},
        "annotations": {
            "summary": "Usage spike: key key/1 a on gpt-4o, cost $12.50/h in the last hour",
            "description": "key key/1 a on gpt-4o: cost $12.50/h in the last 60 minutes, threshold $9.00/h, "
                           "normal $3.12/h; 4.0x its normal. Peak $14.00/h.",
            "runbook_url": "https://runbooks.example/usage-spike",
            "dashboard_url": DASHBOARD,
        },
        "startsAt": "2026-11-25T12:15:00.000Z",
        "endsAt": "2026-11-25T12:30:00.000Z",
        "generatorURL": DASHBOARD,
    }


def test_a_resolved_alert_ends_when_it_resolved():
    resolved = replace(RECORD, status=RESOLVED, resolved_at=NOW, below_runs=2)
    [alert] = alertmanager_alerts([build_notice(resolved, LINKS, NOW + timedelta(minutes=5), 300)])
    assert alert["endsAt"] == "2026-11-25T12:25:00.000Z"
    assert alert["annotations"]["summary"] == "Resolved: key key/1 a on gpt-4o, cost back to normal (peak $14.00/h)"


def test_no_grafana_no_runbook_means_no_empty_links():
    notice = build_notice(RECORD, LinkSettings("", LINKS.dashboard_url_template, ""), NOW, 300)
    [alert] = alertmanager_alerts([notice])
    assert set(alert["annotations"]) == {"summary", "description"} and alert["generatorURL"] == ""
    assert "links" not in pagerduty_event(notice, "rk")


def test_pagerduty_trigger_and_resolve_share_the_dedup_key():
    notice = build_notice(RECORD, LINKS, NOW, 300)
    trigger = pagerduty_event(notice, "routing-123")
    assert trigger == {
        "routing_key": "routing-123", "event_action": "trigger",
        "dedup_key": f"meterline/key/1 a/gpt-4o/cost/{int(OPENED.timestamp())}",
        "payload": {"summary": notice.summary, "source": "meterline", "severity": "warning",
                    "timestamp": "2026-11-25T12:15:00.000Z",
                    "custom_details": {**notice.details, "description": notice.description}},
        "links": [{"href": DASHBOARD, "text": "Dashboard"}, {"href": LINKS.runbook_url, "text": "Runbook"}],
    }
    assert notice.details == {"api_key_id": "key/1 a", "model": "gpt-4o", "metric": "cost", "unit": "USD/h",
                              "value": 12.5, "peak": 14.0, "threshold": 9.0, "baseline": 3.125,
                              "rule": "baseline", "reason": "4.0x its normal"}
    resolved = build_notice(replace(RECORD, status=RESOLVED, resolved_at=NOW), LINKS, NOW, 300)
    assert pagerduty_event(resolved, "routing-123") == {
        "routing_key": "routing-123", "event_action": "resolve", "dedup_key": trigger["dedup_key"]}


def test_pagerduty_severity_is_one_it_accepts():
    notice = build_notice(replace(RECORD, severity="page-me"), LINKS, NOW, 300)
    assert pagerduty_event(notice, "rk")["payload"]["severity"] == "warning"


def test_slack_message_has_fallback_text_and_blocks_with_escaped_text():
    record = replace(RECORD, key=AlertKey("<key&1>", "*", "tokens"), value=1_234_567, threshold=900_000,
                     baseline=300_000, peak=1_234_567)
    message = slack_message(build_notice(record, LINKS, NOW, 300))
    assert message["text"] == "[FIRING] Usage spike: key <key&1>, tokens 1,234,567 tokens/h in the last hour"
    header, text, fields, context = message["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "emoji": True,
                                                 "text": ":rotating_light: " + message["text"][9:]}}
    assert text["type"] == "section" and text["text"]["text"].startswith("key &lt;key&amp;1&gt;: tokens")
    assert [f["text"] for f in fields["fields"]] == [
        "*Key*\n`&lt;key&amp;1&gt;`", "*Model*\n`*`", "*Metric*\ntokens", "*Severity*\nwarning",
        "*Last hour*\n1,234,567 tokens/h", "*Threshold*\n900,000 tokens/h"]
    assert context == {"type": "context", "elements": [{"type": "mrkdwn", "text":
                       "<https://grafana.example/d/meterline-key-usage?var-key=%3Ckey%261%3E|Dashboard> · "
                       "<https://runbooks.example/usage-spike|Runbook>"}]}


def test_webhook_body_carries_every_due_alert_with_its_numbers():
    firing = build_notice(RECORD, LINKS, NOW, 300)
    resolved = build_notice(replace(RECORD, key=AlertKey("k2", "*", "requests"), status=RESOLVED,
                                    resolved_at=NOW), LINKS, NOW, 300)
    body = webhook_body([firing, resolved])
    assert body["version"] == "1" and body["source"] == "meterline"
    assert [a["status"] for a in body["alerts"]] == ["firing", "resolved"]
    assert body["alerts"][0] == {"status": "firing", "labels": firing.labels,
                                 "annotations": alertmanager_alerts([firing])[0]["annotations"],
                                 "startsAt": "2026-11-25T12:15:00.000Z", "endsAt": None,
                                 "dedupKey": firing.dedup_key, "details": firing.details}
    assert body["alerts"][1]["endsAt"] == "2026-11-25T12:25:00.000Z"
