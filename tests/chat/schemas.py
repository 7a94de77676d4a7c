"""Each service's webhook payload as its documentation describes it, written as JSON Schema (only what
our messages use; unknown properties are refused so a typo cannot pass), plus the limits a schema cannot
say (totals, byte sizes).

Sources: Slack Block Kit reference (docs.slack.dev); Adaptive Cards schema and the Teams Workflows
webhook format (learn.microsoft.com); Discord Execute Webhook and Embed Limits (discord.com
developers); Google Chat Message and Cards v2 reference (developers.google.com/workspace/chat).
"""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator

STRING = {"type": "string"}


def _text(kind: str, max_length: int) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["type", "text"],
        "properties": {
            "type": {"const": kind},
            "text": {"type": "string", "minLength": 1, "maxLength": max_length},
            "emoji": {"type": "boolean"},
        },
        "additionalProperties": False,
    }


def _block(kind: str, required: list[str], **properties: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["type", *required],
        "properties": {
            "type": {"const": kind},
            "block_id": {"type": "string", "maxLength": 255},
            **properties,
        },
        "additionalProperties": False,
    }


_SLACK_BUTTON = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {
        "type": {"const": "button"},
        "text": _text("plain_text", 75),
        "url": {"type": "string", "maxLength": 3000, "pattern": "^https://"},
        "action_id": {"type": "string", "maxLength": 255},
    },
    "additionalProperties": False,
}
SLACK = {
    "type": "object",
    "required": ["blocks"],
    "properties": {
        "text": {"type": "string", "maxLength": 40_000},
        "blocks": {
            "type": "array",
            "minItems": 1,
            "maxItems": 50,
            "items": {
                "oneOf": [
                    _block("header", ["text"], text=_text("plain_text", 150)),
                    _block(
                        "section",
                        ["text"],
                        text={"oneOf": [_text("mrkdwn", 3000), _text("plain_text", 3000)]},
                    ),
                    _block("divider", []),
                    _block(
                        "actions",
                        ["elements"],
                        elements={"type": "array", "minItems": 1, "maxItems": 25, "items": _SLACK_BUTTON},
                    ),
                    _block(
                        "context",
                        ["elements"],
                        elements={
                            "type": "array",
                            "minItems": 1,
                            "maxItems": 10,
                            "items": {"oneOf": [_text("mrkdwn", 3000), _text("plain_text", 3000)]},
                        },
                    ),
                ]
            },
        },
    },
    "additionalProperties": False,
}

_SPACING = {"enum": ["None", "Small", "Default", "Medium", "Large", "ExtraLarge", "Padding"]}
_TEXT_BLOCK = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {
        "type": {"const": "TextBlock"},
        "text": {"type": "string", "minLength": 1},
        "wrap": {"type": "boolean"},
        "weight": {"enum": ["Default", "Lighter", "Bolder"]},
        "size": {"enum": ["Default", "Small", "Medium", "Large", "ExtraLarge"]},
        "color": {"enum": ["Default", "Dark", "Light", "Accent", "Good", "Warning", "Attention"]},
        "isSubtle": {"type": "boolean"},
        "spacing": _SPACING,
    },
    "additionalProperties": False,
}
_FACT_SET = {
    "type": "object",
    "required": ["type", "facts"],
    "properties": {
        "type": {"const": "FactSet"},
        "facts": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["title", "value"],
                "properties": {"title": STRING, "value": STRING},
                "additionalProperties": False,
            },
        },
        "spacing": _SPACING,
    },
    "additionalProperties": False,
}
_OPEN_URL = {
    "type": "object",
    "required": ["type", "url"],
    "properties": {
        "type": {"const": "Action.OpenUrl"},
        "title": STRING,
        "url": {"type": "string", "pattern": "^https://"},
    },
    "additionalProperties": False,
}
TEAMS = {
    "type": "object",
    "required": ["type", "attachments"],
    "properties": {
        "type": {"const": "message"},
        "attachments": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["contentType", "content"],
                "properties": {
                    "contentType": {"const": "application/vnd.microsoft.card.adaptive"},
                    "contentUrl": {"type": "null"},
                    "content": {
                        "type": "object",
                        "required": ["type", "version", "body"],
                        "properties": {
                            "$schema": STRING,
                            "type": {"const": "AdaptiveCard"},
                            # Teams Workflows refuse cards above 1.4
                            "version": {"enum": ["1.0", "1.1", "1.2", "1.3", "1.4"]},
                            "msteams": {"type": "object", "properties": {"width": {"const": "Full"}}},
                            "body": {
                                "type": "array",
                                "minItems": 1,
                                "items": {"oneOf": [_TEXT_BLOCK, _FACT_SET]},
                            },
                            "actions": {"type": "array", "items": _OPEN_URL},
                        },
                        "additionalProperties": False,
                    },
                },
                "additionalProperties": False,
            },
        },
    },
    "additionalProperties": False,
}
TEAMS_MAX_BYTES = 28_000  # "approximately 28 KB" for a message

