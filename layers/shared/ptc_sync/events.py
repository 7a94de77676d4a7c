"""Parser models (Powertools Parser / pydantic) for the events the functions accept.

Events choose what to do, never where: no field here can carry a host or URL. Upstream hosts come
only from the account's pull-through cache rules.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ScheduledSyncEvent(BaseModel):
    """The EventBridge Scheduler input (template.yaml) or a manual ``aws lambda invoke``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Literal["ptc-sync.schedule", "ptc-sync.manual"] = "ptc-sync.schedule"
    mode: Literal["scheduled", "manual"] = "scheduled"
    dry_run: bool | None = Field(default=None, description="Overrides PTC_DRY_RUN for this run only")
