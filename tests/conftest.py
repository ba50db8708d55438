"""The tests' shared fixtures (the cases they use are in tests/helpers/, on pytest's pythonpath)."""

from __future__ import annotations

import pytest
from artifact_cases import Server, make_archives
from gobuild_cases import GO, go_env, make_tiny_clone


@pytest.fixture
def tiny_clone(tmp_path):
    if GO is None:
        pytest.skip("the go command is needed (/usr/local/go/bin/go)")
    return make_tiny_clone(tmp_path / "clone")


@pytest.fixture
def build_env():
    return go_env()


# ---------------------------------------------------------------- artifacts (artifact_cases.py)


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    """Real archives in upstream layouts; returns {name: (path, sha256)}."""
    return make_archives(tmp_path_factory.mktemp("archives"))


@pytest.fixture
def server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving tmp_path/www (server.dir), counting GETs."""
    d = tmp_path / "www"
    d.mkdir()
    s = Server(str(d))
    s.dir = str(d)
    yield s
    s.close()
