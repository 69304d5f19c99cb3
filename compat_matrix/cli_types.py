"""argparse value types shared by the suite's command lines."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """Parse an int of 1 or more; raise ArgumentTypeError otherwise."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def positive_float(text: str) -> float:
    """Parse a float above 0; raise ArgumentTypeError otherwise."""
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {value}")
    return value
