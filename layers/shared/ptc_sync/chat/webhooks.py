"""Chat webhook URLs: one Secrets Manager secret, validated against each service's known hosts.

The secret is a JSON object with any subset of the keys ``slack``, ``teams``, ``discord`` and
``googlechat``; an empty or null value leaves that channel out. It is read through Powertools
Parameters with ``max_age`` caching.

A webhook URL is a credential: whoever has it can post. It never appears in logs, exception
messages or reprs; problems name the channel and the rule the URL broke, never the URL. Its secret
parts (the token segments and query values) are registered with ``ptc_sync.redact`` as soon as the
secret is read, so a service echoing one back is masked too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qsl, urlsplit

from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

from ptc_sync.redact import register_secret

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager.client import SecretsManagerClient


class Channel(StrEnum):
    """A chat service; the value is the secret's key and the ``Channel`` metric dimension."""

    SLACK = "slack"
    TEAMS = "teams"
    DISCORD = "discord"
    GOOGLE_CHAT = "googlechat"


# The pseudo channel of problems with the secret itself (unreadable, unknown keys).
CONFIG_CHANNEL: Final = "config"


@dataclass(frozen=True, slots=True)
class _HostRule:
    hosts: frozenset[str] = frozenset()  # exact host names
    suffixes: tuple[str, ...] = ()  # "*.suffix": any name under it, not the suffix itself
    path_prefix: str = "/"

    def allows_host(self, host: str) -> bool:
        return host in self.hosts or any(host.endswith("." + suffix) for suffix in self.suffixes)

    def describe(self) -> str:
        return " or ".join([*sorted(self.hosts), *(f"*.{suffix}" for suffix in self.suffixes)])


RULES: Final[Mapping[Channel, _HostRule]] = {
    Channel.SLACK: _HostRule(hosts=frozenset({"hooks.slack.com"}), path_prefix="/services/"),
    # Teams Workflows ("When a Teams webhook request is received") hand out Power Automate URLs.
    Channel.TEAMS: _HostRule(suffixes=("logic.azure.com", "powerplatform.com")),
    Channel.DISCORD: _HostRule(
        hosts=frozenset({"discord.com", "discordapp.com"}), path_prefix="/api/webhooks/"
    ),
    Channel.GOOGLE_CHAT: _HostRule(hosts=frozenset({"chat.googleapis.com"}), path_prefix="/v1/spaces/"),
}

# Office 365 connectors, which Microsoft retired: their incoming webhooks no longer deliver to Teams.
RETIRED_TEAMS_HOSTS: Final = _HostRule(
    hosts=frozenset({"outlook.office.com", "outlook.office365.com", "webhook.office.com"}),
    suffixes=("webhook.office.com",),
)
RETIRED_TEAMS_MESSAGE: Final = (
    "teams webhook URL is a retired Office 365 connector (outlook.office.com or *.webhook.office.com), "
    'which Microsoft no longer delivers: create a Teams workflow "When a Teams webhook request is '
    'received" and store its URL (*.logic.azure.com or *.powerplatform.com)'
)

_SAFE_KEY_RE: Final = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
_MAX_URL_CHARS: Final = 2048
_MIN_SECRET_PART_CHARS: Final = 16


def register_url_secrets(url: str) -> None:
    """Register the parts of a webhook URL that carry its secret: long path segments and query values
    (the URL's start, ``https://host/``, is no secret and must not be masked in other text)."""
    try:
        parts = urlsplit(url[:_MAX_URL_CHARS])
        values = [*parts.path.split("/"), *(value for _name, value in parse_qsl(parts.query))]
    except ValueError:
        values = []
    for value in values:
        if len(value) >= _MIN_SECRET_PART_CHARS and "/" not in value:
            register_secret(value)


class WebhookConfigError(ValueError):
    """A webhook URL or the secret holding them is unusable. The message never holds a URL."""


