"""Delivery channels: Alertmanager, generic JSON webhook, Slack incoming webhook, PagerDuty Events v2.

Every POST is retried with exponential backoff on network errors, timeouts, 429 and 5xx, a bounded number of
times; a channel also stops at the run's deadline. What was not delivered stays owed in the alert state and
is sent at the next run, so a failing receiver delays its own messages only: it never blocks detection or
the other channels, and never raises.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import aiohttp

from pipeline.alerts.notice import Notice
from pipeline.alerts.payloads import alertmanager_alerts, pagerduty_event, slack_message, webhook_body
from pipeline.config import AlertSettings
from pipeline.retry import Backoff, retry

log = logging.getLogger(__name__)
_BATCH = 500  # alerts per request to batch receivers


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    timeout_s: float = 10.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 5.0


class DeliveryError(Exception):
    """A POST the receiver did not accept; ``retryable`` for timeouts, connection errors, 429 and 5xx."""

    def __init__(self, problem: str, retryable: bool) -> None:
        super().__init__(problem)
        self.retryable = retryable


@dataclass
class Outcome:
    delivered: list[Notice] = field(default_factory=list)
    failures: int = 0  # requests that failed after all their attempts


class Poster:
    """POSTs JSON with retries; answers whether the receiver accepted it (2xx)."""

    def __init__(self, session: aiohttp.ClientSession, policy: RetryPolicy) -> None:
        self._session = session
        self._policy = policy

    async def post(self, channel: str, url: str, body: object, deadline: float) -> bool:
        policy = self._policy

        def failed(error: Exception, attempt: int, delay_s: float) -> None:
            log.warning("alert delivery to %s failed (attempt %d/%d): %s", channel, attempt, policy.attempts, error)

        backoff = Backoff(policy.backoff_initial_s, policy.backoff_max_s)
        try:
            await retry(lambda: self._attempt(url, body, deadline), backoff,
                        retryable=lambda error: isinstance(error, DeliveryError) and error.retryable,
                        attempts=policy.attempts, deadline=deadline, on_failure=failed)
        except DeliveryError as error:
            log.warning("alert delivery to %s failed for good: %s", channel, error)
            return False
        return True

    async def _attempt(self, url: str, body: object, deadline: float) -> None:
        """One POST; raises DeliveryError (saying whether a retry may help) unless the receiver took it."""
        timeout = max(0.1, min(self._policy.timeout_s, deadline - time.monotonic()))
        try:
            async with self._session.post(url, json=body, timeout=aiohttp.ClientTimeout(total=timeout)) as reply:
                if 200 <= reply.status < 300:
                    return
                text = (await reply.text(errors="replace"))[:300]
                raise DeliveryError(f"HTTP {reply.status}: {text}", reply.status == 429 or reply.status >= 500)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
            raise DeliveryError(f"{type(error).__name__}: {error}", retryable=True) from error


class Channel(ABC):
    name: str
    every_run = False  # re-send every open alert on every run (Alertmanager), not only when owed

    @abstractmethod
    async def deliver(self, poster: Poster, notices: list[Notice], deadline: float) -> Outcome: ...


class BatchChannel(Channel):
    """All due notices in one request (per 500): all of a request is delivered, or none of it."""

    def __init__(self, url: str) -> None:
        self.url = url

    @abstractmethod
    def body(self, notices: list[Notice]) -> object: ...

    async def deliver(self, poster: Poster, notices: list[Notice], deadline: float) -> Outcome:
        outcome = Outcome()
        for start in range(0, len(notices), _BATCH):
            chunk = notices[start:start + _BATCH]
            if time.monotonic() >= deadline:
                break
            if await poster.post(self.name, self.url, self.body(chunk), deadline):
                outcome.delivered.extend(chunk)
            else:
                outcome.failures += 1
        return outcome


class EachChannel(Channel):
    """One request per notice (receivers that take one event at a time)."""

    @abstractmethod
    def request(self, notice: Notice) -> tuple[str, object]: ...

    async def deliver(self, poster: Poster, notices: list[Notice], deadline: float) -> Outcome:
        outcome = Outcome()
        for notice in notices:
            if time.monotonic() >= deadline:
                break  # the rest stays owed: next run
            url, body = self.request(notice)
            if await poster.post(self.name, url, body, deadline):
                outcome.delivered.append(notice)
            else:
                outcome.failures += 1
        return outcome


class AlertmanagerChannel(BatchChannel):
    name = "alertmanager"
    every_run = True

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url.rstrip("/") + "/api/v2/alerts")

    def body(self, notices: list[Notice]) -> object:
        return alertmanager_alerts(notices)


class WebhookChannel(BatchChannel):
    name = "webhook"

    def body(self, notices: list[Notice]) -> object:
        return webhook_body(notices)


class SlackChannel(EachChannel):
    name = "slack"

    def __init__(self, url: str) -> None:
        self.url = url

    def request(self, notice: Notice) -> tuple[str, object]:
        return self.url, slack_message(notice)


class PagerDutyChannel(EachChannel):
    name = "pagerduty"

    def __init__(self, url: str, routing_key: str) -> None:
        self.url, self.routing_key = url, routing_key

    def request(self, notice: Notice) -> tuple[str, object]:
        return self.url, pagerduty_event(notice, self.routing_key)


def channels_from_settings(s: AlertSettings) -> list[Channel]:
    """The channels whose URL (or routing key) is configured, any subset."""
    channels: list[Channel] = []
    if s.alertmanager_url:
        channels.append(AlertmanagerChannel(s.alertmanager_url))
    if s.webhook_url:
        channels.append(WebhookChannel(s.webhook_url))
    if s.slack_webhook_url:
        channels.append(SlackChannel(s.slack_webhook_url))
    if s.pagerduty_routing_key:
        channels.append(PagerDutyChannel(s.pagerduty_url, s.pagerduty_routing_key))
    return channels
