# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Where the multus-service binaries come from (plugins/plugin_utils/mservice.py): the clone's
build, or prebuilt in $GOPATH/bin as xcluster's tar takes them; the rule, the default
directory, what a real directory holds, and the messages (host, value, what is expected)."""

from __future__ import annotations

import os

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.xcluster.multus.plugins.filter.multus_service_source import FilterModule
from ansible_collections.xcluster.multus.plugins.plugin_utils import mservice as m

BOTH = {"multus-proxy": "ok", "multus-service-controller": "ok"}
ONE = {"multus-proxy": "ok", "multus-service-controller": "missing"}
GOBIN = "/home/u/go/bin"


def test_default_dir_is_gopath_bin():
    assert m.default_prebuilt_dir("/g", "/home/u") == "/g/bin"
    assert m.default_prebuilt_dir("/g1:/g2", "/home/u") == "/g1/bin"  # go install's: the first
    assert m.default_prebuilt_dir("", "/home/u") == "/home/u/go/bin"  # go's default GOPATH
    assert m.default_prebuilt_dir("", "") == ""


@pytest.mark.parametrize(
    ("source", "src_dir", "states", "want"),
    [
        ("auto", "/src/ms", BOTH, "clone"),  # a clone given wins
        ("auto", "/src/ms", {}, "clone"),
        ("auto", "", BOTH, "prebuilt"),
        ("auto", "", ONE, "none"),
        ("auto", "", {}, "none"),
        ("clone", "/src/ms", BOTH, "clone"),
        ("prebuilt", "/src/ms", BOTH, "prebuilt"),
    ],
)
def test_the_rule(source, src_dir, states, want):
    out = m.select(source, src_dir, GOBIN, states, "vm-001")
    assert out["source"] == want
    assert (out["problem"] is None) == (want != "none")


def test_what_each_source_gives():
    c = m.select("auto", "/src/ms", GOBIN, BOTH)
    assert c == {
        "source": "clone",
        "dir": "/src/ms",
        "binaries": {},
        "report": "built from the clone /src/ms",
        "problem": None,
    }
    p = m.select("auto", "", GOBIN, BOTH)
    assert p["binaries"] == {
        "multus-proxy": "/home/u/go/bin/multus-proxy",
        "multus-service-controller": "/home/u/go/bin/multus-service-controller",
    }
    assert p["report"] == "prebuilt from /home/u/go/bin" and p["dir"] == GOBIN


def test_problems_name_host_value_and_expected():
    p = m.select("prebuilt", "", GOBIN, ONE, "vm-002")
    assert p["source"] == "prebuilt"
    assert p["problem"].startswith(
        "host vm-002: multus_service_source is prebuilt, multus_service_prebuilt_dir"
    )
    assert "/home/u/go/bin/multus-service-controller missing" in p["problem"]
    assert "expected both binaries there and executable" in p["problem"]
    c = m.select("clone", "", GOBIN, BOTH, "vm-002")
    assert "host vm-002: multus_service_source is clone but multus_service_src_dir is empty" in c["problem"]
    n = m.select("auto", "", GOBIN, ONE, "vm-003")
    assert "host vm-003: no multus-service source" in n["problem"]
    assert "/home/u/go/bin/multus-proxy ok, /home/u/go/bin/multus-service-controller missing" in n["problem"]
    assert "go install ./cmd/..." in n["problem"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("maybe", "", GOBIN),
            r"host vm-001: multus_service_source is \"maybe\"; expected one of auto, clone, prebuilt",
        ),
        (
            ("auto", "", "go/bin"),
            r"host vm-001: multus_service_prebuilt_dir is \"go/bin\"; expected an absolute path",
        ),
        (("auto", None, GOBIN), r"host vm-001: multus_service_src_dir is null; expected a path"),
    ],
)
def test_bad_values_raise(args, message):
    with pytest.raises(m.MserviceError, match=message):
        m.select(*args, {}, "vm-001")


def test_probe_reads_a_real_directory(tmp_path):
    assert m.probe(str(tmp_path)) == {"multus-proxy": "missing", "multus-service-controller": "missing"}
    (tmp_path / "multus-proxy").write_text("#!/bin/sh\n")
    os.chmod(tmp_path / "multus-proxy", 0o755)
    (tmp_path / "multus-service-controller").write_text("#!/bin/sh\n")
    os.chmod(tmp_path / "multus-service-controller", 0o644)
    assert m.probe(str(tmp_path)) == {"multus-proxy": "ok", "multus-service-controller": "not executable"}
    os.remove(tmp_path / "multus-service-controller")
    (tmp_path / "multus-service-controller").mkdir()
    assert m.probe(str(tmp_path))["multus-service-controller"] == "not a regular file"


def test_the_filter_over_a_gopath(tmp_path):
    f = FilterModule().filters()["multus_service_source"]
    gobin = tmp_path / "bin"
    gobin.mkdir()
    assert f("", gopath=str(tmp_path), home="/nonexistent")["source"] == "none"
    with pytest.raises(
        AnsibleFilterError, match=r"multus_service_source: host vm-001: no multus-service source"
    ):
        f("", gopath=str(tmp_path), required=True, host="vm-001")
    for name in m.BINARIES:
        (gobin / name).write_text("#!/bin/sh\n")
        os.chmod(gobin / name, 0o755)
    out = f("", gopath=str(tmp_path), required=True)
    assert out["source"] == "prebuilt" and out["dir"] == str(gobin)
    # an explicit directory beats the GOPATH; a clone beats both
    assert f("", prebuilt_dir="/nonexistent", gopath=str(tmp_path))["source"] == "none"
    assert f("/src/ms", gopath=str(tmp_path))["source"] == "clone"
