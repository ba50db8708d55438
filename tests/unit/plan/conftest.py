"""Puts the checkout's collections/ on sys.path before the test modules import the plugins."""

import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[3]
COLLECTIONS = REPO / "collections"
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))
