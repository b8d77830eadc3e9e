"""Attach every live node's log tails to a failed multi-host test's report."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.harness import LIVE


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and LIVE:
        for cluster in LIVE:
            try:
                report.sections.append((f"node logs {cluster.name}", cluster.log_tails()))
            except Exception as exc:  # a dead engine must not hide the real failure
                report.sections.append((f"node logs {cluster.name}", f"unavailable: {exc}"))
