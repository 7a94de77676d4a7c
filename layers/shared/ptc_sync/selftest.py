"""``ptc-sync selftest``: prove, in this account, the ECR behaviours a refresh relies on.

Over 400 lines on purpose: one procedure of six checks that share throwaway tags, their order and
their cleanup; split by check, the cleanup would live apart from what it undoes.

docs/ecr-behaviour.md marks several behaviours "unknown" or "implied": no public evidence says what a
real account does. The selftest finds out on throwaway tags of a small public image (default:
``docker/library/busybox`` under the account's ECR Public rule, tags ``1.36.1-uclibc`` and
``1.36.1-musl``, neither of which may be cached already), one behaviour at a time, each timed:

- ``import-endpoint``: a pull by tag through the registry endpoint (``GET /v2/<repo>/manifests/<tag>``
  with a GetAuthorizationToken credential) imports the absent first tag with upstream's digest;
- ``import-api``: BatchGetImage by tag imports the absent second tag with upstream's digest;
- ``backup-put-image``: PutImage of the exact bytes BatchGetImage read writes a backup tag with the same
  digest (what a refresh does before it removes a tag);
- ``reimport-after-delete``: BatchDeleteImage of the imported tag, then a pull by tag (the path that
  imported, the API first), brings the tag back with upstream's digest (what a refresh then does);
- ``layer-warmth``: every blob of every platform asked for, then BatchCheckLayerAvailability answers
  AVAILABLE for each within the verify bound (a node without a route to upstream can pull it);
- ``pull-time-exclusion``: a pull-time update exclusion exists for the caller
  (ListPullTimeUpdateExclusions) and its own pull leaves ``lastRecordedPullTime`` as it was.

Each is verified, failed, or unknown (not checked: what it needs failed first, or the account cannot
tell). The result is stored in the state table (``selftest_store``), where the scheduled sync reads it:
when backup by PutImage or re-import after a delete failed, or no import path works, its runs report
only. Everything the selftest wrote is removed at the end (the two tags and the backup tag).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from ptc_sync import mediatypes as mt
from ptc_sync.ecr import EcrAdapter, EcrError, Manifest
from ptc_sync.importer import ApiImporter, CacheImporter, EndpointImporter
from ptc_sync.models import PullThroughCacheRule, UpstreamKind, short_digest
from ptc_sync.registry.errors import RegistryError
from ptc_sync.selftest_store import (
    Behaviour,
    Check,
    SelftestResult,
    SelftestStore,
    SelftestStoreError,
    Status,
)
from ptc_sync.upstream import ROOT, UpstreamMappingError, upstream_for

if TYPE_CHECKING:
    from ptc_sync.wiring import App

DEFAULT_IMAGE: Final = "docker/library/busybox"
DEFAULT_TAGS: Final = ("1.36.1-uclibc", "1.36.1-musl")
BACKUP_PREFIX: Final = "ptc-sync-selftest--"

SUMMARY: Final = "prove in this account the ECR behaviours a refresh relies on (writes throwaway tags)"
DESCRIPTION: Final = f"""\
{SUMMARY[0].upper()}{SUMMARY[1:]}.

On two throwaway tags of a small public image under a pull-through cache rule (default: the
account's ECR Public rule, {DEFAULT_IMAGE}, tags {" and ".join(DEFAULT_TAGS)}; neither may be
cached already), each behaviour is checked in turn and timed:

  import-endpoint        a pull by tag through the account's registry endpoint (GET
                         /v2/<repo>/manifests/<tag>, GetAuthorizationToken credential) imports the
                         first tag with upstream's digest
  import-api             BatchGetImage by tag imports the second tag with upstream's digest
  backup-put-image       PutImage of the exact bytes read writes a backup tag of the same digest
  reimport-after-delete  BatchDeleteImage of the tag, then a pull by tag, brings it back with
                         upstream's digest (how a refresh makes ECR fetch a tag again)
  layer-warmth           every blob of every platform asked for, then AVAILABLE in
                         BatchCheckLayerAvailability within --verify-timeout
  pull-time-exclusion    a pull-time update exclusion exists for the caller and its own pull
                         leaves lastRecordedPullTime unchanged

