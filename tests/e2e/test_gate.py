"""The end-to-end suite runs only when asked for in every way at once (not itself an e2e test: it runs
in ``make test``)."""

from __future__ import annotations

import pytest

from tests.e2e.gate import skip_reason

ASKED = {"PTC_E2E_CONFIRM": "yes", "AWS_ACCESS_KEY_ID": "testing"}


@pytest.mark.parametrize(
    ("markexpr", "environ", "reason"),
    [
        ("e2e", {**ASKED, "CI": "true"}, "never runs in CI"),
        ("e2e", {**ASKED, "GITHUB_ACTIONS": "true"}, "never runs in CI"),
        ("", ASKED, "opt-in, run `make e2e`"),
        ("not e2e", ASKED, "opt-in"),
        ("e2e", {}, "PTC_E2E_CONFIRM=yes"),
        ("e2e", {"PTC_E2E_CONFIRM": "y"}, "PTC_E2E_CONFIRM=yes"),
        ("e2e", ASKED, "no AWS credentials"),  # the test suite's fake ones do not count
    ],
)
def test_every_way_of_not_asking_skips_with_one_line(
    markexpr: str, environ: dict[str, str], reason: str
) -> None:
    found = skip_reason(markexpr, environ)
    assert reason in found
    assert "\n" not in found
    assert found.startswith("e2e: ")
