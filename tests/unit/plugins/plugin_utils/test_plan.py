# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The roles' contract without Ansible (plugins/plugin_utils/plan.py): the roles a host gets from
the switches, the tags, one push's lists, what a push changed per role, the summary, the
uninstall lists, the overlay item; and the multus-service daemons' start/stop script
(roles/multus_service/files/daemon.sh) run for real with a stand-in daemon."""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import subprocess
import time

import pytest
import yaml
from ansible_collections.xcluster.multus.plugins.plugin_utils import plan as p

REPO = pathlib.Path(__file__).resolve().parents[4]
REGISTRY = [
    {"name": "cni_plugins"},
    {"name": "node_local"},
    {"name": "multus"},
    {"name": "whereabouts", "auto": "False", "not_installed": "not installed: no source configured"},
    {"name": "multus_service", "auto": "True", "not_installed": "not installed: no clone configured"},
]


def entry(*dests, secrets=(), dirs=(), report="v1", **kw):
    e = {
        "files": [{"content": "x", "dest": d, "mode": "0644"} for d in dests],
        "secrets": [{"content": "s", "dest": d, "mode": "0600", "secret": True} for d in secrets],
        "directories": [{"path": d, "mode": "0755"} for d in dirs],
        "report": report,
    }
    e.update(kw)
    return e


PLAN = {
    "cni_plugins": entry("/opt/cni/bin/bridge", "/opt/cni/bin/host-local", report="v1.0.1"),
    "node_local": entry(
        "/opt/cni/bin/node-local",
        "/etc/cni/node-local/.index",
        dirs=["/etc/cni/node-local"],
        report="index 1, configs macvlan",
        overlay={
            "index": 1,
            "index_vars": "node_local_index / node_local_index_pattern",
            "drop": ["/etc/cni/node-local/.index"],
        },
    ),
    "multus": entry(
        "/opt/cni/bin/multus",
        "/etc/kubernetes/multus-crd.yaml",
        "/etc/kubernetes/nad-bridge.yaml",
        secrets=["/etc/kubernetes/kubeconfig.token"],
        made_dirs=["/var/lib/xcluster-multus", "/etc/cni/multus/net.d"],
        overlay={"base_drop": ["/etc/kubernetes/nad-bridge.yaml"]},
    ),
}


def test_the_registry_is_the_one_list_of_roles():
    vars_file = yaml.safe_load((REPO / "playbooks/vars/xcluster_multus.yml").read_text())
    names = p.role_names(vars_file["_xcm_registry"])
    for r in vars_file["_xcm_registry"]:  # plain keys (YAML 1.1 reads a key `off` as false)
        assert set(r) <= {"name", "auto", "not_installed", "credentials"}, r
    assert names == ["cni_plugins", "node_local", "multus", "whereabouts", "multus_service"]
    on_disk = sorted(d.name for d in (REPO / "roles").iterdir() if (d / "meta/argument_specs.yml").is_file())
    assert sorted(names) == on_disk  # every role of the collection is in the list, once
    for name in names:  # every role has the contract's entry points, declared
        specs = yaml.safe_load((REPO / "roles" / name / "meta/argument_specs.yml").read_text())[
            "argument_specs"
        ]
        credentials = next(r for r in vars_file["_xcm_registry"] if r["name"] == name).get("credentials")
        for ep in ("main", "preflight", "files", "install", "configure", "uninstall") + (
            ("credentials",) if credentials else ()
        ):
            assert ep in specs, (name, ep)
            assert specs[ep]["options"] == specs["main"]["options"], (name, ep)  # one spec, not a copy
            assert (REPO / "roles" / name / "tasks" / f"{ep}.yml").is_file(), (name, ep)
    with pytest.raises(p.PlanError, match="twice"):
        p.role_names([{"name": "a"}, {"name": "a"}])


def test_set_secrets_replaces_by_dest():
    new = p.set_secrets(
        PLAN, "multus", [{"content": "k", "dest": "/etc/cni/net.d/multus.d/m.kubeconfig", "mode": "0600"}]
    )
    assert [s["dest"] for s in new["multus"]["secrets"]] == [
        "/etc/kubernetes/kubeconfig.token",
        "/etc/cni/net.d/multus.d/m.kubeconfig",
    ]
    assert all(s["secret"] for s in new["multus"]["secrets"]) and p.secret(new, ["multus"])
    again = p.set_secrets(
        new, "multus", [{"content": "k2", "dest": "/etc/cni/net.d/multus.d/m.kubeconfig", "mode": "0600"}]
    )
    assert [s["content"] for s in again["multus"]["secrets"]] == ["s", "k2"]
    assert len(PLAN["multus"]["secrets"]) == 1  # the input is not changed
    assert "/etc/cni/net.d/multus.d/m.kubeconfig" in p.remove_lists(new, ["multus"])["files"]
    with pytest.raises(p.PlanError, match="no entry for role 'nope'"):
        p.set_secrets(PLAN, "nope", [])


@pytest.mark.parametrize(
    ("switches", "want"),
    [
        ({}, ["cni_plugins", "node_local", "multus", "multus_service"]),
        (
            {"whereabouts": "true", "multus_service": "no"},
            ["cni_plugins", "node_local", "multus", "whereabouts"],
        ),
        (
            {"whereabouts": True, "multus_service": False},
            ["cni_plugins", "node_local", "multus", "whereabouts"],
        ),
        (
            {"whereabouts": "AUTO", "multus_service": "auto"},
            ["cni_plugins", "node_local", "multus", "multus_service"],
        ),
    ],
)
def test_host_roles_from_the_switches(switches, want):
    assert p.host_roles(REGISTRY, switches, "vm-001") == want


def test_a_bad_switch_names_host_value_and_choices():
    with pytest.raises(
        p.PlanError, match=r"host vm-002: xcluster_multus_whereabouts is 'maybe'; expected one of auto, true"
    ):
        p.host_roles(REGISTRY, {"whereabouts": "maybe"}, "vm-002")


def test_tagged():
    t = p.tagged(["multus", "node_local"], ["multus_configure"], [])
    assert t == {
        "multus_install": False,
        "multus_configure": True,
        "node_local_install": False,
        "node_local_configure": False,
    }
    assert all(p.tagged(["multus"], ["all"], []).values())
    assert p.tagged(["multus"], ["all"], ["multus_install"]) == {
        "multus_install": False,
        "multus_configure": True,
    }


def test_push_items_one_push_for_every_role_secrets_flagged():
    got = p.push_items(PLAN, ["cni_plugins", "node_local", "multus"])
    assert [f["dest"] for f in got["files"]][-1] == "/etc/kubernetes/kubeconfig.token"
    assert len(got["files"]) == 8 and got["directories"] == [{"path": "/etc/cni/node-local", "mode": "0755"}]
    assert got["secret"] is True
    sel = p.tagged(["cni_plugins", "node_local", "multus"], ["node_local_install"], [])
    got = p.push_items(PLAN, ["cni_plugins", "node_local", "multus"], sel)
    assert {f["dest"] for f in got["files"]} == {"/opt/cni/bin/node-local", "/etc/cni/node-local/.index"}
    assert got["secret"] is False
    with pytest.raises(p.PlanError, match=r"host vm-009: xcluster_multus_plan has no entry for role 'sixth'"):
        p.push_items(PLAN, ["sixth"], host="vm-009")
    with pytest.raises(p.PlanError, match=r"unknown keys \['filez'\]"):
        p.push_items({"x": {"filez": []}}, ["x"])


def test_pushed_gives_each_role_what_changed_whoever_pushed():
    result = {"changed": True, "changed_files": ["/opt/cni/bin/multus", "/etc/cni/node-local/.index"]}
    got = p.pushed(PLAN, result, ["cni_plugins", "node_local", "multus"])
    assert got["multus"]["changed"] == ["/opt/cni/bin/multus"]
    assert got["node_local"]["changed"] == ["/etc/cni/node-local/.index"]
    assert got["cni_plugins"]["changed"] == []
    assert "changed" not in PLAN["multus"]  # the input is not changed
    # the role alone: two pushes (files, then the secret), a skipped one counts as nothing
    got = p.pushed(
        PLAN, [{"changed_files": []}, {"changed_files": ["/etc/kubernetes/kubeconfig.token"]}], ["multus"]
    )
    assert got["multus"]["changed"] == ["/etc/kubernetes/kubeconfig.token"]
    got = p.pushed(PLAN, {"skipped": True}, ["multus"])
    assert got["multus"]["changed"] == []


def test_summary_reads_like_before():
    plan = p.pushed(
        PLAN,
        {
            "changed_files": [
                "/opt/cni/bin/bridge",
                "/opt/cni/bin/host-local",
                "/etc/kubernetes/kubeconfig.token",
            ]
        },
        ["cni_plugins", "node_local", "multus"],
    )
    plan = p.note(
        plan,
        "multus",
        ["CHANGED: moved /etc/cni/net.d/10-bridge.conf"],
        report="3.9.3 (multus, thin), manifests applied",
    )
    roles = ["cni_plugins", "node_local", "multus"]
    lines = p.summary(
        plan,
        "vm-001",
        REGISTRY,
        {"whereabouts": "auto", "multus_service": "false"},
        p.tagged(roles, ["all"], []),
    )
    assert lines == [
        "vm-001:",
        "  cni_plugins     v1.0.1 | changed: /opt/cni/bin/{bridge,host-local}",
        "  node_local      index 1, configs macvlan | unchanged",
        "  multus          3.9.3 (multus, thin), manifests applied | changed:"
        " /etc/kubernetes/kubeconfig.token; moved /etc/cni/net.d/10-bridge.conf",
        "  whereabouts     not installed: no source configured",
        "  multus_service  not installed: xcluster_multus_multus_service is false",
    ]
    check = p.summary(plan, "vm-001", REGISTRY[:1], {}, {"cni_plugins_install": True}, check_mode=True)
    assert check[1] == "  cni_plugins     v1.0.1 | would change: /opt/cni/bin/{bridge,host-local}"
    tags = p.summary(
        plan, "vm-001", REGISTRY[:1], {}, {"cni_plugins_install": False, "cni_plugins_configure": False}
    )
    assert tags[1] == "  cni_plugins     not run (tags)"


def test_remove_lists():
    got = p.remove_lists(PLAN, ["node_local", "multus"], keep_dirs=["/var/lib"])
    assert got["files"] == sorted(got["files"]) and "/etc/kubernetes/kubeconfig.token" in got["files"]
    assert got["absent"][0] == {"dest": got["files"][0], "state": "absent"}
    assert got["dirs"] == sorted(got["dirs"], reverse=True)
    assert "/var/lib/xcluster-multus" in got["dirs"] and "/etc/cni/multus/net.d" in got["dirs"]
    assert "/etc/cni/multus" in got["dirs"]  # on the way
    assert "/var/lib" not in got["dirs"] and "/etc" not in got["dirs"] and "/opt" not in got["dirs"]
    assert "/opt/cni/bin/bridge" not in got["files"]  # cni_plugins kept


def test_overlay_item():
    got = p.overlay_item(PLAN, ["cni_plugins", "node_local", "multus"], 1)
    assert got["drop"] == ["/etc/cni/node-local/.index"] and got["templates"] == {}
    assert [s["name"] for s in got["sources"]] == ["cni_plugins", "node_local", "multus"]
    multus = got["sources"][2]["files"]
    assert "/etc/kubernetes/nad-bridge.yaml" in {f["dest"] for f in multus}
    base = p.overlay_item(PLAN, ["multus"], 1, base_only=True)
    assert "/etc/kubernetes/nad-bridge.yaml" not in {f["dest"] for f in base["sources"][0]["files"]}
    plan = dict(PLAN, multus=dict(PLAN["multus"], overlay={"index": 7, "index_vars": "multus_node_index"}))
    with pytest.raises(
        p.PlanError,
        match=r"^vm-001: the overlay's .rc takes the node index from the host name \(1\), "
        r"but this host's is 1 \(node_local_index / node_local_index_pattern, multus_node_index\); "
        r"expected hosts named vm-NNN",
    ):
        p.overlay_item(plan, ["node_local", "multus"], 1, host="vm-001")


def test_overlay_item_carries_the_overlay_only_files():
    variant = {"content": "{}", "dest": "/usr/lib/xcluster-multus/10-multus.conf.delegates", "mode": "0644"}
    plan = dict(PLAN, multus=dict(PLAN["multus"], overlay={"base_drop": [], "files": [variant]}))
    got = p.overlay_item(plan, ["multus"], 1)
    assert variant in got["sources"][0]["files"]
    assert variant not in p.push_items(plan, ["multus"])["files"]  # never pushed live


def test_overlay_item_carries_the_workers_only_files():
    conf = "/etc/cni/net.d/whereabouts.d/whereabouts.conf"
    wb = entry("/opt/cni/bin/whereabouts", conf, overlay={"workers_only": [conf]})
    got = p.overlay_item(dict(PLAN, whereabouts=wb), ["multus", "whereabouts"], 1)
    assert got["workers_only"] == [conf]
    assert conf in {
        f["dest"] for f in got["sources"][1]["files"]
    }  # shipped; the .rc removes it on non-workers
    assert p.overlay_item(PLAN, ["multus"], 1)["workers_only"] == []
    bad = entry("/opt/cni/bin/whereabouts", overlay={"workers_only": [conf]})
    with pytest.raises(
        p.PlanError, match=r"vm-003: xcluster_multus_plan\['whereabouts'\].overlay.workers_only names"
    ):
        p.overlay_item(dict(PLAN, whereabouts=bad), ["whereabouts"], 1, host="vm-003")


def _nad(name, cfg):
    return (
        "apiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\n"
        f"metadata:\n  name: {name}\nspec:\n  config: '{cfg}'\n"
    )


NAD_PLAN = dict(
    PLAN,
    multus=entry(
        "/opt/cni/bin/multus",
        overlay={"base_drop": ["/etc/kubernetes/multus/multus-crd-ipvlan.yaml"]},
    ),
)
NAD_PLAN["multus"]["files"] += [
    {"content": _nad("ipvlan", '{"type": "ipvlan", "ipam": {"type": "whereabouts"}}'),
     "dest": "/etc/kubernetes/multus/multus-crd-ipvlan.yaml", "mode": "0644"},
    {"content": _nad("macvlan", '{"type": "macvlan", "ipam": {"type": "host-local"}}'),
     "dest": "/etc/kubernetes/multus/multus-crd-macvlan.yaml", "mode": "0644"},
    {"content": "#!/bin/sh\n: not: yaml: [", "dest": "/usr/lib/xcluster-multus/activate", "mode": "0755"},
]  # fmt: skip
NAD_ROLES = ["cni_plugins", "node_local", "multus"]
BIN, MDIR = "/opt/cni/bin", "/etc/kubernetes/multus"


def test_installed_plugins_are_the_roles_files_in_the_bin_dir():
    got = p.installed_plugins(NAD_PLAN, NAD_ROLES, "/opt/cni/bin/")
    assert got == ["bridge", "host-local", "node-local", "multus"]


def test_nad_check_names_host_nad_plugin_and_fixes():
    with pytest.raises(p.PlanError, match=r"vm-002.*NAD ipvlan uses ipvlan, whereabouts.*multus_nads_skip"):
        p.nad_check(NAD_PLAN, NAD_ROLES, BIN, MDIR, host="vm-002")
    allowed = p.nad_check(NAD_PLAN, NAD_ROLES, BIN, MDIR, allow=True)
    assert allowed == [["ipvlan", ["ipvlan", "whereabouts"]], ["macvlan", ["macvlan"]]]
    # the overlay with ovl_setup None keeps only what base_drop leaves: macvlan still lacks its plugin
    base = p.nad_check(NAD_PLAN, NAD_ROLES, BIN, MDIR, allow=True, base_only=True)
    assert base == [["macvlan", ["macvlan"]]]
    cni = entry(f"{BIN}/ipvlan", f"{BIN}/macvlan", f"{BIN}/host-local")
    plan = dict(NAD_PLAN, cni_plugins=cni, whereabouts=entry(f"{BIN}/whereabouts"))
    assert p.nad_check(plan, [*NAD_ROLES, "whereabouts"], BIN, MDIR) == []


def test_nad_check_reads_allow_as_ansible_bool():
    # -e multus_nads_without_plugin=false gives the string "false": not an allow
    with pytest.raises(p.PlanError, match=r"NAD ipvlan uses"):
        p.nad_check(NAD_PLAN, NAD_ROLES, BIN, MDIR, allow="false", host="vm-002")
    assert p.nad_check(NAD_PLAN, NAD_ROLES, BIN, MDIR, allow="True") == [
        ["ipvlan", ["ipvlan", "whereabouts"]],
        ["macvlan", ["macvlan"]],
    ]
    with pytest.raises(
        p.PlanError, match=r"host vm-002: multus_nads_without_plugin is 'maybe'; expected true or false"
    ):
        p.nad_check(NAD_PLAN, NAD_ROLES, BIN, MDIR, allow="maybe", host="vm-002")


def test_secret():
    assert p.secret(PLAN) is True and p.secret(PLAN, ["cni_plugins"]) is False and p.secret({}) is False


# ------------------------------------------------------------------ daemon.sh

DAEMON = REPO / "roles/multus_service/files/daemon.sh"


def test_daemon_script_is_shellcheck_clean():
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck missing")
    subprocess.run(["shellcheck", "-s", "sh", str(DAEMON)], check=True)


def _sh(*args):
    return subprocess.run(
        ["sh", "-s", "--", *args],
        stdin=DAEMON.open(),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


def test_daemon_start_left_alone_restart_stop(tmp_path):
    bin_ = tmp_path / "bin" / "stand-in"
    bin_.parent.mkdir()
    shutil.copy(shutil.which("sleep"), bin_)
    pidf, log = tmp_path / "run/stand-in.pid", tmp_path / "log/stand-in.log"
    args = (str(bin_), str(pidf), str(log))
    try:
        r = _sh("start", *args, "0", "0", "300")
        assert r.returncode == 0 and "XCM-STARTED" in r.stdout and "XCM-ALIVE" in r.stdout, (
            r.stdout + r.stderr
        )
        pid = int(pidf.read_text())
        assert _alive(pid) and pathlib.Path(f"/proc/{pid}/exe").resolve() == bin_.resolve()
        r = _sh("start", *args, "0", "0", "300")
        assert r.stdout.strip() == f"XCM-RUNNING {pid}" and int(pidf.read_text()) == pid  # left alone
        r = _sh("start", *args, "1", "0", "300")  # its binary replaced: restarted
        new = int(pidf.read_text())
        assert "XCM-STARTED" in r.stdout and new != pid and _alive(new)
        time.sleep(0.2)
        assert not _alive(pid)
        r = _sh("stop", str(bin_), str(pidf))
        assert r.stdout.splitlines() == [f"CHANGED: stopped {bin_} ({new})", f"CHANGED: removed {pidf}"]
        time.sleep(0.2)
        assert not _alive(new) and not pidf.exists()
        assert _sh("stop", str(bin_), str(pidf)).stdout == ""  # nothing to do
        r = _sh("start", str(tmp_path / "missing"), str(pidf), str(log), "0", "0")
        assert "XCM-EXITED" in r.stdout
        assert _sh("bogus").returncode == 2 and _sh("stop", "x").returncode == 2
    finally:
        for f in (pidf,):
            if f.exists():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(f.read_text()), signal.SIGTERM)
