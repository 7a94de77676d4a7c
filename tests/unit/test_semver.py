"""Discovery by version: container tags read as semver, npm's ranges, pre-releases and variants.

The planner caches ``newest_matching(...)[:max_new]``; the cases below call that slice ``pick``."""

from __future__ import annotations

import pytest

from ptc_sync.semver import (
    TagVersion,
    check_variant,
    newest_matching,
    newest_named,
    parse_range,
    parse_tag,
    parse_version,
)

# What Docker Hub's python repository looks like around a release.
PYTHON = [
    "3.13.2-slim-bookworm",
    "3.13.2-slim",
    "3.13.2-bookworm",
    "3.13.2",
    "3.13.2-alpine",
    "3.13.2-alpine3.21",
    "3.13.1-slim",
    "3.13.1",
    "3.13.0",
    "3.13",
    "3.14.0rc1",
    "3.14.0rc1-slim",
    "3.14.0a7",
    "3.12.9",
    "3",
    "latest",
    "slim",
]

LIBRARY = ["1.2.1", "1.3.0", "1.3.0-rc.1", "1.3.0-rc.2", "1.2.0-beta", "2.0.0-rc.1", "2.0.0", "1.1.9"]
ZERO = ["0.0.1", "0.0.3", "0.0.0", "0.1.0", "0.0.4-rc.1", "0.2.0", "1.0.0"]


def pick(tags: list[str], rng: str, max_new: int = 50, **options: object) -> list[str]:
    return newest_matching(tags, rng, **options)[:max_new]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("tags", "rng", "max_new", "options", "expected"),
    [
        # the cases issue 12 reported
        (LIBRARY, ">=1.2.0 <2.0.0", 2, {}, ["1.3.0", "1.2.1"]),
        (PYTHON, ">=3.13.0 <3.14.0", 3, {}, ["3.13.2", "3.13.1", "3.13.0"]),
        (ZERO, "^0.0", 50, {}, ["0.0.3", "0.0.1", "0.0.0"]),
        # pre-releases: only when a comparator names one of the same MAJOR.MINOR.PATCH
        (LIBRARY, ">=1.3.0-rc.1 <2.0.0", 50, {}, ["1.3.0", "1.3.0-rc.2", "1.3.0-rc.1"]),
        (LIBRARY, ">=1.2.0-alpha <2.0.0", 50, {}, ["1.3.0", "1.2.1", "1.2.0-beta"]),
        # include_prerelease: an explicit <2.0.0 admits 2.0.0-rc.1, a caret's upper bound does not
        (LIBRARY, ">=1.2.0 <2.0.0", 3, {"include_prerelease": True}, ["2.0.0-rc.1", "1.3.0", "1.3.0-rc.2"]),
        (
            LIBRARY,
            "^1.2",
            50,
            {"include_prerelease": True},
            ["1.3.0", "1.3.0-rc.2", "1.3.0-rc.1", "1.2.1", "1.2.0-beta"],
        ),
        (LIBRARY, "*", 50, {}, ["2.0.0", "1.3.0", "1.2.1", "1.1.9"]),
        (PYTHON, "~3.14.0-rc1", 50, {}, ["3.14.0rc1"]),
        (PYTHON, ">=3.14.0-a0", 50, {}, ["3.14.0rc1", "3.14.0a7"]),
        # variants: plain tags unless the variant option names a flavour
        (PYTHON, "^3.13", 50, {"variant": "slim"}, ["3.13.2-slim", "3.13.1-slim"]),
        (PYTHON, "^3.13", 50, {"variant": "slim-bookworm"}, ["3.13.2-slim-bookworm"]),
        (PYTHON, "~3.13.2", 50, {"variant": "alpine3.21"}, ["3.13.2-alpine3.21"]),
        (PYTHON, ">=3.14.0-rc1", 50, {"variant": "slim"}, ["3.14.0rc1-slim"]),
        (
            PYTHON,
            "=3.13.2",
            50,
            {"variant": "*"},
            [
                "3.13.2",
                "3.13.2-alpine",
                "3.13.2-alpine3.21",
                "3.13.2-bookworm",
                "3.13.2-slim",
                "3.13.2-slim-bookworm",
            ],
        ),
        # npm's caret, tilde and x-ranges
        (ZERO, "^0.0.3", 50, {}, ["0.0.3"]),
        (ZERO, "^0.0.x", 50, {}, ["0.0.3", "0.0.1", "0.0.0"]),
        (ZERO, "^0.1", 50, {}, ["0.1.0"]),
        (ZERO, "^0", 50, {}, ["0.2.0", "0.1.0", "0.0.3", "0.0.1", "0.0.0"]),
        (ZERO, "~0", 50, {}, ["0.2.0", "0.1.0", "0.0.3", "0.0.1", "0.0.0"]),
        (ZERO, "~0.0.1", 50, {}, ["0.0.3", "0.0.1"]),
        (PYTHON, "^3.13", 50, {}, ["3.13.2", "3.13.1", "3.13.0", "3.13"]),
        (PYTHON, "~3.13.1", 50, {}, ["3.13.2", "3.13.1"]),
        (PYTHON, "3.12.x", 50, {}, ["3.12.9"]),
        (PYTHON, "3", 50, {}, ["3.13.2", "3.13.1", "3.13.0", "3.13", "3.12.9", "3"]),
        (PYTHON, "=3.13.2 || 3.12", 50, {}, ["3.13.2", "3.12.9"]),
        (PYTHON, ">3.13 <=3.13.9", 50, {}, []),
        (PYTHON, ">3.12", 50, {}, ["3.13.2", "3.13.1", "3.13.0", "3.13"]),
        (PYTHON, "<3.13", 50, {}, ["3.12.9", "3"]),
        (PYTHON, "<=3.13", 50, {}, ["3.13.2", "3.13.1", "3.13.0", "3.13", "3.12.9", "3"]),
        (PYTHON, "3.12 - 3.13.1", 50, {}, ["3.13.1", "3.13.0", "3.13", "3.12.9"]),
        (PYTHON, "3.13.1 - 3.13", 50, {}, ["3.13.2", "3.13.1"]),
        (PYTHON, ">= 3.13.1", 50, {}, ["3.13.2", "3.13.1"]),
        (["v1.4.0", "v1.10.0", "v1.9.2"], "^1.4", 50, {}, ["v1.10.0", "v1.9.2", "v1.4.0"]),
    ],
)
def test_discovery_picks(
    tags: list[str], rng: str, max_new: int, options: dict[str, object], expected: list[str]
) -> None:
    assert pick(tags, rng, max_new, **options) == expected


