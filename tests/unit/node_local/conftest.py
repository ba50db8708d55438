"""Puts the checkout's collections/ on sys.path before the test modules import the plugins."""

import nodelocal_cases  # noqa: F401  (the import does it)
