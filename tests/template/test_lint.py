"""The template passes cfn-lint (with the SAM transform) as shipped and with the optional parts on.

`sam validate` takes no parameter values, so each variant is the template with other defaults:
cfn-lint then checks the rules, templates and notifier with the values a deploy would give them.
`sam validate --lint` itself (what `make validate` and CI run) runs once on the shipped template.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cfnlint.api import lint

from .cfn import TEMPLATE, load_template
from .test_resources import ALL_RULES, EVERYTHING_ON

VARIANTS = {
    "shipped": {},
    "everything-on": {**EVERYTHING_ON, "CheckerConcurrency": "100 reserved", "RulePrefixes": "docker-hub"},
    "rules-with-root-template": {**ALL_RULES, "RepositoryCreationTemplates": "ROOT,9999,1"},
    "root-template-only": {"RepositoryCreationTemplates": "ROOT", "ScheduleExpression": "disabled"},
    "minimum-concurrency-hourly": {"CheckerConcurrency": "2", "ScheduleExpression": "rate(1 hour)"},
}


def variant(overrides: dict[str, str]) -> str:
    template = copy.deepcopy(load_template())
    for name, value in overrides.items():
        template["Parameters"][name]["Default"] = value
    return json.dumps(template)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_cfn_lint_finds_nothing(name: str) -> None:
    matches = lint(variant(VARIANTS[name]), regions=["us-east-1", "eu-west-1"])
    assert [str(m) for m in matches] == []


def _sam() -> str | None:
    local = Path(sys.executable).parent / "sam"
    return str(local) if local.exists() else shutil.which("sam")


@pytest.mark.slow
def test_sam_validate_lint_passes() -> None:
    sam = _sam()
    if sam is None:
        pytest.skip("sam CLI not installed")
    result = subprocess.run(
        [sam, "validate", "--lint", "--region", "us-east-1", "--template", str(TEMPLATE)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=TEMPLATE.parent,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr
