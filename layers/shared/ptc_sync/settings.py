"""Settings from the function's environment, validated once per container.

Every setting is a ``PTC_*`` environment variable set by template.yaml. A bad value stops the
function at its first invocation with an error that names the variable, the value and the rule.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ptc_sync.names import ECR_REPOSITORY_PATTERN, parse_tagged_image
from ptc_sync.work import MAX_TAGS_PER_ITEM, DiscoverySpec

ENV_PREFIX = "PTC_"
PREFIX_RE = re.compile(rf"^(?:ROOT|{ECR_REPOSITORY_PATTERN})$")  # a rule prefix is a repository name
ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/[A-Za-z0-9+=,.@_/-]{1,512}$")
TOPIC_ARN_RE = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$")


class SettingsError(ValueError):
    """Raised at cold start when the environment holds a bad setting; the message names it."""


def _csv(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def _flag(value: Any) -> Any:
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"true", "1", "yes"}:
            return True
        if lowered in {"false", "0", "no", ""}:
            return False
    return value


def _json(value: Any) -> Any:
    if isinstance(value, str):
        if not value.strip():
            return ()
        try:
            return json.loads(value)
        except ValueError as exc:
            raise ValueError(f"not JSON: {exc}") from None
    return value


CsvList = Annotated[tuple[str, ...], BeforeValidator(_csv)]
Flag = Annotated[bool, BeforeValidator(_flag)]


RATE_RE: Final = re.compile(r"^rate\(\s*(\d{1,6})\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_UNIT_MINUTES: Final = {"minute": 1, "hour": 60, "day": 1440}


def rate_minutes(expression: str) -> int | None:
    """``rate(15 minutes)`` → 15, ``rate(1 day)`` → 1440; None for a cron() or anything else."""
    match = RATE_RE.fullmatch(expression.strip())
    if match is None:
        return None
    return int(match.group(1)) * _UNIT_MINUTES[match.group(2).rstrip("s")]


class SyncSettings(BaseModel):
    """What the sync does and where it reports. Field ``x_y`` is environment variable ``PTC_X_Y``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    topic_arn: str | None = None
    dry_run: Flag = False
    notify_always: Flag = False
    rule_prefixes: CsvList = ()
    repository_include: CsvList = ()
    repository_exclude: CsvList = ()
    tag_include: CsvList = ()
    tag_exclude: CsvList = ()
    pulled_within_days: int = Field(default=0, ge=0, le=3650)
    keep_generations: int = Field(default=1, ge=0, le=10)
    verify_timeout_seconds: float = Field(default=120, ge=1, le=900)
    verify_poll_seconds: float = Field(default=2, gt=0, le=60)
    rate_limit_reserve: int = Field(default=10, ge=0)
    check_concurrency: int = Field(default=32, ge=1, le=256)
    refresh_concurrency: int = Field(default=4, ge=1, le=32)
    max_refreshes_per_run: int = Field(default=200, ge=0)
    region: str = ""
    account_id: str = ""
    # ptc-sync's own read roles in ECR upstream accounts (UpstreamRoleArns), at most one per account;
    # never a rule's customRoleArn, which ECR assumes (credentials.py)
    upstream_role_arns: CsvList = ()
    # the fan-out (planner → SQS → checker) and its run state
    queue_url: str | None = None
    table_name: str | None = None
    tags_per_message: int = Field(default=50, ge=1, le=MAX_TAGS_PER_ITEM)
    refresh_cooldown_minutes: int = Field(default=30, ge=0, le=10080)
    # the schedule's interval: a failed refresh waits this long, doubling per failure up to 24 h. The
    # stack passes its ScheduleExpression; a rate() gives the interval, a cron() leaves one hour
    schedule_expression: str = Field(default="", max_length=256)
    # Sync Requests accepted per clock hour, counted in the state table (0 refuses every request)
    requests_per_hour: int = Field(default=12, ge=0, le=1000)
    schedule_minutes: int = Field(default=60, ge=1, le=1440)

    @model_validator(mode="before")
    @classmethod
    def _interval_from_schedule(cls, values: Any) -> Any:
        if (
            isinstance(values, dict)
            and values.get("schedule_expression")
            and "schedule_minutes" not in values
        ):
            minutes = rate_minutes(str(values["schedule_expression"]))
            if minutes is not None:
                values = {**values, "schedule_minutes": max(1, min(minutes, 1440))}
        return values

    history_days: int = Field(default=14, ge=1, le=365)  # TTL of run results and idempotency records
    # images to keep cached before anyone pulls them (``repository:tag`` under a rule) and new-tag
    # discovery specs; both may also come from an SSM parameter document (prewarm_parameter)
    prewarm_images: CsvList = ()
    discover: Annotated[tuple[DiscoverySpec, ...], BeforeValidator(_json)] = ()
    prewarm_parameter: str | None = None
    # how refresh and pre-warm make ECR import (importer.py): the ECR API, the registry endpoint, or
    # auto: the API unless the account's latest selftest found only the endpoint imports
    import_path: Literal["api", "endpoint", "auto"] = "auto"

    @field_validator("prewarm_images")
    @classmethod
    def _images(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for image in value:
            parse_tagged_image(image)
        return value

    @field_validator("queue_url", "table_name", "prewarm_parameter")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("rule_prefixes")
    @classmethod
    def _prefixes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for prefix in value:
            if not PREFIX_RE.fullmatch(prefix):
                raise ValueError(f"{prefix!r} is not an ECR repository prefix (or ROOT)")
        return value

    @field_validator("upstream_role_arns")
    @classmethod
    def _read_roles(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        accounts: set[str] = set()
        for arn in value:
            match = ROLE_ARN_RE.fullmatch(arn)
            if match is None:
                raise ValueError(f"{arn[:200]!r} is not an IAM role ARN")
            if match.group(1) in accounts:
                raise ValueError(f"more than one role for account {match.group(1)}")
            accounts.add(match.group(1))
        return value

    @field_validator("topic_arn")
    @classmethod
    def _topic(cls, value: str | None) -> str | None:
        if value == "":
            return None
        if value is not None and not TOPIC_ARN_RE.fullmatch(value):
            raise ValueError("not an SNS topic ARN")
        return value


def env_settings[M: BaseModel](
    model: type[M],
    values: Mapping[str, str],
    *,
    what: str = "settings",
    show_values: bool = True,
) -> M:
    """Validate ``PTC_*`` values (keys already stripped and lower-cased) into ``model``; a
    SettingsError names every bad variable (and its value, unless it may carry a secret)."""
    try:
        return model.model_validate(dict(values))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            name = f"{ENV_PREFIX}{loc.upper()}" if loc else "settings"
            shown = f"={values.get(loc, '')!r}" if show_values else ""
            problems.append(f"{name}{shown}: {err['msg']}")
        raise SettingsError(f"invalid {what}: " + "; ".join(problems)) from None


def prefixed(environ: Mapping[str, str]) -> dict[str, str]:
    """``PTC_DRY_RUN=true`` → ``{"dry_run": "true"}``."""
    return {
        key[len(ENV_PREFIX) :].lower(): value for key, value in environ.items() if key.startswith(ENV_PREFIX)
    }


def load_settings(environ: Mapping[str, str]) -> SyncSettings:
    """Read ``PTC_*`` variables (unknown ones are an error: a typo must not be silently ignored)."""
    values = prefixed(environ)
    values.setdefault("region", environ.get("AWS_REGION", environ.get("AWS_DEFAULT_REGION", "")))
    return env_settings(SyncSettings, values)
