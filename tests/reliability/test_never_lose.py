"""Issue 10, bullet by bullet, through the real handlers on the testbed: the failures an adversarial
operator found (a refresh loop, two refreshers of one tag, backups recognised by name, a ROOT rule
refreshing a pushed repository, sha512 digests, a refresh whose time runs out, a double fault), each
reproduced and shown to behave.

Every test asserts concrete outcomes: digests in ECR, ECR write calls (SessionFaults.calls), ECR's
imports upstream (the emulator's manifest GETs through the FaultyUpstream), results in the run state,
journal and ledger records, and the reports the topic delivered.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

import pytest

from ptc_sync import mediatypes as mt
from ptc_sync import wiring
from ptc_sync.journal import LEASE, Phase
from ptc_sync.models import Outcome, TagResult
from ptc_sync.refresh import MAX_TAG, is_backup_tag
from ptc_sync.state import DynamoStateStore
from ptc_sync.work import TAG_RE, WorkItem, WorkKind
from testbed.fault_server import Reply
from testbed.registry import RegistryServer
from testbed.runtime import FakeContext
from testbed.sandbox import ACCOUNT, PUBLIC_HOST, REGION
from tests.reliability import harness
from tests.reliability.harness import App, Cached, World, manifest_path

WRITES = frozenset({"PutImage", "BatchDeleteImage"})
SCHEDULED = {"source": "ptc-sync.schedule", "mode": "scheduled"}
ERROR_BODY = json.dumps({"errors": [{"code": "DENIED", "message": "injected"}]}).encode()


def refused(status: int) -> Reply:
    return Reply(status, {"Content-Type": "application/json"}, ERROR_BODY)


@pytest.fixture(scope="module")
def world(registry: RegistryServer) -> Iterator[World]:
    yield from harness.world_of(registry)


@pytest.fixture(autouse=True)
def healed(world: World) -> Iterator[None]:
    """No upstream fault outlives its test (run_fanout heals, the hand-driven rounds do not)."""
    yield
    world.upstream.heal()


# -- helpers -------------------------------------------------------------------------------------------


def store(world: World) -> DynamoStateStore:
    return DynamoStateStore(world.client("dynamodb"), world.box.table_name)


def run_results(world: World, answer: Mapping[str, Any]) -> list[TagResult]:
    if not answer.get("run_id") or not answer.get("tags"):
        return []
    return [r for r in store(world).run_results(str(answer["run_id"])) if r.repository]


def writes_on(app: App, repository: str, tag: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The PutImage and BatchDeleteImage calls this app made on ``repository`` (on ``tag``, if given)."""
    found = []
    for service, op, params in list(app.faults.calls):
        if service != "ecr" or op not in WRITES or params.get("repositoryName") != repository:
            continue
        tags = (
            [params.get("imageTag")]
            if op == "PutImage"
            else [i.get("imageTag") for i in params.get("imageIds", [])]
        )
        if tag is None or tag in tags:
            found.append((op, params))
    return found


