"""Just enough semantic versioning for new-tag discovery: parse tags like ``v1.2.3`` or
``3.13.1-slim`` and match ranges like ``>=3.13.0 <3.14.0``, ``^1.4``, ``~2.1.0``, ``1.x``.

A range is a space-separated AND of comparators; ``||`` separates alternatives. A tag's suffix after
``-`` (``-slim``, ``-alpine``) is ignored for ordering and must match the range's own suffix policy
through the caller's regex if it matters.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

VERSION_RE: Final = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:[-+].*)?$")
COMPARATOR_RE: Final = re.compile(r"^(>=|<=|>|<|=|\^|~)?v?(\d+|x|\*)(?:\.(\d+|x|\*))?(?:\.(\d+|x|\*))?$")

Version = tuple[int, int, int]
Predicate = Callable[[Version], bool]


def parse_version(tag: str) -> Version | None:
    """``v1.2.3-alpine`` → (1, 2, 3); missing parts are 0; None when the tag is not a version."""
    m = VERSION_RE.match(tag)
    if not m:
        return None
    return (int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0))


def _caret_high(low: Version) -> Version:
    if low[0] > 0:
        return (low[0] + 1, 0, 0)
    if low[1] > 0:
        return (0, low[1] + 1, 0)
    return (0, 0, low[2] + 1)


def _comparator(token: str) -> Predicate:
    m = COMPARATOR_RE.match(token)
    if not m:
        raise ValueError(f"not a semver comparator: {token!r}")
    op = m.group(1) or "="
    given = [int(p) for p in (m.group(2), m.group(3), m.group(4)) if p is not None and p not in ("x", "*")]
    n = len(given)
    padded = [*given, 0, 0, 0]
    low: Version = (padded[0], padded[1], padded[2])
    if (op == "=" and n < 3) or (op == "~" and n < 2):
        op = "x"  # 1.x, 1.2, ~1: every version sharing the given parts
    checks: dict[str, Predicate] = {
        ">=": lambda v: v >= low,
        ">": lambda v: v > low,
        "<=": lambda v: v <= low,
        "<": lambda v: v < low,
        "=": lambda v: v == low,
        "x": lambda v: v[:n] == low[:n],
        "^": lambda v: low <= v < _caret_high(low),
        "~": lambda v: low <= v < (low[0], low[1] + 1, 0),
    }
    return checks[op]


def parse_range(text: str) -> Predicate:
    alternatives = [alt.split() for alt in text.split("||")]
    if not text.strip() or any(not alt for alt in alternatives):
        raise ValueError(f"empty semver range in {text!r}")
    groups = [[_comparator(token) for token in alt] for alt in alternatives]
    return lambda v: any(all(pred(v) for pred in group) for group in groups)


def newest_matching(tags: list[str], text: str) -> list[str]:
    """Tags whose version is in the range, newest first."""
    match = parse_range(text)
    versions = [(v, tag) for tag in tags if (v := parse_version(tag)) is not None and match(v)]
    return [tag for _, tag in sorted(versions, reverse=True)]


def newest_named(tags: list[str], pattern: str) -> list[str]:
    """Tags matching the regex ``pattern`` in full, newest first: by version where the tag is one
    (``v10`` before ``v9``), then by name (``nightly-20260103`` before ``nightly-20260102``)."""
    compiled = re.compile(pattern)
    matching = [t for t in tags if compiled.fullmatch(t)]
    return sorted(matching, key=lambda t: (parse_version(t) or (-1, -1, -1), t), reverse=True)
