"""The opt-in end-to-end suite (docs/e2e.md): it deploys a stack to a real AWS account, so it runs only
when asked for in every way at once, and says in one line why it did not run otherwise.

``make e2e`` runs ``pytest -m e2e --confcutdir=tests/e2e tests/e2e``: the marker selects it, and
``--confcutdir`` keeps tests/conftest.py (which replaces the environment's AWS credentials with fake
ones for every other test) out of it. It also needs ``PTC_E2E_CONFIRM=yes``, real credentials and a
region, and never runs in CI.
"""

from __future__ import annotations

import os

import pytest

from tests.e2e.gate import skip_reason


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = skip_reason(str(config.getoption("markexpr", "") or ""), os.environ)
    if not reason:
        return
    for item in items:
        if item.get_closest_marker("e2e") is not None:
            item.add_marker(pytest.mark.skip(reason=reason))
