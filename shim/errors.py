"""Logging of errors the shim catches and swallows, once per kind."""

from __future__ import annotations

import logging

from .runtime import RUNTIME

logger = logging.getLogger("token_meter.shim")


def report_error(where: str, exc: BaseException) -> None:
    """Count an error caught inside the shim and log it the first time its kind appears.

    A kind is the pair (where, exception type). Later occurrences are only counted; the count is
    available from ``error_counts()``. The message carries the exception text, never prompt data.
    """
    key = (where, type(exc).__name__)
    counts = RUNTIME.error_counts
    seen = counts.get(key, 0)
    counts[key] = seen + 1
    if seen == 0:
        logger.warning(
            "token_meter shim: %s failed with %s: %s (logged once; later failures of this kind are counted)",
            where,
            type(exc).__name__,
            exc,
        )


def error_counts() -> dict[tuple[str, str], int]:
    """Return a copy of the counts of swallowed errors, keyed by (where, exception type)."""
    return dict(RUNTIME.error_counts)
