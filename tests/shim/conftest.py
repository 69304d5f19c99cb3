"""Fixtures for the shim's contract tests: an installed shim and a record collector."""

from __future__ import annotations

import gc
import os
import threading
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import pytest  # noqa: E402

import shim  # noqa: E402


class RecordCollector:
    """Listener that stores every UsageRecord; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records: list[shim.UsageRecord] = []

    def __call__(self, record: shim.UsageRecord) -> None:
        with self._lock:
            self.records.append(record)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[shim.UsageRecord]:
        """Wait until ``count`` records arrived (running the garbage collector meanwhile); return them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.records) >= count:
                    return list(self.records)
            gc.collect()
            time.sleep(0.01)
        with self._lock:
            raise AssertionError(f"expected {count} records within {timeout} s, got {len(self.records)}")

    def only(self) -> shim.UsageRecord:
        """Return the single record, failing when there is not exactly one."""
        self.wait_for(1)
        time.sleep(0.02)
        with self._lock:
            assert len(self.records) == 1, f"expected exactly one record, got {len(self.records)}"
            return self.records[0]


@pytest.fixture
def records():
    """Install the shim, collect its records, and uninstall afterwards."""
    collector = RecordCollector()
    gc.collect()  # finalise streams left over from earlier tests before this test's listener subscribes
    report = shim.install()
    assert report.ok, report
    key = shim.subscribe(collector, key="tests.records")
    try:
        yield collector
    finally:
        shim.unsubscribe(key)
        shim.uninstall()
        shim.configure(request_stream_usage=False, estimate=True, drain_abandoned=False)
