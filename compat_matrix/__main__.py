"""Entry point of ``python -m compat_matrix``."""

from .cli import main

raise SystemExit(main())
