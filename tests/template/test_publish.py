"""The Serverless Application Repository metadata is what ``sam publish`` (CreateApplication) accepts:
each field against the limits and patterns AWS publishes in the service model (botocore's copy of
the serverlessrepo API, read here, not restated)."""

from __future__ import annotations

import gzip
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import botocore
import pytest

from .cfn import TEMPLATE, load_template

METADATA: dict[str, Any] = load_template()["Metadata"]["AWS::ServerlessRepo::Application"]
MODEL = Path(botocore.__file__).parent / "data" / "serverlessrepo" / "2017-09-08" / "service-2.json.gz"
# semver.org's own regular expression for a version
SEMVER = (
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?"
)


@cache
def published_rules() -> dict[str, dict[str, Any]]:
    """CreateApplication's documented constraints per member: pattern, min and max length, max count."""
    with gzip.open(MODEL, "rt") as fh:
        members = json.load(fh)["shapes"]["CreateApplicationInput"]["members"]
    rules: dict[str, dict[str, Any]] = {}
    for name, member in members.items():
        doc = member.get("documentation", "")
        found: dict[str, Any] = {}
        if m := re.search(r'Pattern:? \\?"(.+?)\\?";', doc):
            found["pattern"] = m.group(1).replace("\\\\", "\\")
        if m := re.search(r"Minimum length=(\d+)", doc):
            found["min"] = int(m.group(1))
        if m := re.search(r"Maximum length=(\d+)", doc):
            found["max"] = int(m.group(1))
        if m := re.search(r"Maximum number of labels: (\d+)", doc):
            found["count"] = int(m.group(1))
        rules[name] = found
    return rules


def test_the_model_publishes_the_patterns_this_test_relies_on() -> None:
    rules = published_rules()
    assert rules["Author"] == {"pattern": "^[a-z0-9](([a-z0-9]|-(?!-))*[a-z0-9])?$", "min": 1, "max": 127}
    assert rules["Name"]["pattern"] == "[a-zA-Z0-9\\-]+"
    assert rules["Description"] == {"min": 1, "max": 256}
    assert rules["Labels"]["count"] == 10


@pytest.mark.parametrize("field", ["Author", "Name", "Description"])
def test_text_fields_fit_the_published_rules(field: str) -> None:
    value, rule = METADATA[field], published_rules()[field]
    assert rule["min"] <= len(value) <= rule["max"], (field, len(value))
    if "pattern" in rule:
        assert re.fullmatch(rule["pattern"], value), f"{field} {value!r} does not match {rule['pattern']}"


def test_the_old_author_would_have_been_refused() -> None:
    assert not re.fullmatch(published_rules()["Author"]["pattern"], "ptc-sync maintainers")


def test_labels_fit_the_published_rules() -> None:
    rule, labels = published_rules()["Labels"], METADATA["Labels"]
    assert 1 <= len(labels) <= rule["count"]
    for label in labels:
        assert rule["min"] <= len(label) <= rule["max"]
        assert re.fullmatch(rule["pattern"], label), label


def test_version_license_and_links() -> None:
    assert re.fullmatch(SEMVER, METADATA["SemanticVersion"])
    assert METADATA["SpdxLicenseId"] == "Apache-2.0"
    root = TEMPLATE.parent
    for field in ("LicenseUrl", "ReadmeUrl"):  # local files that sam package uploads
        assert (root / METADATA[field]).is_file(), field
    assert "Apache License" in (root / METADATA["LicenseUrl"]).read_text()
    for field in ("HomePageUrl", "SourceCodeUrl"):
        assert re.fullmatch(r"https://\S+", METADATA[field]), field
