"""One payload builder per chat service (all pure: ChatReport in, JSON-ready dict out)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from ptc_sync.chat import discord, googlechat, slack, teams
from ptc_sync.chat.model import ChatReport
from ptc_sync.chat.text import Payload
from ptc_sync.chat.webhooks import Channel

BUILDERS: Final[Mapping[Channel, Callable[[ChatReport], Payload]]] = {
    Channel.SLACK: slack.payload,
    Channel.TEAMS: teams.payload,
    Channel.DISCORD: discord.payload,
    Channel.GOOGLE_CHAT: googlechat.payload,
}

PROBLEMS: Final[Mapping[Channel, Callable[[Payload], list[str]]]] = {
    Channel.SLACK: slack.problems,
    Channel.TEAMS: teams.problems,
    Channel.DISCORD: discord.problems,
    Channel.GOOGLE_CHAT: googlechat.problems,
}


def build_payload(channel: Channel, report: ChatReport) -> Payload:
    """The most detailed message for ``channel`` that stays within its limits (PayloadTooLargeError
    if even the shortest form does not)."""
    return BUILDERS[channel](report)
