"""The node-local script substitutes exactly as the node_subst filter does.

The script runs for real (busybox sh, dash) with NODE_LOCAL_HOST_LOCAL=/bin/cat: cat is the
stand-in for host-local here (the only test double), it prints the config host-local would get.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from ansible_collections.xcluster.multus.plugins.filter.node_subst import FilterModule
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nodelocal_cases import TEMPLATES, TRICKY, file_text, have, plugin_config, run_script

pytestmark = pytest.mark.skipif(not have("jq", "busybox", "dash"), reason="needs jq, busybox and dash")

node_subst = FilterModule().filters()["node_subst"]
STAND_IN = "/bin/cat"  # test double for host-local: echoes the config it is given
INDEXES = range(1, 255)
SAMPLE = (1, 128, 254)
WORKERS = 2 * (os.cpu_count() or 2)


def _expected(outer, cfg, template, index):
    """What host-local must get: the caller's config, name node-local-<cfg>, the file's ipam."""
    ipam = dict(node_subst(template, index, validate=False)["ipam"])
    ipam.pop("cfg", None)
    ipam["type"] = "host-local"
    return {**outer, "name": f"node-local-{cfg}", "ipam": ipam}


def _node_dir(root, index, files):
    d = root / f"n{index}"
    d.mkdir()
    (d / ".index").write_text(f"{index}\n")
    for name, text in files.items():
        (d / name).write_text(text)
    return d


def _run_all(jobs):
    """jobs: (dir, cfg, shell) -> parsed outputs, run in parallel."""

    def one(job):
        d, cfg, shell = job
        run = run_script(
            plugin_config(cfg), {"NODE_LOCAL_DIR": str(d), "NODE_LOCAL_HOST_LOCAL": STAND_IN}, shell
        )
        assert run.returncode == 0, (job, run.stdout, run.stderr)
        return json.loads(run.stdout)

    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(one, jobs))


def test_every_index_every_template(tmp_path):
    """All templates in one file (one line), for every index 1..254; each file alone on a sample."""
    ipam = {"type": "host-local", "templates": TEMPLATES, "tricky": TRICKY}
    combined = {"cniVersion": "0.4.0", "name": "all", "ipam": ipam}
    files = {"all": json.dumps(combined, separators=(",", ":")) + "\n"}
    files.update({name: file_text(name) for name in TEMPLATES})
    dirs = {i: _node_dir(tmp_path, i, files) for i in INDEXES}

    jobs = [(dirs[i], "all", "busybox") for i in INDEXES]
    jobs += [(dirs[i], "all", "dash") for i in SAMPLE]
    jobs += [(dirs[i], name, "busybox") for i in SAMPLE for name in TEMPLATES]
    outputs = _run_all(jobs)

    for (d, cfg, shell), got in zip(jobs, outputs):
        index = int(d.name[1:])
        template = combined if cfg == "all" else TEMPLATES[cfg]
        assert got == _expected(plugin_config(cfg), cfg, template, index), (cfg, index, shell)
        if cfg == "all":
            for name, tpl in TEMPLATES.items():
                assert got["ipam"]["templates"][name] == node_subst(tpl, index, validate=False)
            assert got["ipam"]["tricky"] == node_subst(TRICKY, index, validate=False)


def test_outer_config_kept(tmp_path):
    """Everything but name and ipam comes from the caller (cniVersion, prevResult, args, ...)."""
    d = _node_dir(tmp_path, 5, {"macvlan": file_text("lab-macvlan")})
    outer = plugin_config("macvlan", version="0.4.0", name="caller")
    outer.update(
        {
            "args": {"cni": {"ips": ["198.18.5.9"]}},
            "runtimeConfig": {"ips": ["2001:db8::1/64"]},
            "prevResult": {},
        }
    )
    outer["ipam"]["dataDir"] = "/ignored"  # the file gives ipam, all of it
    run = run_script(outer, {"NODE_LOCAL_DIR": str(d), "NODE_LOCAL_HOST_LOCAL": STAND_IN})
    assert run.returncode == 0, run.stdout + run.stderr
    got = json.loads(run.stdout)
    assert got == _expected(outer, "macvlan", TEMPLATES["lab-macvlan"], 5)
    assert got["cniVersion"] == "0.4.0" and got["prevResult"] == {} and "dataDir" not in got["ipam"]


strings = st.text(
    alphabet=st.sampled_from(list(".x%X_9aZé€:/- ") + ["\n", "\t", "\\", '"', "\x00"]), max_size=30
)
string_trees = st.recursive(
    strings,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(strings, inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.lists(st.one_of(strings, st.text(max_size=30), string_trees), min_size=1, max_size=40),
    index=st.integers(min_value=1, max_value=99999),
    shell=st.sampled_from(["busybox", "dash"]),
)
def test_random_strings_agree(tmp_path_factory, values, index, shell):
    """Any strings (placeholders next to anything, unicode, quotes, NUL, keys with '%')."""
    ipam = {"type": "host-local", "p": ".x", "v": values, "k%.x": values}
    template = {"cniVersion": "1.0.0", "name": "r", "ipam": ipam}
    d = _node_dir(tmp_path_factory.mktemp("r"), index, {"r": json.dumps(template) + "\n"})
    run = run_script(plugin_config("r"), {"NODE_LOCAL_DIR": str(d), "NODE_LOCAL_HOST_LOCAL": STAND_IN}, shell)
    assert run.returncode == 0, run.stdout + run.stderr
    assert json.loads(run.stdout) == _expected(plugin_config("r"), "r", template, index)
