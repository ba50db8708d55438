"""Fixtures of the go_build / whereabouts / multus_service tests (cases in gobuild_cases.py)."""

from __future__ import annotations

import pytest
from gobuild_cases import GO, go_env, make_tiny_clone


@pytest.fixture
def tiny_clone(tmp_path):
    if GO is None:
        pytest.skip("the go command is needed (/usr/local/go/bin/go)")
    return make_tiny_clone(tmp_path / "clone")


@pytest.fixture
def build_env():
    return go_env()
