"""Header and body parsers: WWW-Authenticate, token responses, rate-limit headers, Retry-After, Link."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from ptc_sync.models import RateLimitStatus
from ptc_sync.registry import next_link, within_budget
from ptc_sync.registry.auth import (
    ChallengeParseError,
    TokenResponseError,
    parse_challenges,
    parse_token_response,
    pick_challenge,
)
from ptc_sync.registry.ratelimit import parse_quota, parse_rate_limit, parse_retry_after

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def test_docker_hub_style_challenge() -> None:
    [ch] = parse_challenges(
        [
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
            'scope="repository:library/alpine:pull",error="insufficient_scope"'
        ]
    )
    assert ch.scheme == "bearer"
    assert (ch.realm, ch.service, ch.scope, ch.error) == (
        "https://auth.docker.io/token",
        "registry.docker.io",
        "repository:library/alpine:pull",
        "insufficient_scope",
    )


def test_several_challenges_quotes_and_escapes() -> None:
    challenges = parse_challenges(
        ['Basic realm="a, b \\"quoted\\"", Bearer realm="https://r/token" , service=svc', "Negotiate"]
    )
    assert [c.scheme for c in challenges] == ["basic", "bearer", "negotiate"]
    assert challenges[0].realm == 'a, b "quoted"'
    assert challenges[1].service == "svc"
    assert pick_challenge(challenges) is challenges[1]
    assert pick_challenge(parse_challenges(['Basic realm="x"'])) == challenges[0].__class__(
        "basic", {"realm": "x"}
    )
    assert pick_challenge(parse_challenges(["Bearer service=x"])) is None  # a Bearer challenge needs a realm


@pytest.mark.parametrize("bad", ['Bearer realm="unterminated', 'realm="no scheme"', "Bearer realm=@"])
def test_malformed_challenges(bad: str) -> None:
    with pytest.raises(ChallengeParseError):
        parse_challenges([bad])


def token(doc: object, *, wall: dt.datetime = NOW):  # type: ignore[no-untyped-def]
    return parse_token_response(json.dumps(doc).encode(), scopes=["s"], monotonic_now=100.0, wall_now=wall)


def test_token_lifetime_from_expires_in_and_issued_at() -> None:
    plain = token({"token": "t", "expires_in": 300})
    assert plain.lifetime == 300
    assert plain.expires_at == pytest.approx(100 + 300 - 30)  # refreshed 30 s early
    assert token({"access_token": "a"}).value == "a"
    default = token({"token": "t"})
    assert default.lifetime == 60  # the spec's default
    assert default.expires_at == pytest.approx(100 + 60 - 6)
    aged = token({"token": "t", "expires_in": 300, "issued_at": "2026-01-02T03:02:05.123456789Z"})
    assert aged.lifetime == pytest.approx(300 - 119.876544, abs=1e-3)  # issued two minutes ago
    future = token({"token": "t", "expires_in": 300, "issued_at": "2026-01-02T03:14:05+00:00"})
    assert future.lifetime == 300  # issuer clock ahead: no penalty
    stale = token({"token": "t", "expires_in": 60, "issued_at": "2026-01-02T02:00:00Z"})
    assert stale.lifetime == 0
    assert not stale.valid(100.0)  # usable once, never cached
    capped = token({"token": "t", "expires_in": 10**9})
    assert capped.lifetime == 24 * 3600
    assert token({"token": "t", "expires_in": "soon"}).lifetime == 60


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"token": ""}', b'{"token": 5}', b'{"token": "a b"}', b'{"token": "x\\ny"}'],
)
def test_unusable_token_responses(body: bytes) -> None:
    with pytest.raises(TokenResponseError):
        parse_token_response(body, scopes=["s"], monotonic_now=0.0, wall_now=NOW)


def test_token_repr_hides_the_value() -> None:
    assert "sekrit" not in repr(token({"token": "sekrit"}))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("100;w=21600", (100, 21600)),
        ("76", (76, None)),
        ("100, 100;w=21600", (100, 21600)),
        (" 0 ;w=60", (0, 60)),
        ("lots", (None, None)),
        (None, (None, None)),
    ],
)
def test_rate_limit_quota_values(value: str | None, expected: tuple[int | None, int | None]) -> None:
    assert parse_quota(value) == expected


def test_rate_limit_status_and_budget() -> None:
    assert parse_rate_limit("h", {}) is None
    status = parse_rate_limit("h", {"ratelimit-limit": "200;w=21600", "ratelimit-remaining": "3;w=21600"})
    assert status == RateLimitStatus("h", limit=200, remaining=3, window_seconds=21600)
    assert within_budget(status, 3)
    assert not within_budget(status, 4)  # a 4-platform image costs 4 pulls on Docker Hub
    assert not within_budget(status, 2, reserve=2)
    assert within_budget(None, 1000)  # no headers: no known limit


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("Fri, 02 Jan 2026 03:05:05 GMT", 60.0),
        ("Fri, 02 Jan 2026 03:00:00 GMT", 0.0),  # in the past
        ("-3", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (['</v2/x/tags/list?n=2&last=b>; rel="next"'], "/v2/x/tags/list?n=2&last=b"),
        (['<https://h/a>; rel="prev", <https://h/b>; rel=next'], "https://h/b"),
        (['<https://h/a>; title="x"; rel="last next"'], "https://h/a"),
        (['<https://h/a>; rel="prev"'], None),
        ([], None),
    ],
)
def test_link_next(values: list[str], expected: str | None) -> None:
    assert next_link(values) == expected
