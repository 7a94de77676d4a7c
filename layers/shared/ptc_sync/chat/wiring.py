"""Builds the chat notifier from validated settings, once per Lambda container.

The handler calls ``get_notifier()``; tests call ``build_notifier()`` with their own boto3 session,
an injected sleep and clock, and a ``host_override`` that sends webhook hosts to a loopback server.
The override is a Python argument only: nothing in an event or the secret can set it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping

import boto3
from botocore.config import Config

from ptc_sync.chat.notifier import ChatNotifier
from ptc_sync.chat.poster import RetryPolicy, WebhookPoster
from ptc_sync.chat.settings import ChatSettings, load_chat_settings
from ptc_sync.chat.webhooks import WebhookSecret
from ptc_sync.container import PerContainer

# Its own config rather than the sync's wiring: importing that would load the whole sync at cold start.
AWS_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=10)


def build_notifier(
    settings: ChatSettings,
    *,
    session: boto3.Session | None = None,
    host_override: Mapping[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    policy: RetryPolicy | None = None,
) -> ChatNotifier:
    session = session or boto3.Session()
    secret = WebhookSecret(
        settings.chat_secret_arn,
        client=session.client("secretsmanager", config=AWS_CONFIG),
        max_age=settings.chat_secret_max_age,
    )
    poster = WebhookPoster(
        policy=policy or RetryPolicy(deadline=settings.chat_deadline_seconds),
        sleep=sleep,
        monotonic=monotonic,
        host_override=host_override,
    )
    return ChatNotifier(
        secret, poster, dashboard_url=settings.dashboard_url, report_topic_arn=settings.topic_arn
    )


_notifier = PerContainer(lambda: build_notifier(load_chat_settings(os.environ)))
get_notifier = _notifier.get
set_notifier = _notifier.set
