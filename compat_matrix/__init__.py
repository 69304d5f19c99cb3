"""Compatibility suite of Token Meter: runs the shim's tests across litellm and wrapt versions.

Run it with ``python -m compat_matrix`` (see ``--help``) or ``./scripts/suite``.
"""
