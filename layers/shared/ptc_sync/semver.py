"""Semantic versions of container tags, and npm's range grammar, for new-tag discovery.

A tag is ``[v]MAJOR[.MINOR[.PATCH]]`` followed by an optional pre-release and an optional variant:
``3.13.2``, ``v1.4``, ``1.3.0-rc.1``, ``3.14.0rc1``, ``3.13.2-slim-bookworm``, ``3.14.0rc1-alpine``.
Missing parts are 0 (``3.13`` reads as 3.13.0, ordered just below a tag that spells ``3.13.0``).

**Pre-release or variant.** The text after the numbers is split at ``-``. Leading pieces that look
like a pre-release form the pre-release; the first piece that does not, and everything after it, is
the variant (the image flavour). A piece is a pre-release piece when each of its ``.``-separated
identifiers is a number or a pre-release word, optionally followed by digits: alpha, beta, rc,
pre, preview, snapshot, canary, ea, m, a, b (any case). So ``-rc.1``, ``-alpha``, ``-beta.2``,
``-0.3``, ``-M1`` are pre-releases; ``-slim``, ``-alpine3.21``, ``-bookworm``, ``-slim-bookworm``,
``-dev``, ``-windowsservercore-ltsc2022`` are variants; ``-rc.1-alpine`` is both. A pre-release word
may also follow the numbers without a hyphen, as Python's tags spell it (``3.14.0rc1``, ``3.14.0a7``).

**Ordering** (newest first) is semver's precedence: a pre-release sorts below its release, and
pre-release identifiers compare numerically where they are numbers; a mix of letters and digits
compares run by run, so ``rc10`` is above ``rc2``. At equal precedence, the plain tag comes before
its variants.

**Variants.** Discovery looks at one flavour: the plain tags (no variant) unless ``variant`` names
one (``"slim"`` picks ``3.13.2-slim``, not ``3.13.2-slim-bookworm``), or ``"*"`` for every flavour,
each version's plain tag first. So a variant never outranks or ties with its plain release.

**Ranges** are npm's: space-separated comparators are ANDed, ``||`` separates alternatives;
``>=1.2.0 <2.0.0``, ``=1.2.3``, ``1.2.x``, ``*``, ``^1.2``, ``~1.2.3``, hyphen ranges
``1.2 - 1.4``. Caret allows changes that do not modify the left-most non-zero part given
(``^1.2`` = >=1.2.0 <2.0.0, ``^0.2.3`` = >=0.2.3 <0.3.0, ``^0.0.3`` = >=0.0.3 <0.0.4,
``^0.0`` = >=0.0.0 <0.1.0); tilde allows patch changes when a minor is given (``~1.2.3`` =
>=1.2.3 <1.3.0, ``~1`` = >=1.0.0 <2.0.0). As in npm, a pre-release satisfies a range only when a
comparator of the same alternative names a pre-release of the same MAJOR.MINOR.PATCH
(``>=1.3.0-rc.1 <2.0.0`` admits ``1.3.0-rc.2`` but not ``1.4.0-rc.1``), or with
``include_prerelease``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

ANY_VARIANT: Final = "*"

_PRE_WORD: Final = r"(?:alpha|beta|rc|pre|preview|snapshot|canary|ea|m|a|b)\d*"
_PRE_IDENTIFIER: Final = re.compile(rf"(?:\d+|{_PRE_WORD})", re.IGNORECASE)
_GLUED_PRE: Final = r"(?:alpha|beta|rc|preview|pre|a|b)\d*"
TAG_RE: Final = re.compile(
    rf"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?P<glued>{_GLUED_PRE})?(?:-(?P<rest>[0-9A-Za-z][0-9A-Za-z._-]*))?"
    r"(?:\+[0-9A-Za-z.-]+)?$",
    re.IGNORECASE,
)
VARIANT_RE: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
_COMPARATOR_RE: Final = re.compile(
    r"^(?P<op>>=|<=|>|<|=|\^|~>|~)?v?(?P<major>\d+|[xX*])(?:\.(?P<minor>\d+|[xX*]))?"
    r"(?:\.(?P<patch>\d+|[xX*]))?(?:-(?P<pre>[0-9A-Za-z][0-9A-Za-z.-]*))?(?:\+[0-9A-Za-z.-]+)?$"
)
_SPACED_OPERATOR: Final = re.compile(r"(>=|<=|>|<|=|\^|~>|~)\s+")

Core = tuple[int, int, int]
# (major, minor, patch, (1,) for a release or (0, identifier keys...) for a pre-release)
Precedence = tuple[int, int, int, tuple[object, ...]]
_RELEASE: Final[tuple[object, ...]] = (1,)
_FLOOR: Final[tuple[object, ...]] = (0,)  # below every pre-release: npm's "-0"


def _identifier_key(identifier: str) -> tuple[tuple[int, int | str], ...]:
    """Numbers below words; within an identifier, digit runs compare as numbers."""
    return tuple((0, int(run)) if run.isdigit() else (1, run) for run in re.findall(r"\d+|\D+", identifier))


def _pre_key(prerelease: tuple[str, ...]) -> tuple[object, ...]:
    return (0, *(_identifier_key(i) for i in prerelease)) if prerelease else _RELEASE


def _is_prerelease_piece(piece: str) -> bool:
    return all(_PRE_IDENTIFIER.fullmatch(i) for i in piece.split("."))


@dataclass(frozen=True, slots=True)
class TagVersion:
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    variant: str = ""
    parts: int = 3  # how many of major.minor.patch the tag spells

    @property
    def core(self) -> Core:
        return (self.major, self.minor, self.patch)

    @property
    def precedence(self) -> Precedence:
        return (self.major, self.minor, self.patch, _pre_key(self.prerelease))

    @property
    def order(self) -> tuple[Precedence, int, int]:
        """Newest is largest: precedence, then the plain tag above its variants, then the tag that
        spells every part (``3.13.0`` above ``3.13``)."""
        return (self.precedence, 0 if self.variant else 1, self.parts)


def parse_tag(tag: str) -> TagVersion | None:
    """``v1.3.0-rc.1-alpine`` → 1.3.0, pre-release ("rc", "1"), variant "alpine"; None when the tag
    does not start with a version."""
    m = TAG_RE.match(tag)
    if not m:
        return None
    pieces = m.group("rest").split("-") if m.group("rest") else []
    cut = 0
    while cut < len(pieces) and _is_prerelease_piece(pieces[cut]):
        cut += 1
    pre_text = "-".join(filter(None, [m.group("glued"), *pieces[:cut]]))
    numbers = [m.group(1), m.group(2), m.group(3)]
    return TagVersion(
        major=int(numbers[0]),
        minor=int(numbers[1] or 0),
        patch=int(numbers[2] or 0),
        prerelease=tuple(pre_text.split(".")) if pre_text else (),
        variant="-".join(pieces[cut:]),
        parts=sum(1 for n in numbers if n is not None),
    )


def parse_version(tag: str) -> Core | None:
    """``v1.2.3-alpine`` → (1, 2, 3); missing parts are 0; None when the tag is not a version."""
    version = parse_tag(tag)
    return version.core if version else None


def check_variant(variant: str) -> str:
    """A flavour name as ``variant`` takes it (``slim``, ``slim-bookworm``, ``*``); ValueError if not."""
    if variant == ANY_VARIANT:
        return variant
    if not VARIANT_RE.fullmatch(variant):
        raise ValueError(f"not an image variant: {variant!r} (a flavour such as slim or alpine3.21, or *)")
    if _is_prerelease_piece(variant.split("-", 1)[0]):
        raise ValueError(f"{variant!r} reads as a pre-release, not a variant: put it in the semver range")
    return variant


# -- ranges --------------------------------------------------------------------------------------------

_OPERATORS: Final[dict[str, Callable[[Precedence, Precedence], bool]]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "=": operator.eq,
}


@dataclass(frozen=True, slots=True)
class Comparator:
    op: str
    bound: Precedence
    prerelease_core: Core | None = None  # the user wrote a pre-release of this version

    def test(self, version: Precedence) -> bool:
        return _OPERATORS[self.op](version, self.bound)


@dataclass(frozen=True, slots=True)
class Range:
    """Alternatives (``||``), each a conjunction of comparators; an empty conjunction admits all."""

    alternatives: tuple[tuple[Comparator, ...], ...]
    include_prerelease: bool = False

    def admits(self, version: TagVersion) -> bool:
        return any(self._admitted_by(group, version) for group in self.alternatives)

    def _admitted_by(self, group: tuple[Comparator, ...], version: TagVersion) -> bool:
        if not all(c.test(version.precedence) for c in group):
            return False
        if not version.prerelease or self.include_prerelease:
            return True
        return any(c.prerelease_core == version.core for c in group)

    def __call__(self, version: TagVersion) -> bool:
        return self.admits(version)


def _at(core: Core, pre: tuple[object, ...] = _RELEASE) -> Precedence:
    return (core[0], core[1], core[2], pre)


def _partial(token: str) -> tuple[str, list[int], tuple[str, ...]]:
    """An operator, the given numbers up to the first wildcard, and a pre-release (full versions only)."""
    m = _COMPARATOR_RE.match(token)
    if not m:
        raise ValueError(f"not a semver comparator: {token!r}")
    given: list[int] = []
    for part in (m.group("major"), m.group("minor"), m.group("patch")):
        if part is None or not part.isdigit():
            break
        given.append(int(part))
    pre = m.group("pre")
    if pre and len(given) < 3:
        raise ValueError(f"a pre-release needs MAJOR.MINOR.PATCH: {token!r}")
    if pre and not all(_is_prerelease_piece(p) for p in pre.split("-")):
        raise ValueError(
            f"{token!r}: -{pre} is an image variant, not a semver pre-release; give it as the variant option"
        )
    return m.group("op") or "=", given, tuple(pre.split(".")) if pre else ()


def _bump(given: list[int]) -> Core:
    """The first version past every version that shares the given parts (``1.2`` → 1.3.0)."""
    padded = [*given, 0, 0, 0]
    if len(given) == 1:
        return (given[0] + 1, 0, 0)
    return (padded[0], padded[1] + 1, 0)


def _caret_high(given: list[int]) -> Core:
    major, minor, patch = [*given, 0, 0, 0][:3]
    if major > 0 or len(given) == 1:
        return (major + 1, 0, 0)
    if minor > 0 or len(given) == 2:
        return (0, minor + 1, 0)
    return (0, 0, patch + 1)


def _desugar(token: str, *, include_prerelease: bool) -> list[Comparator]:
    op, given, pre = _partial(token)
    if not given:  # *, x, >=*, ^*: anything; >* and <*: nothing
        return [Comparator("<", _at((0, 0, 0), _FLOOR))] if op in (">", "<") else []
    padded = [*given, 0, 0, 0]
    low_core: Core = (padded[0], padded[1], padded[2])
    named = low_core if pre else None
    if len(given) == 3 and op in _OPERATORS:
        return [Comparator(op, _at(low_core, _pre_key(pre)), named)]
    # npm's "-0": with include_prerelease a wildcard's lower bound admits the pre-releases at it
    low_pre = _pre_key(pre) if len(given) == 3 else (_FLOOR if include_prerelease else _RELEASE)
    low = Comparator(">=", _at(low_core, low_pre), named)
    below_next = Comparator("<", _at(_bump(given), _FLOOR))
    tilde = [low, Comparator("<", _at(_bump(given[:2]), _FLOOR))]
    desugared = {
        "=": [low, below_next],  # 1.2 = 1.2.x
        "~": tilde,
        "~>": tilde,
        "^": [low, Comparator("<", _at(_caret_high(given), _FLOOR))],
        ">=": [low],
        ">": [Comparator(">=", _at(_bump(given), low_pre))],  # >1.2 = >=1.3.0
        "<": [Comparator("<", _at(low_core, _FLOOR))],  # <1.2 = <1.2.0-0
        "<=": [below_next],  # <=1.2 = <1.3.0-0
    }
    return desugared[op]


def _hyphen(low: str, high: str, *, include_prerelease: bool) -> list[Comparator]:
    """``1.2 - 2.3.4`` = >=1.2.0 <=2.3.4; a partial upper end covers what it names (``- 2.3`` = <2.4.0)."""
    lower = _desugar(f">={low.lstrip('=')}", include_prerelease=include_prerelease)
    _, given, _ = _partial(high)
    upper = _desugar(f"<={high.lstrip('=')}", include_prerelease=include_prerelease) if given else []
    return [*lower, *upper]


def parse_range(text: str, *, include_prerelease: bool = False) -> Range:
    """An npm range; ValueError naming the bad part."""
    alternatives: list[tuple[Comparator, ...]] = []
    for alt in text.split("||"):
        tokens = _SPACED_OPERATOR.sub(r"\1", alt.strip()).split()
        if not tokens:
            raise ValueError(f"empty semver range in {text!r}")
        if len(tokens) == 3 and tokens[1] == "-":
            group = _hyphen(tokens[0], tokens[2], include_prerelease=include_prerelease)
        else:
            group = [c for t in tokens for c in _desugar(t, include_prerelease=include_prerelease)]
        alternatives.append(tuple(group))
    return Range(tuple(alternatives), include_prerelease)


# -- discovery -----------------------------------------------------------------------------------------


def _flavour(variant: str | None) -> Callable[[TagVersion], bool]:
    if variant == ANY_VARIANT:
        return lambda _: True
    wanted = variant or ""
    return lambda v: v.variant == wanted


def _newest_first(versions: Iterable[tuple[TagVersion, str]]) -> list[str]:
    by_name = sorted(versions, key=lambda vt: vt[1])  # equal versions: variants by name
    return [tag for _, tag in sorted(by_name, key=lambda vt: vt[0].order, reverse=True)]


def newest_matching(
    tags: Iterable[str], text: str, *, variant: str | None = None, include_prerelease: bool = False
) -> list[str]:
    """Tags of the wanted flavour whose version is in the range, newest first (see the module doc)."""
    match = parse_range(text, include_prerelease=include_prerelease)
    flavour = _flavour(check_variant(variant) if variant else None)
    found = [(v, tag) for tag in tags if (v := parse_tag(tag)) is not None and flavour(v) and match(v)]
    return _newest_first(found)


def newest_named(tags: Iterable[str], pattern: str) -> list[str]:
    """Tags matching the regex ``pattern`` in full, newest first: by version where the tag is one
    (``v10`` before ``v9``, ``3.13.2`` before ``3.13.2-slim`` and ``3.13.2-rc.1``), then by name
    (``nightly-20260103`` before ``nightly-20260102``)."""
    compiled = re.compile(pattern)
    matching = [t for t in tags if compiled.fullmatch(t)]

    def key(tag: str) -> tuple[int, tuple[Precedence, int, int] | tuple[()], str]:
        version = parse_tag(tag)
        return (1, version.order, tag) if version else (0, (), tag)

    return sorted(matching, key=key, reverse=True)