@pytest.mark.parametrize(
    ("tag", "version"),
    [
        ("3.13.2", TagVersion(3, 13, 2)),
        ("v1.4", TagVersion(1, 4, 0, parts=2)),
        ("20", TagVersion(20, 0, 0, parts=1)),
        ("1.3.0-rc.1", TagVersion(1, 3, 0, ("rc", "1"))),
        ("1.0.0-0.3.7", TagVersion(1, 0, 0, ("0", "3", "7"))),
        ("1.0.0-alpha", TagVersion(1, 0, 0, ("alpha",))),
        ("1.0.0-beta.2", TagVersion(1, 0, 0, ("beta", "2"))),
        ("3.0.0-M1", TagVersion(3, 0, 0, ("M1",))),
        ("3.14.0rc1", TagVersion(3, 14, 0, ("rc1",))),
        ("3.14.0a7", TagVersion(3, 14, 0, ("a7",))),
        ("3.13.2-slim", TagVersion(3, 13, 2, variant="slim")),
        ("3.13.2-slim-bookworm", TagVersion(3, 13, 2, variant="slim-bookworm")),
        ("3.13.2-alpine3.21", TagVersion(3, 13, 2, variant="alpine3.21")),
        ("3.12-dev", TagVersion(3, 12, 0, variant="dev", parts=2)),
        ("1.3.0-rc.1-alpine", TagVersion(1, 3, 0, ("rc", "1"), "alpine")),
        ("3.14.0rc1-slim-bookworm", TagVersion(3, 14, 0, ("rc1",), "slim-bookworm")),
        ("7.2.4-debian-12-r9", TagVersion(7, 2, 4, variant="debian-12-r9")),
        ("latest", None),
        ("slim", None),
        ("1.2.3.4", None),
        ("1.2.3alpine", None),
    ],
)
def test_tags_read_as_version_pre_release_and_variant(tag: str, version: TagVersion | None) -> None:
    assert parse_tag(tag) == version


def test_precedence_follows_semver_with_variants_below_their_plain_release() -> None:
    ascending = [
        "1.0.0-0.3",
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0-rc2",
        "1.0.0-rc10",
        "1.0.0-slim",
        "1.0",
        "1.0.0",
        "1.0.1-alpine",
        "1.0.1",
    ]
    versions = {tag: parse_tag(tag) for tag in ascending}
    assert sorted(ascending, key=lambda t: versions[t].order) == ascending  # type: ignore[union-attr]


def test_parse_version_keeps_the_numbers_only() -> None:
    assert parse_version("v1.2.3-alpine") == (1, 2, 3)
    assert parse_version("20") == (20, 0, 0)
    assert parse_version("latest") is None


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("", "empty semver range"),
        ("||", "empty semver range"),
        (">=", "not a semver comparator"),
        ("1.2.3.4", "not a semver comparator"),
        ("=> 1", "not a semver comparator"),
        ("a || b", "not a semver comparator"),
        ("^1.2-rc.1", "pre-release needs MAJOR.MINOR.PATCH"),
        (">=3.13.0-slim", "image variant, not a semver pre-release"),
    ],
)
def test_bad_ranges_name_the_reason(bad: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_range(bad)


@pytest.mark.parametrize(
    ("variant", "ok"),
    [("slim", True), ("slim-bookworm", True), ("alpine3.21", True), ("*", True), ("rc1", False), ("", False)],
)
def test_variant_names(variant: str, ok: bool) -> None:
    if ok:
        assert check_variant(variant) == variant
    else:
        with pytest.raises(ValueError, match="variant"):
            check_variant(variant)


def test_regex_discovery_orders_versions_numerically_then_by_name() -> None:
    tags = ["v9", "v10", "v9.1", "latest", "nightly-20260102", "nightly-20260103"]
    assert newest_named(tags, r"v\d+(\.\d+)?") == ["v10", "v9.1", "v9"]
    assert newest_named(tags, r"nightly-\d{8}") == ["nightly-20260103", "nightly-20260102"]
    assert newest_named(PYTHON, r"3\.13\.2.*")[0] == "3.13.2"
    assert newest_named(["1.3.0-rc.1", "1.3.0", "1.2.9"], r"1\..*") == ["1.3.0", "1.3.0-rc.1", "1.2.9"]
