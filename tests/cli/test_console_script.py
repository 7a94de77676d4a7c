"""The installed console script (``.venv/bin/ptc-sync``) as an operator runs it, against the testbed.

The subprocess talks to the moto server of this test process (where the pull-through cache emulator
is installed) and to the loopback registry, through the testbed options only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ptc_sync.refresh import is_backup_tag
from tests.cli.conftest import Bed

SCRIPT = Path(sys.executable).with_name("ptc-sync")


def ptc_sync(*args: str) -> subprocess.CompletedProcess[str]:
    assert SCRIPT.exists(), f"{SCRIPT} is missing: pip install -e . declares it"
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=120, check=False)


def test_console_script_checks_then_refreshes_with_script_friendly_exit_codes(
    bed: Bed, unique_repo: str
) -> None:
    name = f"ecr-public/{unique_repo}"
    bed.pusher.push_image(unique_repo, "v")
    bed.cache(name, "v")
    new = bed.pusher.push_image(unique_repo, "v")

    check = ptc_sync(*bed.aws_args, "--output", "json", "check")
    assert check.returncode == 1, check.stderr
    doc = json.loads(check.stdout)
    assert doc["summary"] == {"stale": 1}
    assert doc["tags"][0]["upstream_digest"] == new.digest

    refresh = ptc_sync("refresh", f"{name}:v", *bed.aws_args)
    assert refresh.returncode == 0, refresh.stderr
    assert refresh.stdout.splitlines()[1].startswith("refreshed")
    tags = bed.tags(name)
    assert tags["v"] == new.digest
    assert any(is_backup_tag(t) for t in tags)

    again = ptc_sync("check", *bed.aws_args)
    assert again.returncode == 0, again.stderr
    assert "1 tag: 1 fresh" in again.stdout

    refused = ptc_sync("warm", "registry-1.docker.io/library/alpine:3.20", *bed.aws_args)
    assert refused.returncode == 2
    assert "not under any pull-through cache rule" in refused.stderr
