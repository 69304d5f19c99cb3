"""A bounded in-memory aggregator of usage records for hosts that want totals without a database."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from .records import Source, UsageRecord

# Enum members as module constants: a class attribute read of an enum member costs about 70 ns.
_UNAVAILABLE = Source.UNAVAILABLE
_ESTIMATED = Source.ESTIMATED


@dataclass(slots=True)
class Totals:
    """Sums over a group of records. Unknown token numbers are not added; ``calls_without_usage`` counts them."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost: float = 0.0
    estimated_calls: int = 0
    calls_without_usage: int = 0
    unpriced_calls: int = 0

    def add(self, record: UsageRecord) -> None:
        """Add one record's numbers."""
        self.calls += 1
        source = record.source
        if source is _UNAVAILABLE:
            self.calls_without_usage += 1
        elif source is _ESTIMATED:
            self.estimated_calls += 1
        self.prompt_tokens += record.prompt_tokens or 0
        self.completion_tokens += record.completion_tokens or 0
        self.total_tokens += record.total_tokens or 0
        self.cached_tokens += record.cached_tokens or 0
        self.reasoning_tokens += record.reasoning_tokens or 0
        if record.cost is None:
            self.unpriced_calls += 1
        else:
            self.cost += record.cost


_scope_keys: dict[int, tuple[Any, Hashable]] = {}  # id(scope mapping) -> (the mapping, its key)
_MAX_CACHED_SCOPE_KEYS = 4096


def _scope_key(record: UsageRecord) -> Hashable:
    """Group key of a record: its scope attributes as a sorted tuple, cached per scope mapping.

    Records of one scope share one mapping object; the cache keeps that object alive so its id cannot
    be reused by another mapping while cached.
    """
    scope = record.scope
    cached = _scope_keys.get(id(scope))
    if cached is not None and cached[0] is scope:
        return cached[1]
    key = tuple(sorted((str(k), str(v)) for k, v in scope.items()))
    if len(_scope_keys) >= _MAX_CACHED_SCOPE_KEYS:
        _scope_keys.clear()
    _scope_keys[id(scope)] = (scope, key)
    return key


class Aggregator:
    """Keeps totals per group and the most recent records, in bounded memory.

    Memory is bounded by ``max_recent`` records plus ``max_groups`` Totals objects, one of which is the
    overflow group (key ``None``). Once ``max_groups - 1`` named groups exist, records of new groups are
    added to the overflow group, so nothing is lost from the grand total.
    Thread-safe. Use ``aggregator.add`` as a listener (``shim.subscribe``).
    """

    def __init__(
        self,
        *,
        max_recent: int = 256,
        max_groups: int = 10_000,
        group_by: Callable[[UsageRecord], Hashable] = _scope_key,
    ) -> None:
        if max_recent < 0 or max_groups < 1:
            raise ValueError(f"max_recent must be >= 0 and max_groups >= 1, got {max_recent} and {max_groups}")
        self._lock = threading.Lock()
        self._acquire = self._lock.acquire
        self._release = self._lock.release
        self._group_by = group_by
        self._max_groups = max_groups
        self._recent: deque[UsageRecord] = deque(maxlen=max_recent)
        self._groups: dict[Hashable, Totals] = {}

    def add(self, record: UsageRecord) -> None:
        """Add a record to its group and the recent list."""
        group_by = self._group_by
        if group_by is _scope_key:
            # The cache hit of _scope_key written out: add runs once per call.
            scope = record.scope
            cached = _scope_keys.get(id(scope))
            key = cached[1] if cached is not None and cached[0] is scope else _scope_key(record)
        else:
            key = group_by(record)
        # acquire/release cost half of what a with-block costs on Python 3.11 (0.07 against 0.15 µs).
        self._acquire()
        try:
            totals = self._groups.get(key)
            if totals is None:
                if len(self._groups) >= self._max_groups - 1:
                    key = None
                    totals = self._groups.get(None)
                if totals is None:
                    totals = self._groups[key] = Totals()
            totals.add(record)
            self._recent.append(record)
        finally:
            self._release()

    __call__ = add

    def total(self) -> Totals:
        """Return the grand total, summed over the groups on each call (``add`` stays cheap)."""
        grand = Totals()
        with self._lock:
            for totals in self._groups.values():
                for name in Totals.__slots__:
                    setattr(grand, name, getattr(grand, name) + getattr(totals, name))
        return grand

    def groups(self) -> dict[Hashable, Totals]:
        """Return copies of the per-group totals."""
        with self._lock:
            return {
                key: Totals(**{name: getattr(t, name) for name in Totals.__slots__}) for key, t in self._groups.items()
            }

    def recent(self) -> list[UsageRecord]:
        """Return the most recent records, oldest first."""
        with self._lock:
            return list(self._recent)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._recent.clear()
            self._groups.clear()


def totals_of(records: Iterable[UsageRecord]) -> Totals:
    """Sum ``records`` into one Totals."""
    totals = Totals()
    for record in records:
        totals.add(record)
    return totals