@dataclass(frozen=True, slots=True)
class Webhook:
    channel: Channel
    url: str = field(repr=False)

    def __repr__(self) -> str:
        return f"Webhook(channel={self.channel.value!r}, url=<redacted>)"

    __str__ = __repr__


def validate_webhook(channel: Channel, url: str) -> Webhook:
    """``url`` as a Webhook if it is HTTPS on the channel's known hosts; else WebhookConfigError."""
    rule = RULES[channel]
    if len(url) > _MAX_URL_CHARS or any(ch.isspace() or not ch.isprintable() for ch in url):
        raise WebhookConfigError(
            f"{channel} webhook URL is too long or holds whitespace or control characters"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise WebhookConfigError(f"{channel} webhook URL cannot be parsed") from None
    if parts.scheme != "https":
        raise WebhookConfigError(f"{channel} webhook URL must use https")
    if parts.username is not None or parts.password is not None:
        raise WebhookConfigError(f"{channel} webhook URL must not carry user information")
    if port not in (None, 443):
        raise WebhookConfigError(f"{channel} webhook URL must use the default https port")
    if channel is Channel.TEAMS and RETIRED_TEAMS_HOSTS.allows_host(parts.hostname or ""):
        raise WebhookConfigError(RETIRED_TEAMS_MESSAGE)
    if not rule.allows_host(parts.hostname or ""):
        raise WebhookConfigError(f"{channel} webhook URL host is not {rule.describe()}")
    if not parts.path.startswith(rule.path_prefix):
        raise WebhookConfigError(f"{channel} webhook URL path must start with {rule.path_prefix}")
    if parts.fragment:
        raise WebhookConfigError(f"{channel} webhook URL must not have a fragment")
    return Webhook(channel, url)


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """The usable webhooks, and a reason for each configured one that is not usable."""

    webhooks: tuple[Webhook, ...]
    rejected: Mapping[str, str]  # channel (or "config") → reason


def parse_webhook_secret(raw: str | bytes) -> WebhookConfig:
    """Read the secret's JSON; a bad entry rejects that channel only, a bad document everything."""
    try:
        document = json.loads(raw)
    except ValueError:
        raise WebhookConfigError("the webhook secret is not JSON") from None
    if not isinstance(document, dict):
        raise WebhookConfigError("the webhook secret is not a JSON object")
    webhooks: list[Webhook] = []
    rejected: dict[str, str] = {}
    unknown = []
    for key, value in document.items():
        if key not in Channel:
            unknown.append(key if _SAFE_KEY_RE.fullmatch(key) else "<unprintable key>")
            continue
        channel = Channel(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            rejected[channel] = f"{channel} webhook URL is not a string"
            continue
        register_url_secrets(value)
        try:
            webhooks.append(validate_webhook(channel, value))
        except WebhookConfigError as exc:
            rejected[channel] = str(exc)
    if unknown:
        known = ", ".join(channel.value for channel in Channel)
        rejected[CONFIG_CHANNEL] = (
            f"unknown keys in the webhook secret: {', '.join(unknown)} (known: {known})"
        )
    order = list(Channel)
    return WebhookConfig(tuple(sorted(webhooks, key=lambda hook: order.index(hook.channel))), rejected)


class WebhookSecret:
    """The webhook secret, read through Powertools Parameters and cached ``max_age`` seconds."""

    def __init__(
        self,
        secret_id: str,
        *,
        client: SecretsManagerClient | None = None,
        max_age: int = 300,
        provider: SecretsProvider | None = None,
    ) -> None:
        self._secret_id = secret_id
        self._provider = provider or SecretsProvider(boto3_client=client)
        self._max_age = max_age

    def load(self) -> WebhookConfig:
        try:
            raw = self._provider.get(self._secret_id, max_age=self._max_age)
        except GetParameterError as exc:
            # botocore's message names the secret and the error code, never the value
            raise WebhookConfigError(f"cannot read the webhook secret: {str(exc)[:300]}") from None
        if not isinstance(raw, str | bytes):
            raise WebhookConfigError("the webhook secret has no string value")
        return parse_webhook_secret(raw)