def forget_events(world: World) -> None:
    """Drop the ECR events the rules matched so far (the pulls that seeded the cache)."""
    for tap in world.stack.taps:  # received and deleted: PurgeQueue is allowed once a minute
        while True:
            batch = tap.sqs.receive_message(QueueUrl=tap.queue_url, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not batch:
                break
            for message in batch:
                tap.sqs.delete_message(QueueUrl=tap.queue_url, ReceiptHandle=message["ReceiptHandle"])


def scheduled(world: World, app: App) -> tuple[dict[str, Any], list[TagResult], list[str]]:
    """One scheduled run through the planner and the checker, faults left in place."""
    wiring.set_app(app.app)
    planned = dict(world.stack.schedule(dict(SCHEDULED)))
    _delivery, errors = harness.drain(world, world.stack.checker)
    return planned, run_results(world, planned), errors


def feed_events(world: World, app: App, *, rounds: int = 5) -> list[TagResult]:
    """ECR's Pull Through Cache Action events through the request function, their work through the
    checker, until no new event comes (the checks may import, which emits events again)."""
    results: list[TagResult] = []
    for _ in range(rounds):
        wiring.set_app(app.app)
        answers = world.stack.deliver_events()
        if not answers:
            return results
        harness.drain(world, world.stack.checker)
        for answer in answers:
            results += run_results(world, answer)
    return results


def reports_naming(world: World, image: str) -> list[str]:
    """The reports the topic delivered since the last call that name ``image`` (their text)."""
    texts = [envelope["Message"] for envelope in world.box.messages()]
    return [t for t in texts if f"{image}`" in t or f"{image} " in t or f'{image}"' in t]


def imports_of(world: World, upstream_repo: str, tag: str) -> int:
    """Manifest requests the emulated ECR made upstream for the tag (imports, failed ones included)."""
    return sum(
        1 for f in world.box.emulator.upstream_fetches if f.repository == upstream_repo and f.reference == tag
    )


def one(results: list[TagResult], repository: str, tag: str) -> TagResult:
    found = [r for r in results if r.repository == repository and r.tag == tag]
    assert len(found) == 1, f"{repository}:{tag}: {found}"
    return found[0]


def outcome_of(world: World, repository: str, tag: str) -> Outcome | None:
    """The tag's last checked outcome (the run state keeps only the notable results)."""
    state = store(world).tag_state(repository, tag)
    return state.outcome if state is not None else None


def start_run(world: World, items: int = 1) -> str:
    run_id = f"test-{uuid.uuid4().hex[:16]}"
    store(world).start_run(run_id, items, world.box.clock.now())
    return run_id


# -- 1. the refresh loop -------------------------------------------------------------------------------


@pytest.mark.parametrize("events", [False, True], ids=["schedule-alone", "schedule-and-ecr-events"])
def test_a_failed_refresh_stops_importing_and_is_alerted_once(world: World, events: bool) -> None:
    """Upstream answers 429 to ECR's import. Each round: the next tick of the schedule (one interval
    after the previous tick), the scheduled run, then (``events``) every ECR event the round produced
    through the request function. Over 10 rounds the imports stop: at most 2 after the first
    failure; the failure is alerted once, and never called recovered."""
    cached = harness.cache_repo(
        world, f"refresh-loop-{'events' if events else 'schedule'}", stale=("stable",), fresh=()
    )
    name, tag = cached.name, "stable"
    app = harness.build(world, repository_include=name)
    interval = timedelta(minutes=app.app.settings.schedule_minutes)
    forget_events(world)
    world.box.messages()
    world.upstream.inject(manifest_path(cached.upstream_repo, tag), refused(429), method="GET")

    per_round: list[int] = []
    outcomes: list[list[str]] = []
    alerts: list[str] = []
    recoveries: list[str] = []  # the tag never matched upstream: a "recovered" report is false
    start = world.box.clock.now()
    for n in range(10):
        # EventBridge Scheduler's rate(schedule_minutes): round n starts at start + n intervals
        world.box.clock.advance(start + n * interval - world.box.clock.now())
        before = imports_of(world, cached.upstream_repo, tag)
        _planned, results, errors = scheduled(world, app)
        assert errors == [], errors
        if events:
            results += feed_events(world, app)
        per_round.append(imports_of(world, cached.upstream_repo, tag) - before)
        outcomes.append([f"{r.outcome.value}: {r.reason[:60]}" for r in results if r.tag == tag])
        for text in reports_naming(world, f"{name}:{tag}"):
            alerts += ["failed"] if "Refresh failed" in text else []
            recoveries += ["recovered"] if "Recovered" in text else []
        assert world.tags(name).get(tag) == cached.before[tag], f"round {n}: the tag lost its old image"

    history = "\n".join(
        f"round {i}: {c} imports, {o}" for i, (c, o) in enumerate(zip(per_round, outcomes, strict=True))
    )
    state = store(world).tag_state(name, tag)
    problems = []
    if per_round[0] < 1:
        problems.append("the first round's refresh did not import")
    if sum(per_round[1:]) > 2:
        problems.append(f"{sum(per_round[1:])} imports after the first failure (at most 2)")
    if len(alerts) != 1:
        problems.append(f"{len(alerts)} failure alerts for {name}:{tag} (one)")
    if recoveries:
        problems.append(f"{len(recoveries)} reports call {name}:{tag} recovered (it never was)")
    if state is None or state.refresh_failures < 2:
        problems.append(f"the backoff state counts {state.refresh_failures if state else None} failures")
    assert not problems, "\n".join(problems) + "\n" + history


# -- 2. two refreshers of one tag ----------------------------------------------------------------------


def test_a_held_lease_means_in_progress_and_nothing_touched(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    cached = harness.cache_repo(world, "lease-held", stale=("stable",), fresh=("pinned",))
    name = cached.name
    app = harness.build(world, repository_include=name)
    world.box.messages()
    lease = app.app.journal.acquire(name, "stable", "other-owner", world.box.clock.now())
    try:
        out = harness.run_fanout(world, app, app, lambda: caplog.records)
    finally:
        app.app.journal.release(lease)

    held = one(out.results, name, "stable")
    assert held.outcome is Outcome.IN_PROGRESS, held
    assert "other-owner" in held.reason
    assert outcome_of(world, name, "pinned") is Outcome.FRESH
    assert writes_on(app, name) == [], "a checker that found the lease held wrote to ECR"
    assert world.tags(name) == cached.before
    assert app.app.ledger.backups(name) == []
    assert not [r for r in out.results if r.outcome is Outcome.REFRESH_FAILED]
    assert not [t for t in reports_naming(world, f"{name}:stable") if "Refresh failed" in t]
    state = store(world).tag_state(name, "stable")
    assert state is not None
    assert state.refresh_failures == 0


def _item(name: str, run_id: str) -> WorkItem:
    return WorkItem(run_id=run_id, kind=WorkKind.CHECK, repository=name, tags=("stable",), source="request")


def _process(app: App, item: WorkItem, out: dict[str, Any], key: str) -> None:
    try:
        out[key] = app.app.checker().process(item).results
    except Exception as exc:  # noqa: BLE001 - reported by the test
        out[key] = exc


def _race_outcome(world: World, cached: Cached, out: dict[str, Any], apps: list[App]) -> None:
    """Exactly one refreshed; the other in_progress or fresh; no refresh_failed; the new digest."""
    name = cached.name
    for key in ("a", "b"):
        assert not isinstance(out.get(key), Exception), f"{key} raised: {out.get(key)!r}"
    got = {key: one(list(out[key]), name, "stable") for key in ("a", "b")}
    outcomes = sorted(r.outcome.value for r in got.values())
    reasons = {k: f"{r.outcome.value}: {r.reason}" for k, r in got.items()}
    assert outcomes.count("refreshed") == 1, reasons
    assert set(outcomes) - {"refreshed"} <= {"in_progress", "fresh"}, reasons
    assert world.tags(name)["stable"] == cached.new["stable"]
    assert harness.check_invariant(world, cached, [r for r in got.values()]) == []
    assert sum(len(writes_on(app, name, "stable")) for app in apps) >= 1, "nobody refreshed the tag"
    assert not [t for t in reports_naming(world, f"{name}:stable") if "Refresh failed" in t]


def test_two_refreshers_overlapping_one_reports_in_progress(world: World) -> None:
    """The second checker runs its whole check while the first is between its lease and the remove."""
    cached = harness.cache_repo(world, "race-overlap", stale=("stable",), fresh=())
    name = cached.name
    first = harness.build(world, repository_include=name)
    second = harness.build(world, repository_include=name)
    world.box.messages()
    in_backup, second_done = threading.Event(), threading.Event()

    def hold(p: Mapping[str, Any]) -> bool:
        if is_backup_tag(str(p.get("imageTag", ""))) and not in_backup.is_set():
            in_backup.set()
            second_done.wait(60)
        return False

    first.faults.fail("ecr", "PutImage", "Unused", when=hold)
    out: dict[str, Any] = {}
    a = threading.Thread(target=_process, args=(first, _item(name, start_run(world)), out, "a"))
    b = threading.Thread(target=_process, args=(second, _item(name, start_run(world)), out, "b"))
    a.start()
    try:
        assert in_backup.wait(60), "the first refresher never reached its backup"
        b.start()
        b.join(120)
    finally:
        second_done.set()
        a.join(120)

    assert one(list(out["b"]), name, "stable").outcome is Outcome.IN_PROGRESS, out["b"]
    assert writes_on(second, name) == [], "the second refresher wrote to ECR"
    _race_outcome(world, cached, out, [first, second])


@pytest.mark.parametrize("gap", [0, 5], ids=["same-second", "seconds-later"])
def test_a_duplicate_that_saw_the_tag_stale_does_not_refresh_it_again(world: World, gap: int) -> None:
    """A duplicate delivery: the second checker read the tag (stale) and compared it before the first
    refreshed it, and takes the lease only after the first released it. It must not remove the
    tag (now on upstream's digest) and import it a second time, nor touch the first one's backup.
    ``gap``: the seconds between the first refresh and the duplicate's (0: their backup names
    collide; 5: they do not)."""
    cached = harness.cache_repo(world, f"race-after-{gap}", stale=("stable",), fresh=())
    name = cached.name
    first = harness.build(world, repository_include=name)
    second = harness.build(world, repository_include=name)
    world.box.messages()
    at_lease, first_done = threading.Event(), threading.Event()
    seeded = imports_of(world, cached.upstream_repo, "stable")

    def wait_for_first(p: Mapping[str, Any]) -> bool:
        if '"S": "REFRESH"' in json.dumps(p.get("Item", {})) and not at_lease.is_set():
            at_lease.set()
            first_done.wait(60)
        return False

    second.faults.fail("dynamodb", "PutItem", "Unused", when=wait_for_first)
    out: dict[str, Any] = {}
    b = threading.Thread(target=_process, args=(second, _item(name, start_run(world)), out, "b"))
    b.start()
    try:
        assert at_lease.wait(60), "the second checker never reached the lease"
        _process(first, _item(name, start_run(world)), out, "a")
        world.box.clock.advance(timedelta(seconds=gap))  # the backup stamps differ (or not)
    finally:
        first_done.set()
        b.join(120)

    imports = imports_of(world, cached.upstream_repo, "stable") - seeded
    problems = []
    a_result = one(list(out["a"]), name, "stable")
    b_result = one(list(out["b"]), name, "stable")
    if a_result.outcome is not Outcome.REFRESHED:
        problems.append(f"the first checker: {a_result.outcome}: {a_result.reason}")
    if b_result.outcome not in {Outcome.FRESH, Outcome.IN_PROGRESS}:
        problems.append(f"the duplicate: {b_result.outcome}: {b_result.reason}")
    if writes_on(second, name):
        ops = [(op, p.get("imageTag") or p.get("imageIds")) for op, p in writes_on(second, name)]
        problems.append(f"the duplicate wrote to ECR: {ops}")
    if world.tags(name).get("stable") != cached.new["stable"]:
        problems.append(f"stable shows {world.tags(name).get('stable')}, not the new digest")
    kept = first.app.ledger.backups(name)
    if [(r.source_tag, r.digest) for r in kept] != [("stable", cached.before["stable"])]:
        problems.append(f"the ledger does not hold the one kept generation (the old image): {kept}")
    if cached.before["stable"] not in world.tags(name).values():
        problems.append("the old image is no longer under any tag: the previous generation is lost")
    if imports != 1:
        problems.append(f"{imports} imports of one new digest")
    if [t for t in reports_naming(world, f"{name}:stable") if "Refresh failed" in t]:
        problems.append("a refresh_failed alert was sent")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("trial", range(3))
def test_two_refreshers_racing_one_refreshes(world: World, trial: int) -> None:
    """A free race, both checkers started together on duplicate work items: exactly one refreshes,
    the other reports in_progress or fresh (never refresh_failed), the tag ends on the new digest and
    the old image is still kept as the backup."""
    cached = harness.cache_repo(world, f"race-free-{trial}", stale=("stable",), fresh=())
    name = cached.name
    apps = [harness.build(world, repository_include=name) for _ in range(2)]
    world.box.messages()
    start = threading.Barrier(2)
    out: dict[str, Any] = {}

    def go(app: App, key: str) -> None:
        item = _item(name, start_run(world))
        start.wait(30)
        _process(app, item, out, key)

    threads = [threading.Thread(target=go, args=(app, k)) for app, k in zip(apps, ("a", "b"), strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    _race_outcome(world, cached, out, apps)
    kept = apps[0].app.ledger.backups(name)
    assert [(r.source_tag, r.digest) for r in kept] == [("stable", cached.before["stable"])], kept
    assert world.tags(name)[kept[0].backup_tag] == cached.before["stable"]


# -- 3. backups: the ledger's, not the name's ----------------------------------------------------------

FAKE_NEWEST = "ptc-sync-prev--stable--99999999T999999Z"
FAKE_OLDEST = "ptc-sync-prev--stable--00000000T000000Z"


def test_only_ledger_tags_are_backups(world: World, caplog: pytest.LogCaptureFixture) -> None:
    cached = harness.cache_repo(world, "ledger", stale=("stable",), fresh=(FAKE_NEWEST, FAKE_OLDEST))
    name = cached.name
    v1, v2 = cached.before["stable"], cached.new["stable"]
    assert len({v1, cached.before[FAKE_NEWEST], cached.before[FAKE_OLDEST]}) == 3

    first = harness.build(world, repository_include=name, keep_generations=1)
    out1 = harness.run_fanout(world, first, first, lambda: caplog.records)
    assert one(out1.results, name, "stable").outcome is Outcome.REFRESHED, out1.text()[:2000]
    for fake in (FAKE_NEWEST, FAKE_OLDEST):
        assert outcome_of(world, name, fake) is Outcome.FRESH, "an upstream tag is an ordinary tag"

    v3 = world.box.pusher.push_image(cached.upstream_repo, "stable", layers=1).digest
    world.box.clock.advance(timedelta(minutes=61))  # past the refresh cooldown
    second = harness.build(world, repository_include=name, keep_generations=1)
    out2 = harness.run_fanout(world, second, second, lambda: caplog.records)
    assert one(out2.results, name, "stable").outcome is Outcome.REFRESHED, out2.text()[:2000]

    after = world.tags(name)
    assert after["stable"] == v3
    assert after[FAKE_NEWEST] == cached.before[FAKE_NEWEST], "the fake 'newest backup' was touched"
    assert after[FAKE_OLDEST] == cached.before[FAKE_OLDEST], "the fake 'oldest backup' was pruned"
    (record,) = second.app.ledger.backups(name)  # one generation kept: the first refresh's was pruned
    assert (record.source_tag, record.digest) == ("stable", v2)
    assert after[record.backup_tag] == v2
    named_like_backups = {t for t in after if is_backup_tag(t)}
    assert named_like_backups == {record.backup_tag, FAKE_NEWEST, FAKE_OLDEST}
    assert v1 not in after.values(), "the first refresh's backup was not pruned"

    rolled = second.app.refresher.rollback(name, "stable", second.app.ledger.backups(name))
    assert rolled.ok, rolled
    assert (rolled.new_digest, rolled.backup_tag) == (v2, record.backup_tag)
    assert world.tags(name)["stable"] == v2, "rollback restored something else than the real previous image"


def test_a_128_character_tag_gets_an_addressable_backup(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    long_tag = "v" + "1234567890" * 12 + "abcdefg"
    assert len(long_tag) == MAX_TAG == 128
    cached = harness.cache_repo(world, "long-tag", stale=(long_tag,), fresh=())
    name = cached.name
    app = harness.build(world, repository_include=name, keep_generations=1)
    out = harness.run_fanout(world, app, app, lambda: caplog.records)

    assert one(out.results, name, long_tag).outcome is Outcome.REFRESHED, out.text()[:2000]
    assert harness.check_invariant(world, cached, out.results) == []
    (record,) = app.app.ledger.backups(name)
    assert record.source_tag == long_tag, "the ledger does not map the backup back to its source"
    assert len(record.backup_tag) <= MAX_TAG, f"{len(record.backup_tag)}-character backup tag"
    assert re.fullmatch(TAG_RE, record.backup_tag), record.backup_tag
    after = world.tags(name)
    assert after[record.backup_tag] == cached.before[long_tag]
    rolled = app.app.refresher.rollback(name, long_tag, app.app.ledger.backups(name))
    assert rolled.ok, rolled
    assert rolled.new_digest == cached.before[long_tag]
    assert world.tags(name)[long_tag] == cached.before[long_tag]


# -- 4. a ROOT rule and a repository pushed to directly ------------------------------------------------


def sync_request(world: World, detail: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Sync Request",
        "source": world.stack.request_source,
        "account": ACCOUNT,
        "time": "2026-03-01T12:10:00Z",
        "region": REGION,
        "resources": [],
        "detail": detail,
    }


def test_root_rule_leaves_a_pushed_repository_alone(world: World, caplog: pytest.LogCaptureFixture) -> None:
    box, ecr = world.box, world.client("ecr")
    name = world.name("pushed-directly")
    upstream = box.pusher.push_image(name, "stable", layers=1)  # the same name upstream
    box.pusher.push_image(name, "latest", layers=1)
    ours = box.pusher.push_image(world.name("team-build"), "stable", layers=1)
    assert ours.digest != upstream.digest
    ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="ROOT", upstreamRegistryUrl=PUBLIC_HOST, upstreamRegistry="ecr-public"
    )
    try:
        ecr.create_repository(repositoryName=name)
        strict, box.emulator.strict_put_image_layers = box.emulator.strict_put_image_layers, False
        try:
            ecr.put_image(
                repositoryName=name,
                imageManifest=ours.manifest.decode(),
                imageManifestMediaType=ours.media_type,
                imageTag="stable",
            )
        finally:
            box.emulator.strict_put_image_layers = strict
        assert world.tags(name) == {"stable": ours.digest}
        imports_before = imports_of(world, name, "stable") + imports_of(world, name, "latest")
        # the default scope (no PTC_REPOSITORY_INCLUDE); the other tests' caches excluded to keep it small
        default = {"repository_exclude": "ecr-public/*,docker-hub/*"}

        app = harness.build(world, **default)
        out = harness.run_fanout(world, app, app, lambda: caplog.records)
        assert out.exceptions == [], out.exceptions
        assert [r for r in out.results if r.repository == name] == []
        assert writes_on(app, name) == [], "the scheduled run wrote to a repository pushed to directly"
        assert world.tags(name) == {"stable": ours.digest}

        requests = harness.build(world, **default)
        wiring.set_app(requests.app)
        detail = {"repositories": [name], "tags": ["stable", "latest"], "action": "refresh"}
        answer = world.stack.requests(sync_request(world, detail), FakeContext("requests"))
        assert answer.get("status") == "planned", answer
        harness.drain(world, world.stack.checker)
        results = run_results(world, answer)
        for tag in ("stable", "latest"):
            got = one(results, name, tag)
            assert got.outcome is Outcome.NOT_A_CACHE, got
        assert writes_on(requests, name) == []
        assert world.tags(name) == {"stable": ours.digest}, "a Sync Request changed a pushed repository"
        assert imports_of(world, name, "stable") + imports_of(world, name, "latest") == imports_before

        named = harness.build(world, repository_include=name)
        out = harness.run_fanout(world, named, named, lambda: caplog.records)
        got = one(out.results, name, "stable")
        assert got.outcome is Outcome.REFRESHED, out.text()[:2000]
        assert world.tags(name)["stable"] == upstream.digest, "named by the scope, it is a cache"
    finally:
        ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix="ROOT")


# -- 5. an upstream that reports sha512 ----------------------------------------------------------------


def test_a_sha512_upstream_digest_is_not_comparable(world: World, caplog: pytest.LogCaptureFixture) -> None:
    cached = harness.cache_repo(world, "sha512", stale=("stable",), fresh=())
    name = cached.name
    sha512 = "sha512:" + "ab" * 64
    seeded = imports_of(world, cached.upstream_repo, "stable")  # the first pull that cached it
    for n in range(2):  # and again an interval later: never stale, never a refresh
        if n:
            world.box.clock.advance(timedelta(minutes=61))
        world.upstream.inject(
            manifest_path(cached.upstream_repo, "stable"),
            Reply(200, {"Docker-Content-Digest": sha512, "Content-Type": mt.DOCKER_MANIFEST}),
            method="HEAD",
        )
        app = harness.build(world, repository_include=name)
        out = harness.run_fanout(world, app, app, lambda: caplog.records)
        got = one(out.results, name, "stable")
        assert got.outcome is Outcome.NOT_COMPARABLE, f"round {n}: {got.outcome}: {got.reason}"
        assert got.upstream_digest == sha512
        assert writes_on(app, name) == []
    assert imports_of(world, cached.upstream_repo, "stable") == seeded, "ECR imported the tag"
    assert world.tags(name) == cached.before
    state = store(world).tag_state(name, "stable")
    assert state is not None
    assert state.outcome is Outcome.NOT_COMPARABLE
    assert state.stale_since is None, "an incomparable digest made the tag stale"


# -- 6. time running out, and the double fault ---------------------------------------------------------


def test_no_time_for_a_refresh_leaves_the_tags_stale_and_untouched(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    cached = harness.cache_repo(world, "no-time", stale=("stable", "edge"), fresh=("pinned",))
    name = cached.name
    app = harness.build(world, repository_include=name)
    worst = app.app.refresher.worst_case
    context = harness.lambda_context("checker", lambda: int((worst - 10) * 1000))
    out = harness.run_fanout(world, app, app, lambda: caplog.records, checker_context=context)

    for tag in ("stable", "edge"):
        got = one(out.results, name, tag)
        assert got.outcome is Outcome.STALE, got
        assert "no time left in run" in got.reason
    assert writes_on(app, name) == []
    assert world.tags(name) == cached.before
    assert app.app.journal.open_leases(name) == []
    assert app.app.ledger.backups(name) == []


def test_time_running_out_before_the_remove_leaves_the_tag(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Enough time when the refresh starts; the backup takes 40 s, and then not enough is left: the
    tag is never removed, the backup goes again, no intent stays open."""
    cached = harness.cache_repo(world, "time-mid-refresh", stale=("stable",), fresh=())
    name, box = cached.name, world.box
    app = harness.build(world, repository_include=name)
    worst = app.app.refresher.worst_case
    deadline = box.clock.now() + timedelta(seconds=worst + 5)
    context = harness.lambda_context(
        "checker", lambda: max(0, int((deadline - box.clock.now()).total_seconds() * 1000))
    )
    slow = {"done": False}

    def slow_backup(p: Mapping[str, Any]) -> bool:
        if not slow["done"] and is_backup_tag(str(p.get("imageTag", ""))):
            slow["done"] = True
            box.clock.advance(timedelta(seconds=40))
        return False

    app.faults.fail("ecr", "PutImage", "Unused", when=slow_backup)
    out = harness.run_fanout(world, app, app, lambda: caplog.records, checker_context=context)

    assert slow["done"], "the refresh never started"
    got = one(out.results, name, "stable")
    assert got.outcome is Outcome.STALE, got
    assert "no time left in run" in got.reason
    assert [op for op, _p in writes_on(app, name, "stable")] == [], "the tag was removed"
    assert world.tags(name) == cached.before, "the backup was left behind or the tag moved"
    assert app.app.journal.open_leases(name) == []
    assert app.app.ledger.backups(name) == []


def _double_fault(world: World, cached: Cached, app: App) -> dict[str, int]:
    """ECR's import refused by upstream (403), and every rollback PutImage of the tag refused."""
    name = cached.name
    seen = {"restores": 0}
    world.upstream.inject(manifest_path(cached.upstream_repo, "stable"), refused(403), method="GET")

    def restoring(p: Mapping[str, Any]) -> bool:
        hit = p.get("imageTag") == "stable" and p.get("repositoryName") == name
        seen["restores"] += hit
        return hit

    app.faults.fail("ecr", "PutImage", "ServerException", when=restoring)
    return seen


def test_a_double_fault_is_repaired_by_the_next_run(world: World, caplog: pytest.LogCaptureFixture) -> None:
    cached = harness.cache_repo(world, "double-fault", stale=("stable",), fresh=("pinned",))
    name, old = cached.name, cached.before["stable"]
    first = harness.build(world, repository_include=name)
    seen = _double_fault(world, cached, first)
    out1 = harness.run_fanout(world, first, first, lambda: caplog.records)

    failed = one(out1.results, name, "stable")
    assert failed.outcome is Outcome.REFRESH_FAILED, failed
    assert "ROLLBACK FAILED" in failed.reason
    assert seen["restores"] >= 1
    assert "stable" not in world.tags(name), "the double fault did not leave the tag absent (test setup)"
    (intent,) = first.app.journal.open_leases(name)
    assert (intent.tag, intent.phase, intent.old_digest) == ("stable", Phase.REMOVING, old)
    assert intent.expired(world.box.clock.now()), "the failed holder did not abandon the intent"

    second = harness.build(world, repository_include=name)
    out2 = harness.run_fanout(world, second, second, lambda: caplog.records)
    repaired = one(out2.results, name, "stable")
    assert repaired.outcome is Outcome.REPAIRED, f"{repaired.outcome}: {repaired.reason}"
    assert world.tags(name)["stable"] == old
    assert harness.check_invariant(world, cached, out2.results, caplog.records) == []
    assert second.app.journal.open_leases(name) == []
    assert second.app.ledger.backups(name) == []
    assert not [t for t in world.tags(name) if is_backup_tag(t)], "the backup tag was left behind"


def test_a_killed_holder_is_repaired_once_its_lease_runs_out(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """The double fault, and the holder cannot even abandon its intent (the state table refuses, as
    if the Lambda died there): the intent stays open until its lease ends; the run after that
    repairs the tag."""
    cached = harness.cache_repo(world, "killed-holder", stale=("stable",), fresh=("pinned",))
    name, old = cached.name, cached.before["stable"]
    first = harness.build(world, repository_include=name)
    seen = _double_fault(world, cached, first)

    def abandoning(p: Mapping[str, Any]) -> bool:
        item = p.get("Item", {})
        return seen["restores"] > 0 and item.get("pk", item.get("PK", {})).get("S") == "REFRESH"

    first.faults.fail("dynamodb", "PutItem", "ProvisionedThroughputExceededException", when=abandoning)
    out1 = harness.run_fanout(world, first, first, lambda: caplog.records)
    assert one(out1.results, name, "stable").outcome is Outcome.REFRESH_FAILED
    assert "stable" not in world.tags(name)
    (intent,) = first.app.journal.open_leases(name)
    assert intent.phase is Phase.REMOVING, intent
    assert not intent.expired(world.box.clock.now()), "the holder abandoned it after all (test setup)"

    world.box.clock.advance(LEASE + timedelta(minutes=1))
    second = harness.build(world, repository_include=name)
    out2 = harness.run_fanout(world, second, second, lambda: caplog.records)
    repaired = one(out2.results, name, "stable")
    assert repaired.outcome is Outcome.REPAIRED, f"{repaired.outcome}: {repaired.reason}"
    assert world.tags(name)["stable"] == old
    assert harness.check_invariant(world, cached, out2.results, caplog.records) == []
    assert second.app.journal.open_leases(name) == []