Each is verified, failed or unknown (not checked, or the account cannot tell). The result is
stored in the state table (--table, or the stack's), where the scheduled sync reads it: while
backup-put-image or reimport-after-delete failed, or neither import path works, its runs report
only (no refresh, no removal) and say why; with PTC_IMPORT_PATH=auto the refresh pulls the way
that imported (the API first). The tags and the backup are removed at the end.

Exit code 0 when nothing failed (unknown is not a failure), 1 when a behaviour failed or the
cleanup or the store did, 2 for a refused argument (no such rule, a tag already cached).
"""


class SelftestUsageError(ValueError):
    """A refused argument: no such rule, an image not under it, a tag already cached or not upstream."""


@dataclass(frozen=True, slots=True)
class SelftestOptions:
    rule: str | None = None  # a rule prefix; None: the account's ECR Public rule
    image: str = DEFAULT_IMAGE  # the upstream repository
    tags: tuple[str, str] = DEFAULT_TAGS  # (the endpoint's tag, the API's tag)
    endpoint_override: str | None = None  # tests and the local testbed only (a loopback URL)


@dataclass
class _Run:
    app: App
    ecr: EcrAdapter
    repository: str
    expected: dict[str, str]  # tag → upstream's digest
    importers: dict[Behaviour, CacheImporter]
    sleep: Callable[[float], None]
    monotonic: Callable[[], float]
    bound: float
    poll: float
    checks: list[Check] = field(default_factory=list)
    written: list[str] = field(default_factory=list)  # tags to remove at the end
    imported_by: dict[str, Behaviour] = field(default_factory=dict)  # tag → the import that worked


def find_rule(rules: list[PullThroughCacheRule], prefix: str | None) -> PullThroughCacheRule:
    if prefix is not None:
        wanted = prefix.strip().rstrip("/")
        for rule in rules:
            if rule.prefix.strip().rstrip("/") == wanted:
                return rule
        raise SelftestUsageError(f"no pull-through cache rule with prefix {wanted!r} in this account")
    for rule in rules:
        if rule.upstream_registry is UpstreamKind.ECR_PUBLIC:
            return rule
    raise SelftestUsageError(
        "no ECR Public pull-through cache rule in this account: name a rule with --rule "
        "(and an image it caches with --image)"
    )


def cached_name(rule: PullThroughCacheRule, image: str) -> str:
    """The cached repository for upstream repository ``image`` under ``rule``."""
    prefix = rule.prefix.strip().rstrip("/")
    upstream_prefix = (rule.upstream_repository_prefix or ROOT).strip().rstrip("/")
    if upstream_prefix != ROOT:
        if not image.startswith(f"{upstream_prefix}/"):
            raise SelftestUsageError(f"{image!r} is not under the rule's upstream prefix {upstream_prefix!r}")
        image = image[len(upstream_prefix) + 1 :]
    return image if prefix == ROOT else f"{prefix}/{image}"


def run_selftest(
    app: App,
    options: SelftestOptions = SelftestOptions(),
    *,
    store: SelftestStore | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> SelftestResult:
    """Run every check (raises SelftestUsageError before writing anything for a refused argument),
    clean up, and store the result in ``store`` (default: the app's state table, when it has one)."""
    ecr = app.ecr
    rule = find_rule(ecr.pull_through_cache_rules(), options.rule)
    repository = cached_name(rule, options.image)
    try:
        ref = upstream_for(rule, repository)
    except UpstreamMappingError as exc:
        raise SelftestUsageError(str(exc)) from exc
    endpoint_tag, api_tag = options.tags
    if endpoint_tag == api_tag:
        raise SelftestUsageError("give two different tags: one is imported by each path")
    expected: dict[str, str] = {}
    for tag in options.tags:
        try:
            current = ecr.tag_digest(repository, tag)
        except EcrError as exc:
            if exc.code != "RepositoryNotFoundException":
                raise
            current = None
        if current is not None:
            raise SelftestUsageError(
                f"{repository}:{tag} is already cached: the selftest removes what it imports, so it "
                "only uses tags nobody pulls through the cache (name others with --tag)"
            )
        try:
            expected[tag] = app.registry.resolve_digest(ref, tag).digest
        except RegistryError as exc:
            raise SelftestUsageError(f"{ref}:{tag} upstream: {exc}") from exc
    refresher = app.refresher
    endpoint = EndpointImporter(
        ecr.client,
        account_id=app.settings.account_id,
        region=app.settings.region,
        endpoint_override=options.endpoint_override,
    )
    run = _Run(
        app=app,
        ecr=ecr,
        repository=repository,
        expected=expected,
        importers={Behaviour.IMPORT_ENDPOINT: endpoint, Behaviour.IMPORT_API: ApiImporter(ecr)},
        sleep=refresher.sleep,
        monotonic=refresher.monotonic,
        bound=app.settings.verify_timeout_seconds,
        poll=app.settings.verify_poll_seconds,
    )
    started = now()
    notes: list[str] = []
    try:
        _check_import(run, Behaviour.IMPORT_ENDPOINT, endpoint_tag)
        _check_import(run, Behaviour.IMPORT_API, api_tag)
        source = _source_tag(run)
        _check_backup(run, source, started)
        _check_reimport(run, source)
        present = _present_tag(run, source)
        _check_warmth(run, present)
        _check_pull_time(run, present)
    finally:
        notes.extend(_clean_up(run))
        endpoint.close()
    result = SelftestResult(
        at=started,
        account_id=app.settings.account_id,
        region=app.settings.region,
        rule=rule.prefix,
        repository=repository,
        tags=options.tags,
        checks=tuple(run.checks),
        notes=tuple(notes),
    )
    target = store if store is not None else app.selftest
    if target is None:
        return _with_note(result, "not stored: no state table (--table or --stack-name)")
    try:
        target.save(result)
    except SelftestStoreError as exc:
        return _with_note(result, f"NOT STORED: {exc}")
    return result


def _with_note(result: SelftestResult, note: str) -> SelftestResult:
    return SelftestResult(
        at=result.at,
        account_id=result.account_id,
        region=result.region,
        rule=result.rule,
        repository=result.repository,
        tags=result.tags,
        checks=result.checks,
        notes=(*result.notes, note),
    )


# -- the checks ---------------------------------------------------------------------------------------


@contextmanager
def _timed(run: _Run, behaviour: Behaviour) -> Iterator[list[Any]]:
    """``[status, detail]`` to fill in; the check is recorded with its wall time (an unexpected ECR
    error is a failure of that behaviour, with the error)."""
    outcome: list[Any] = [Status.UNKNOWN, ""]
    start = time.perf_counter()
    try:
        yield outcome
    except EcrError as exc:
        outcome[:] = [Status.FAILED, str(exc)]
    finally:
        run.checks.append(Check(behaviour, outcome[0], round(time.perf_counter() - start, 3), outcome[1]))


def _status(run: _Run, behaviour: Behaviour) -> Status:
    return next((c.status for c in run.checks if c.behaviour is behaviour), Status.UNKNOWN)


def _pull_until(run: _Run, importer: CacheImporter, tag: str) -> tuple[Manifest | None, str]:
    """Pull ``tag`` by tag until ECR serves upstream's digest, within the bound (an import may finish
    in the background after a first failed answer). (manifest, the last problem)."""
    deadline = run.monotonic() + run.bound
    problem = ""
    while True:
        try:
            manifest = importer.import_tag(run.repository, tag)
        except EcrError as exc:
            if exc.code in {"AccessDeniedException", "UpstreamAccessDenied"}:
                return None, str(exc)
            problem = str(exc)
        else:
            if manifest.digest == run.expected[tag]:
                return manifest, ""
            problem = f"ECR served {manifest.digest}, upstream has {run.expected[tag]}"
        if run.monotonic() + run.poll > deadline:
            return None, f"{problem} (after {run.bound:g}s)"
        run.sleep(run.poll)


def _check_import(run: _Run, behaviour: Behaviour, tag: str) -> None:
    importer = run.importers[behaviour]
    with _timed(run, behaviour) as outcome:
        run.written.append(tag)
        manifest, problem = _pull_until(run, importer, tag)
        shown = run.ecr.tag_digest(run.repository, tag)
        if manifest is None:
            outcome[:] = [Status.FAILED, problem]
        elif shown != manifest.digest:
            outcome[:] = [
                Status.FAILED,
                f"served {short_digest(manifest.digest)}, DescribeImages shows {shown}",
            ]
        else:
            run.imported_by[tag] = behaviour
            via = "the registry endpoint" if behaviour is Behaviour.IMPORT_ENDPOINT else "BatchGetImage"
            outcome[:] = [Status.VERIFIED, f"{tag} imported by {via}: {short_digest(shown)}, upstream's"]


def _source_tag(run: _Run) -> str | None:
    """The imported tag the later checks work on: the API's first (the refresh's default path)."""
    for wanted in (Behaviour.IMPORT_API, Behaviour.IMPORT_ENDPOINT):
        for tag, behaviour in run.imported_by.items():
            if behaviour is wanted:
                return tag
    return None


def _present_tag(run: _Run, source: str | None) -> str | None:
    """An imported tag still in the cache for the last checks: ``source`` unless its re-import
    failed (then it is gone), else the other imported tag."""
    if source is not None and _status(run, Behaviour.REIMPORT_AFTER_DELETE) is not Status.FAILED:
        return source
    return next((tag for tag in run.imported_by if tag != source), None)


def _unknown(run: _Run, behaviour: Behaviour, why: str) -> None:
    run.checks.append(Check(behaviour, Status.UNKNOWN, 0.0, why))


def _check_backup(run: _Run, source: str | None, started: datetime) -> None:
    if source is None:
        _unknown(run, Behaviour.BACKUP_PUT_IMAGE, "not checked: no import worked")
        return
    backup = f"{BACKUP_PREFIX}{started:%Y%m%dT%H%M%SZ}"
    with _timed(run, Behaviour.BACKUP_PUT_IMAGE) as outcome:
        old = run.ecr.get_manifest(run.repository, digest=run.expected[source])
        run.written.append(backup)
        run.ecr.put_manifest(run.repository, backup, old)  # imageDigest given: ECR refuses other bytes
        shown = run.ecr.tag_digest(run.repository, backup)
        if shown == old.digest:
            outcome[:] = [Status.VERIFIED, f"{backup} written with PutImage: {short_digest(shown)}"]
        else:
            outcome[:] = [Status.FAILED, f"PutImage answered, but {backup} shows {shown}"]


def _check_reimport(run: _Run, source: str | None) -> None:
    if source is None:
        _unknown(run, Behaviour.REIMPORT_AFTER_DELETE, "not checked: no import worked")
        return
    behaviour = run.imported_by[source]
    with _timed(run, Behaviour.REIMPORT_AFTER_DELETE) as outcome:
        run.ecr.delete_tags(run.repository, [source])
        # a pull by tag is the evidence: right after the delete DescribeImages may still show the tag
        manifest, problem = _pull_until(run, run.importers[behaviour], source)
        if manifest is None:
            outcome[:] = [Status.FAILED, f"{source} removed, then not imported again: {problem}"]
        else:
            via = "the registry endpoint" if behaviour is Behaviour.IMPORT_ENDPOINT else "BatchGetImage"
            outcome[:] = [
                Status.VERIFIED,
                f"{source} removed, pulled by {via}: back with upstream's {short_digest(manifest.digest)}",
            ]


def _blobs(run: _Run, tag: str) -> tuple[list[str], int]:
    top = run.ecr.get_manifest(run.repository, digest=run.expected[tag])
    manifests = [top]
    if mt.is_index(top.media_type):
        for entry in json.loads(top.body).get("manifests", []):
            manifests.append(run.ecr.get_manifest(run.repository, digest=entry["digest"]))
    blobs: list[str] = []
    for child in manifests:
        if mt.is_index(child.media_type):
            continue
        doc = json.loads(child.body)
        for desc in [doc.get("config", {}), *doc.get("layers", [])]:
            if desc.get("digest") and desc["digest"] not in blobs:
                blobs.append(desc["digest"])
    return blobs, len(manifests)


def _check_warmth(run: _Run, source: str | None) -> None:
    if source is None:
        _unknown(run, Behaviour.LAYER_WARMTH, "not checked: no imported tag to warm")
        return
    importer = run.importers[run.imported_by[source]]
    with _timed(run, Behaviour.LAYER_WARMTH) as outcome:
        blobs, manifests = _blobs(run, source)
        for digest in blobs:
            importer.fetch_blob(run.repository, digest)
        deadline = run.monotonic() + run.bound
        pending = list(blobs)
        while pending:
            available = run.ecr.layers_available(run.repository, pending)
            pending = [d for d in pending if not available.get(d)]
            if not pending or run.monotonic() + run.poll > deadline:
                break
            run.sleep(run.poll)
        if pending:
            outcome[:] = [
                Status.FAILED,
                f"{len(pending)} of {len(blobs)} blobs not AVAILABLE after {run.bound:g}s: ECR still "
                "sends nodes upstream for them",
            ]
        else:
            outcome[:] = [
                Status.VERIFIED,
                f"{len(blobs)} blobs of {manifests} manifest{'s' if manifests != 1 else ''} AVAILABLE",
            ]


def caller_principal(arn: str) -> str:
    """The IAM principal an STS caller ARN stands for: an assumed role's role (``ExclusionPrincipal``
    takes roles and users), an IAM user as it is."""
    service_part, _, resource = arn.partition(":assumed-role/")
    if resource:
        role = resource.split("/")[0]
        return f"{service_part.replace(':sts:', ':iam:', 1)}:role/{role}"
    return arn.replace(":sts:", ":iam:", 1)


def _exclusions(client: Any) -> set[str]:
    found: set[str] = set()
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"maxResults": 1000}
        if token:
            kwargs["nextToken"] = token
        resp = client.list_pull_time_update_exclusions(**kwargs)
        found |= set(resp.get("pullTimeUpdateExclusions", []))
        token = resp.get("nextToken")
        if not token:
            return found


def _pull_time(run: _Run, tag: str) -> Any:
    resp = run.ecr.client.describe_images(repositoryName=run.repository, imageIds=[{"imageTag": tag}])
    details = resp.get("imageDetails", [])
    return details[0].get("lastRecordedPullTime") if details else None


def _check_pull_time(run: _Run, source: str | None) -> None:
    if source is None:
        _unknown(run, Behaviour.PULL_TIME_EXCLUSION, "not checked: no imported tag to pull")
        return
    with _timed(run, Behaviour.PULL_TIME_EXCLUSION) as outcome:
        try:
            caller = run.app.session.client("sts").get_caller_identity()["Arn"]
            principal = caller_principal(caller)
            excluded = principal in _exclusions(run.ecr.client)
        except (ClientError, BotoCoreError) as exc:
            outcome[:] = [Status.UNKNOWN, f"exclusions not read: {exc}"]
            return
        if not excluded:
            outcome[:] = [
                Status.UNKNOWN,
                f"no pull-time update exclusion for {principal} (the stack registers its functions' roles; "
                "for yours: aws ecr register-pull-time-update-exclusion --principal-arn ...)",
            ]
            return
        try:
            before = _pull_time(run, source)
            run.sleep(run.poll)  # pull times are coarse: a pull at the same instant would prove nothing
            ApiImporter(run.ecr).import_tag(run.repository, source)
            after = _pull_time(run, source)
        except (ClientError, BotoCoreError) as exc:
            outcome[:] = [Status.UNKNOWN, f"pull time not read: {exc}"]
            return
        if after != before:
            outcome[:] = [Status.FAILED, f"{principal} is excluded, yet its pull moved lastRecordedPullTime"]
        else:
            outcome[:] = [
                Status.VERIFIED,
                f"{principal} is excluded; its pull left lastRecordedPullTime unchanged",
            ]


def _clean_up(run: _Run) -> list[str]:
    tags = list(dict.fromkeys(run.written))
    if not tags:
        return []
    try:
        run.ecr.delete_tags(run.repository, tags)
    except EcrError as exc:
        return [f"CLEANUP FAILED ({exc}): remove {', '.join(tags)} from {run.repository} by hand"]
    return [f"removed {', '.join(tags)} from {run.repository}"]


# -- output and the command ---------------------------------------------------------------------------


def exit_code(result: SelftestResult) -> int:
    """0 nothing failed; 1 a behaviour, the cleanup or the store failed."""
    broken = any(n.startswith(("CLEANUP FAILED", "NOT STORED")) for n in result.notes)
    return 1 if result.failed or broken else 0


def render(result: SelftestResult, stream: TextIO, *, as_json: bool = False) -> int:
    """Print the result (a table, or one JSON document); returns the exit code."""
    code = exit_code(result)
    if as_json:
        doc = {"command": "selftest", "exit_code": code, **result.to_doc()}
        stream.write(json.dumps(doc, indent=2) + "\n")
        return code
    where = " ".join(x for x in (result.account_id, result.region) if x) or "this account"
    stream.write(
        f"selftest in {where}: rule {result.rule}, {result.repository} tags {', '.join(result.tags)}\n"
    )
    width = max(len(b.value) for b in Behaviour)
    for check in result.checks:
        stream.write(
            f"  {check.status.value:<8}  {check.behaviour.value:<{width}}  {check.seconds:7.2f}s  "
            f"{check.detail}\n"
        )
    for note in result.notes:
        stream.write(f"  note: {note}\n")
    counts = {s: sum(1 for c in result.checks if c.status is s) for s in Status}
    if result.all_verified:
        verdict = "all verified"
    else:
        verdict = ", ".join(f"{n} {s.value}" for s, n in counts.items() if n)
    gate = result.report_only_reason()
    stream.write(f"{verdict}{'; scheduled runs will ' + gate if gate else ''}\n")
    return code


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's options (cli.py registers the command)."""
    parser.description = DESCRIPTION
    parser.add_argument(
        "--rule", metavar="PREFIX", help="the rule to test under (default: the account's ECR Public rule)"
    )
    parser.add_argument(
        "--image",
        default=DEFAULT_IMAGE,
        metavar="REPOSITORY",
        help=f"a small public image upstream of the rule, without its host (default: {DEFAULT_IMAGE})",
    )
    parser.add_argument(
        "--tag",
        action="append",
        metavar="TAG",
        help=f"the two throwaway tags, given twice, neither cached yet (default: {' '.join(DEFAULT_TAGS)})",
    )
    parser.add_argument(
        "--table",
        default=os.environ.get("PTC_TABLE_NAME"),
        metavar="NAME",
        help="the stack's StateTableName output (default: $PTC_TABLE_NAME): where the result is stored",
    )
    parser.add_argument(
        "--verify-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long each import and the layer warmth may take (the stack's, or 120)",
    )
    # the local testbed's registry endpoint on loopback (tests and demos only)
    parser.add_argument("--ecr-endpoint-override", metavar="URL", help=argparse.SUPPRESS)


def options_from(args: argparse.Namespace) -> SelftestOptions:
    tags = tuple(args.tag or DEFAULT_TAGS)
    if len(tags) != 2:
        raise SelftestUsageError("--tag: give it twice (one tag for each import path) or not at all")
    return SelftestOptions(
        rule=args.rule,
        image=args.image.strip().strip("/"),
        tags=(tags[0], tags[1]),
        endpoint_override=args.ecr_endpoint_override,
    )
