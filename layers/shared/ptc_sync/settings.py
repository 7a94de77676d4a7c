"""Settings from the function's environment and the stack's settings document, validated once each.

Two sources, one ``SyncSettings``:

- ``PTC_*`` environment variables, set by template.yaml from the few deploy-time parameters (the
  stack's resources, the dry run, the rule prefixes, the settings parameter's name). A bad value
  stops the function at its first invocation with an error naming the variable, the value and the rule.
- the settings document: one JSON object in an SSM parameter (``PTC_SETTINGS_PARAMETER``), read
  through Powertools Parameters (``wiring``) and validated here by ``SettingsDocument``, the one
  validator (docs/settings.schema.json describes the same document; tests/unit/test_settings_document.py
  holds the two to each other). A bad document is refused whole, with every bad field named
  (``settings.keep_generations: must be an integer 0..10``): nothing runs on half-valid settings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal, get_args, get_origin

from annotated_types import Ge, Gt, Le
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

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
    prewarm_parameter: str | None = None  # a separate {"prewarm", "discover"} document (CLI, tests)
    # the stack's settings document (SSM parameter name); its fields arrive as the fields above
    settings_parameter: str | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # metrics beyond the per-stack set the alarms read (ptc_sync.metrics)
    metrics_run_counts: Flag = False
    metrics_per_rule: Flag = False
    metrics_per_host: Flag = False
    metrics_per_outcome: Flag = False
    # how refresh and pre-warm make ECR import (importer.py): the ECR API, the registry endpoint, or
    # auto: the API unless the account's latest selftest found only the endpoint imports
    import_path: Literal["api", "endpoint", "auto"] = "auto"

    @field_validator("prewarm_images")
    @classmethod
    def _images(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for image in value:
            parse_tagged_image(image)
        return value

    @field_validator("queue_url", "table_name", "prewarm_parameter", "settings_parameter")
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


def load_settings(environ: Mapping[str, str], document: object = None) -> SyncSettings:
    """Read ``PTC_*`` variables (unknown ones are an error: a typo must not be silently ignored) and,
    when given, the settings document (already parsed from JSON; ``None`` = no document). A variable
    naming a document field wins over the document (tests and the CLI set them; the stack does not)."""
    values: dict[str, Any] = prefixed(environ)
    values.setdefault("region", environ.get("AWS_REGION", environ.get("AWS_DEFAULT_REGION", "")))
    if document is not None:
        values = {**parse_settings_document(document).settings_values(), **values}
    return env_settings(SyncSettings, values)


# -- the settings document -------------------------------------------------------------------------

SCHEMA_ID: Final = "https://github.com/ptc-sync/ptc-sync/docs/settings.schema.json"
DOCUMENT_NAME: Final = "settings"  # the first part of every problem's location
Pattern = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._/*?\[\]!-]+$")]
Image = Annotated[str, Field(min_length=3, max_length=512)]
MAX_LIST: Final = 500  # entries of one list: patterns, pre-warm images, discovery specs


class MetricsDocument(BaseModel):
    """``"metrics"``: metrics beyond the per-stack set the alarms read (each costs $0.30 a month)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    run_counts: bool = False
    per_rule: bool = False
    per_host: bool = False
    per_outcome: bool = False


