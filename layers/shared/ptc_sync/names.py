"""Names: the one rule for a repository name, a tag and an image reference, used everywhere.

- A repository name follows ECR's own rule, the ``RepositoryName`` shape of the ECR service model
  (botocore ``data/ecr/2015-09-21/service-2.json``: the pattern below, 2 to 256 characters). It is
  the OCI distribution grammar, so it also holds for the upstream repository a cached one maps to
  (``is_upstream_repository``: the same, but one character is enough).
- A tag follows the reference grammar (``[\\w][\\w.-]{0,127}``).
- An image reference on the command line or in the pre-warm list is ``REPOSITORY[:TAG]`` of a cached
  repository: never a URL, a registry host or a digest (the upstream host comes from the rule).

None of them admits a glob character, so a name used as a scope pattern matches exactly itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

# botocore's ECR model, shape RepositoryName, character for character (tests/fast/test_names.py
# reads the installed model and compares)
ECR_REPOSITORY_PATTERN: Final = r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*"
REPOSITORY_MIN: Final = 2
REPOSITORY_MAX: Final = 256
# anchored: pydantic (and re.search) would otherwise accept a name containing a valid one
REPOSITORY_PATTERN: Final = rf"^(?:{ECR_REPOSITORY_PATTERN})$"
REPOSITORY_RE: Final = re.compile(REPOSITORY_PATTERN)

TAG_PATTERN: Final = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
TAG_RE: Final = re.compile(TAG_PATTERN)


def is_repository_name(name: str) -> bool:
    """Whether ``name`` is a repository name ECR accepts."""
    return REPOSITORY_MIN <= len(name) <= REPOSITORY_MAX and REPOSITORY_RE.fullmatch(name) is not None


def is_upstream_repository(path: str) -> bool:
    """Whether ``path`` is an upstream repository: the same grammar, without ECR's 2-character minimum
    (``quay/x`` is a valid cached name, and upstream it is ``x``)."""
    return len(path) <= REPOSITORY_MAX and REPOSITORY_RE.fullmatch(path) is not None


def is_tag(tag: str) -> bool:
    return TAG_RE.fullmatch(tag) is not None


@dataclass(frozen=True, slots=True)
class ImageName:
    """A cached image named by repository and, when given, tag."""

    repository: str
    tag: str | None

    def __str__(self) -> str:
        return f"{self.repository}:{self.tag}" if self.tag else self.repository


class ImageNameError(ValueError):
    """Not ``REPOSITORY[:TAG]`` of a cached repository. ``host_like``: the text looks like it starts
    with a registry host (or is a URL), so the caller may say where the upstream host comes from."""

    def __init__(self, message: str, *, host_like: bool = False) -> None:
        super().__init__(message)
        self.host_like = host_like


def looks_like_host(repository: str) -> bool:
    first = repository.split("/", 1)[0]
    return "." in first or ":" in first or first == "localhost"


def parse_image(text: str) -> ImageName:
    """``REPO[:TAG]`` of a cached repository in ECR (surrounding blanks ignored); ImageNameError else."""
    raw = text.strip()
    if "://" in raw:
        raise ImageNameError(f"{raw!r} is a URL", host_like=True)
    if "@" in raw:
        raise ImageNameError(
            f"{raw!r}: give REPO:TAG (the cache imports and refreshes by tag, not by digest)"
        )
    head, _, last = raw.rpartition("/")
    repository, tag = raw, None
    if ":" in last:
        name, _, tag = last.partition(":")
        repository = f"{head}/{name}" if head else name
    if not is_repository_name(repository):
        raise ImageNameError(
            f"{repository[:300]!r} is not an ECR repository name", host_like=looks_like_host(repository)
        )
    if tag is not None and not is_tag(tag):
        raise ImageNameError(f"{tag[:300]!r} is not an image tag")
    return ImageName(repository, tag)


def parse_tagged_image(text: str) -> tuple[str, str]:
    """``docker-hub/library/python:3.13-slim`` → (repository, tag): ``parse_image`` with the tag required."""
    name = parse_image(text)
    if name.tag is None:
        raise ImageNameError(f"{text.strip()[:300]!r}: give REPOSITORY:TAG (no host, no digest)")
    return name.repository, name.tag
