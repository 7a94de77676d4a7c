"""The chat notifier's settings, from its function's environment, validated once per container.

| Variable | Meaning |
|---|---|
| ``PTC_CHAT_SECRET_ARN`` | the Secrets Manager secret (ARN or name) holding the webhook URLs (required) |
| ``PTC_TOPIC_ARN`` | the report topic, the only one whose messages are posted (required; Globals set it) |
| ``PTC_DASHBOARD_URL`` | optional https link to the CloudWatch dashboard, shown in every message |
| ``PTC_CHAT_SECRET_MAX_AGE`` | seconds the secret is cached (default 300) |
| ``PTC_CHAT_DEADLINE_SECONDS`` | per channel, requests and retry waits together (default 30) |

As for the sync, an unknown ``PTC_*`` variable is an error: a typo must not be silently ignored. The
sync's own settings (set for every function through the template's Globals) are not the notifier's
business and are left alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ptc_sync.settings import TOPIC_ARN_RE, SettingsError, SyncSettings, env_settings, prefixed

MAX_DASHBOARD_URL_CHARS: Final = 2000


class ChatSettings(BaseModel):
    """Field ``x_y`` is environment variable ``PTC_X_Y``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    chat_secret_arn: str = Field(min_length=1, max_length=2048)
    topic_arn: str | None = None
    dashboard_url: str | None = None
    chat_secret_max_age: int = Field(default=300, ge=0, le=3600)
    chat_deadline_seconds: float = Field(default=30, gt=0, le=120)

    @field_validator("topic_arn")
    @classmethod
    def _topic(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not TOPIC_ARN_RE.fullmatch(value):
            raise ValueError("not an SNS topic ARN")
        return value

    @field_validator("dashboard_url")
    @classmethod
    def _dashboard(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError("must be an https URL")
        if len(value) > MAX_DASHBOARD_URL_CHARS or any(ch.isspace() for ch in value):
            raise ValueError(f"must be one line of at most {MAX_DASHBOARD_URL_CHARS} characters")
        return value


def load_chat_settings(environ: Mapping[str, str]) -> ChatSettings:
    stack_wide = set(SyncSettings.model_fields) - set(ChatSettings.model_fields)
    values = {name: value for name, value in prefixed(environ).items() if name not in stack_wide}
    # values left out of errors: the dashboard URL may carry tokens
    settings = env_settings(ChatSettings, values, what="chat notifier settings", show_values=False)
    if settings.topic_arn is None:
        raise SettingsError(
            "invalid chat notifier settings: PTC_TOPIC_ARN: required (the notifier posts only the "
            "report topic's messages)"
        )
    return settings
