"""`make demo` keeps working: it refreshes what changed upstream, then finds everything fresh,
and leaves no registry process behind."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_demo_runs_end_to_end() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "testbed.demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "{'fresh': 2, 'refreshed': 3, 'upstream_missing': 1}" in out
    assert "ptc-sync: 3 tags refreshed, 1 missing upstream" in out
    second = out.split("=== second run: everything fresh ===", 1)[1]
    assert "{'fresh': 6}" in second
    assert "SNS: nothing published" in second
    pid = int(out.split("docker-registry pid ", 1)[1].split()[0])
    alive = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True, check=False)
    assert alive.stdout.strip() == "", "the demo's registry is stopped"
