"""The exact JSON each channel receives (pure functions; channels.py sends them)."""

from __future__ import annotations

from pipeline.alerts.model import SEVERITIES
from pipeline.alerts.notice import Notice, timestamp

SOURCE = "meterline"
_SLACK_HEADER_MAX = 150  # Slack rejects longer header texts
_PAGERDUTY_SUMMARY_MAX = 1024


def annotations(notice: Notice) -> dict[str, str]:
    notes = {"summary": notice.summary, "description": notice.description}
    if notice.runbook_url:
        notes["runbook_url"] = notice.runbook_url
    if notice.dashboard_url:
        notes["dashboard_url"] = notice.dashboard_url
    return notes


def alertmanager_alerts(notices: list[Notice]) -> list[dict]:
    """Body of ``POST /api/v2/alerts``."""
    return [{
        "labels": notice.labels,
        "annotations": annotations(notice),
        "startsAt": timestamp(notice.starts_at),
        "endsAt": timestamp(notice.ends_at),
        "generatorURL": notice.dashboard_url,
    } for notice in notices]


def webhook_body(notices: list[Notice]) -> dict:
    """Generic JSON webhook: every notice due in this run, Alertmanager-like plus the numbers."""
    return {"version": "1", "source": SOURCE, "alerts": [{
        "status": notice.status,
        "labels": notice.labels,
        "annotations": annotations(notice),
        "startsAt": timestamp(notice.starts_at),
        "endsAt": timestamp(notice.ends_at) if not notice.firing else None,
        "dedupKey": notice.dedup_key,
        "details": notice.details,
    } for notice in notices]}


def slack_message(notice: Notice) -> dict:
    """Slack incoming webhook: ``text`` (notifications, fallback) and Block Kit ``blocks``."""
    icon = ":rotating_light:" if notice.firing else ":white_check_mark:"
    header = f"{icon} {notice.summary}"
    if len(header) > _SLACK_HEADER_MAX:
        header = header[:_SLACK_HEADER_MAX - 1] + "…"
    fields = [(name, _escape(value)) for name, value in notice.fields]
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _escape(notice.description)}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{name}*\n{value}"} for name, value in fields]},
    ]
    links = [f"<{url}|{name}>" for name, url in (("Dashboard", notice.dashboard_url),
                                                  ("Runbook", notice.runbook_url)) if url]
    if links:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(links)}]})
    return {"text": f"{'[FIRING]' if notice.firing else '[RESOLVED]'} {notice.summary}", "blocks": blocks}


def pagerduty_event(notice: Notice, routing_key: str) -> dict:
    """PagerDuty Events API v2: ``trigger`` while firing, ``resolve`` (by dedup_key) once resolved."""
    if not notice.firing:
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": notice.dedup_key}
    event = {
        "routing_key": routing_key, "event_action": "trigger", "dedup_key": notice.dedup_key,
        "payload": {
            "summary": notice.summary[:_PAGERDUTY_SUMMARY_MAX],
            "source": SOURCE,
            "severity": notice.severity if notice.severity in SEVERITIES else "warning",
            "timestamp": timestamp(notice.starts_at),
            "custom_details": {**notice.details, "description": notice.description},
        },
    }
    links = [{"href": url, "text": name} for name, url in (("Dashboard", notice.dashboard_url),
                                                             ("Runbook", notice.runbook_url)) if url]
    if links:
        event["links"] = links
    return event


def _escape(text: str) -> str:
    """Slack mrkdwn control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
