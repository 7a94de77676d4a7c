"""Scheduled sync (placeholder until the sync engine lands)."""

from typing import Any


def lambda_handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    return {"status": "not-implemented"}