_EMBED = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 256},
        "description": {"type": "string", "maxLength": 4096},
        "url": {"type": "string", "pattern": "^https://"},
        "color": {"type": "integer", "minimum": 0, "maximum": 0xFFFFFF},
        "timestamp": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}"},
        "footer": {
            "type": "object",
            "required": ["text"],
            "properties": {"text": {"type": "string", "maxLength": 2048}},
            "additionalProperties": False,
        },
        "fields": {
            "type": "array",
            "maxItems": 25,
            "items": {
                "type": "object",
                "required": ["name", "value"],
                "properties": {
                    "name": {"type": "string", "maxLength": 256},
                    "value": {"type": "string", "maxLength": 1024},
                    "inline": {"type": "boolean"},
                },
            },
        },
    },
    "additionalProperties": False,
}
DISCORD = {
    "type": "object",
    "anyOf": [{"required": ["content"]}, {"required": ["embeds"]}],
    "properties": {
        "content": {"type": "string", "maxLength": 2000},
        "username": {"type": "string", "maxLength": 80},
        "embeds": {"type": "array", "maxItems": 10, "items": _EMBED},
        "allowed_mentions": {
            "type": "object",
            "properties": {"parse": {"type": "array", "items": {"enum": ["roles", "users", "everyone"]}}},
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}
DISCORD_MAX_EMBED_CHARS = 6000

_WIDGET = {
    "oneOf": [
        {
            "type": "object",
            "required": ["textParagraph"],
            "properties": {
                "textParagraph": {
                    "type": "object",
                    "required": ["text"],
                    "properties": {"text": STRING},
                    "additionalProperties": False,
                }
            },
            "additionalProperties": False,
        },
        {
            "type": "object",
            "required": ["buttonList"],
            "properties": {
                "buttonList": {
                    "type": "object",
                    "required": ["buttons"],
                    "properties": {
                        "buttons": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "required": ["text", "onClick"],
                                "properties": {
                                    "text": STRING,
                                    "onClick": {
                                        "type": "object",
                                        "required": ["openLink"],
                                        "properties": {
                                            "openLink": {
                                                "type": "object",
                                                "required": ["url"],
                                                "properties": {
                                                    "url": {"type": "string", "pattern": "^https://"}
                                                },
                                            }
                                        },
                                    },
                                },
                            },
                        }
                    },
                }
            },
            "additionalProperties": False,
        },
    ]
}
GOOGLE_CHAT = {
    "type": "object",
    "anyOf": [{"required": ["text"]}, {"required": ["cardsV2"]}],
    "properties": {
        "text": {"type": "string", "maxLength": 4096},
        "cardsV2": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["cardId", "card"],
                "properties": {
                    "cardId": STRING,
                    "card": {
                        "type": "object",
                        "properties": {
                            "header": {
                                "type": "object",
                                "required": ["title"],
                                "properties": {"title": STRING, "subtitle": STRING},
                                "additionalProperties": False,
                            },
                            "sections": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["widgets"],
                                    "properties": {
                                        "header": STRING,
                                        "widgets": {"type": "array", "minItems": 1, "items": _WIDGET},
                                    },
                                    "additionalProperties": False,
                                },
                            },
                        },
                        "additionalProperties": False,
                    },
                },
                "additionalProperties": False,
            },
        },
    },
    "additionalProperties": False,
}
GOOGLE_CHAT_MAX_WIDGETS = 100
GOOGLE_CHAT_MAX_BYTES = 32_000


def utf8_size(payload: Any) -> int:
    return len(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode())


def violations(channel: str, payload: dict[str, Any]) -> list[str]:
    """Everything the payload breaks in its service's documented schema and limits."""
    schema = {"slack": SLACK, "teams": TEAMS, "discord": DISCORD, "googlechat": GOOGLE_CHAT}[channel]
    found = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message[:200]}"
        for error in Draft202012Validator(schema).iter_errors(payload)
    ]
    if channel == "teams" and utf8_size(payload) > TEAMS_MAX_BYTES:
        found.append(f"{utf8_size(payload)} bytes > {TEAMS_MAX_BYTES}")
    if channel == "discord":
        for embed in payload.get("embeds", []):
            chars = (
                len(embed.get("title", ""))
                + len(embed.get("description", ""))
                + len(embed.get("footer", {}).get("text", ""))
            )
            chars += sum(len(f["name"]) + len(f["value"]) for f in embed.get("fields", []))
            if chars > DISCORD_MAX_EMBED_CHARS:
                found.append(f"embed text {chars} > {DISCORD_MAX_EMBED_CHARS}")
    if channel == "googlechat":
        for card in payload.get("cardsV2", []):
            widgets = sum(len(section["widgets"]) for section in card["card"].get("sections", []))
            if widgets > GOOGLE_CHAT_MAX_WIDGETS:
                found.append(f"{widgets} widgets > {GOOGLE_CHAT_MAX_WIDGETS}")
        if utf8_size(payload) > GOOGLE_CHAT_MAX_BYTES:
            found.append(f"{utf8_size(payload)} bytes > {GOOGLE_CHAT_MAX_BYTES}")
    return found