class SettingsDocument(BaseModel):
    """The settings document: what the sync does, changeable without a deploy. Every field has a
    default (``{}`` is a valid document); an unknown field is an error (a typo is not ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)

    schema_: str | None = Field(default=None, alias="$schema", max_length=2048)
    # scope: which cached repositories and tags are checked
    repository_include: list[Pattern] = Field(default_factory=list, max_length=MAX_LIST)
    repository_exclude: list[Pattern] = Field(default_factory=list, max_length=MAX_LIST)
    tag_include: list[Pattern] = Field(default_factory=list, max_length=MAX_LIST)
    tag_exclude: list[Pattern] = Field(default_factory=list, max_length=MAX_LIST)
    pulled_within_days: int = Field(default=0, ge=0, le=3650)
    # refresh
    keep_generations: int = Field(default=1, ge=0, le=10)
    verify_timeout_seconds: int = Field(default=120, ge=5, le=600)
    rate_limit_reserve: int = Field(default=10, ge=0, le=1000)
    refresh_cooldown_minutes: int = Field(default=30, ge=0, le=10080)
    max_refreshes_per_run: int = Field(default=200, ge=0, le=10000)
    # how refresh and pre-warm make ECR import (importer.py); auto: what the latest selftest verified
    import_path: Literal["api", "endpoint", "auto"] = "auto"
    # pre-warm and new-tag discovery
    prewarm: list[Image] = Field(default_factory=list, max_length=MAX_LIST)
    discover: list[DiscoverySpec] = Field(default_factory=list, max_length=MAX_LIST)
    # fan-out and run history
    tags_per_message: int = Field(default=50, ge=1, le=MAX_TAGS_PER_ITEM)
    history_days: int = Field(default=14, ge=1, le=365)
    requests_per_hour: int = Field(default=12, ge=0, le=1000)
    # reporting
    notify_always: bool = False
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics: MetricsDocument = Field(default_factory=MetricsDocument)

    @field_validator("prewarm")
    @classmethod
    def _images(cls, value: list[str]) -> list[str]:
        for image in value:
            parse_tagged_image(image)
        return value

    def settings_values(self) -> dict[str, Any]:
        """The document as ``SyncSettings`` field values."""
        values = self.model_dump(exclude={"schema_", "prewarm", "metrics", "discover"})
        for name in ("repository_include", "repository_exclude", "tag_include", "tag_exclude"):
            values[name] = tuple(values[name])
        values["prewarm_images"] = tuple(self.prewarm)
        values["discover"] = tuple(self.discover)
        values["metrics_run_counts"] = self.metrics.run_counts
        values["metrics_per_rule"] = self.metrics.per_rule
        values["metrics_per_host"] = self.metrics.per_host
        values["metrics_per_outcome"] = self.metrics.per_outcome
        return values


def parse_settings_document(document: object) -> SettingsDocument:
    """Validate a parsed JSON document; SettingsError names every bad field (never its value, which
    may be long or odd) as ``settings.field: rule``."""
    if not isinstance(document, Mapping):
        raise SettingsError(f"invalid settings document: {DOCUMENT_NAME}: must be a JSON object")
    try:
        # strict JSON validation: 1 is not true, "5" is not 5; arrays are arrays
        return SettingsDocument.model_validate_json(json.dumps(document), strict=True)
    except ValidationError as exc:
        problems = [_problem(err) for err in exc.errors()[:10]]
        if len(exc.errors()) > 10:
            problems.append(f"and {len(exc.errors()) - 10} more problems")
        raise SettingsError("invalid settings document: " + "; ".join(problems)) from None
    except ValueError as exc:  # a DiscoverySpec's own check (exactly one of pattern and semver)
        raise SettingsError(f"invalid settings document: {DOCUMENT_NAME}.discover: {exc}") from None


def _location(loc: tuple[str | int, ...]) -> str:
    text = DOCUMENT_NAME
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _problem(err: Any) -> str:
    loc = tuple(err["loc"])
    if err["type"] == "extra_forbidden":
        return f"{_location(loc)}: not a settings field (docs/settings.md lists them)"
    if err["type"] in {"list_type", "tuple_type"}:
        return f"{_location(loc)}: must be a list"
    if err["type"] == "string_pattern_mismatch":
        return f"{_location(loc)}: must be a shell pattern of letters, digits and . _ / * ? [ ] ! -"
    field = _field_at(SettingsDocument, loc)
    rule = _rule(field) if field is not None and err["type"] != "value_error" else None
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{_location(loc)}: {rule or message[:200]}"


def _field_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> FieldInfo | None:
    """The field a problem's location names (list indexes step into the item type)."""
    current: Any = model
    field: FieldInfo | None = None
    for part in loc:
        if isinstance(part, int):
            args = get_args(field.annotation) if field is not None else ()
            if field is None or get_origin(field.annotation) is not list or not args:
                return None
            current = args[0]
            field = FieldInfo.from_annotation(current)
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part)
        if field is None:
            return None
        current = field.annotation
    return field


def _rule(field: FieldInfo) -> str | None:
    """What a field takes, in the words docs/settings.md uses."""
    low: object = next((m.ge for m in field.metadata if isinstance(m, Ge)), None)
    low = low if low is not None else next((m.gt for m in field.metadata if isinstance(m, Gt)), None)
    high: object = next((m.le for m in field.metadata if isinstance(m, Le)), None)
    kind = field.annotation
    if kind is int and low is not None and high is not None:
        return f"must be an integer {low}..{high}"
    if kind is bool:
        return "must be true or false"
    if get_origin(kind) is Literal:
        return "must be one of " + ", ".join(str(v) for v in get_args(kind))
    if get_origin(kind) is list:
        return None  # the item's own rule, or the length pydantic names
    return None
