# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""A role's preflight and rendering without Ansible (plugins/plugin_utils/roleplan.py): the
variables layered as include_role does, checked against the role's own argument spec, the
cross-field and play checks naming host and value, the archive resolved once per run and
request, the files each role renders."""

from __future__ import annotations

import json
import os
import pathlib
import re

import pytest
import yaml
from ansible.plugins.filter.core import to_nice_json
from ansible_collections.xcluster.multus.plugins.plugin_utils import multus as mu
from ansible_collections.xcluster.multus.plugins.plugin_utils import roleplan as rp

REPO = pathlib.Path(__file__).resolve().parents[4]


def role_files(role):
    d = REPO / "roles" / role
    load = lambda p: yaml.safe_load((d / p).read_text()) or {}  # noqa: E731
    return load("defaults/main.yml"), load("vars/main.yml"), load("meta/argument_specs.yml")


def role_values(role, **over):
    defaults, internal, specs = role_files(role)
    defaults = {**defaults, **{k: x for k, x in TEMPLATED.items() if k in defaults}}
    return {**rp.layered(defaults, over, internal)}, rp.role_spec(specs, role)


ARTIFACT = {
    "archive": "cni-plugins-linux-amd64-v1.0.1.tgz",
    "version": "v1.0.1",
    "root": "/cache/unpacked/abc",
    "files": ["bridge", "host-local", "LICENSE", "README.md", "d/x", "macvlan"],
}


def test_layered_host_vars_win_over_defaults_role_vars_over_both():
    out = rp.layered({"a": 1, "b": 2}, {"b": 20, "c": 30}, {"_i": 5})
    assert out == {"a": 1, "b": 20, "_i": 5}  # c is not the role's


# What the defaults that are templates give when nothing else is set (the action templates them
# with the host's variables; a new templated default needs its value here).
TEMPLATED = {
    "multus_kubeconfig": "/etc/kubernetes/kubeconfig.token",
    "multus_kubectl_kubeconfig": "/etc/kubernetes/kubeconfig.token",
    "multus_node_index": None,
    "multus_node_index_pattern": "^vm-0*([1-9][0-9]*)$",
    "multus_whereabouts_version": "",
    "multus_uninstall_api_objects": False,
    "multus_service_src_dir": "",
    "multus_service_uninstall_api_objects": False,
    "whereabouts_src_dir": "",
    "whereabouts_kubeconfig": "/etc/kubernetes/kubeconfig.token",
    "whereabouts_serviceaccount": False,
    "whereabouts_uninstall_api_objects": False,
}


@pytest.mark.parametrize("role", ["cni_plugins", "node_local", "multus", "whereabouts", "multus_service"])
def test_every_roles_defaults_fit_its_own_spec(role):
    v, spec = role_values(role)
    templated = [k for k, x in v.items() if not k.startswith("_") and isinstance(x, str) and "{{" in x]
    assert not templated, "a templated default not in TEMPLATED"
    rp.validate("vm-001", role, spec, v)
    assert set(spec) >= {k for k in role_files(role)[0]}, "a default without its spec"


def test_validate_names_host_role_and_value():
    v, spec = role_values("cni_plugins", cni_plugins_list="bridge,host-local", cni_plugins_download="maybe")
    with pytest.raises(rp.RolePlanError) as e:
        rp.validate("vm-002", "cni_plugins", spec, v)
    msg = str(e.value)
    assert msg.startswith("vm-002: role xcluster.multus.cni_plugins: ")
    assert "cni_plugins_download" in msg and "meta/argument_specs.yml" in msg


def test_validate_gives_booleans_as_the_spec_reads_them():
    """-e multus_service_start=false is the string 'false': the renders read it as False."""
    v, spec = role_values(
        "multus_service", multus_service_start="false", multus_service_manifests_apply="yes"
    )
    got = rp.validate("vm-001", "multus_service", spec, v)
    assert got["multus_service_start"] is False and got["multus_service_manifests_apply"] is True
    assert all(spec[k]["type"] == "bool" for k in got)


def test_role_spec_needs_the_entry_point():
    with pytest.raises(rp.RolePlanError, match="no entry point 'preflight'"):
        rp.role_spec({"argument_specs": {"main": {}}}, "x")


def test_cni_plugins_all_plugins_of_the_archive():
    v, _ = role_values("cni_plugins", cni_plugins_bin_dir="/opt/cni/bin/")
    entry, facts = rp.plan("cni_plugins", "vm-001", v, {"artifact": ARTIFACT})
    assert [f["dest"] for f in entry["files"]] == [
        "/opt/cni/bin/bridge",
        "/opt/cni/bin/host-local",
        "/opt/cni/bin/macvlan",
    ]
    assert entry["files"][0] == {
        "src": "/cache/unpacked/abc/bridge",
        "dest": "/opt/cni/bin/bridge",
        "mode": "0755",
    }
    assert entry["report"] == "v1.0.1" and entry["secrets"] == [] and entry["directories"] == []
    assert facts["_cni_plugins_artifact"] is ARTIFACT
    assert facts["_cni_plugins_want"]["host"] == "vm-001"


def test_cni_plugins_chosen_list_in_order_once():
    v, _ = role_values("cni_plugins", cni_plugins_list=["macvlan", "bridge", "macvlan"])
    entry, _ = rp.plan("cni_plugins", "vm-001", v, {"artifact": ARTIFACT})
    assert [f["dest"].rsplit("/", 1)[1] for f in entry["files"]] == ["macvlan", "bridge"]


def test_cni_plugins_unknown_plugin_names_host_and_what_the_archive_has():
    v, _ = role_values("cni_plugins", cni_plugins_list=["bridge", "nope"])
    with pytest.raises(rp.RolePlanError) as e:
        rp.plan("cni_plugins", "vm-003", v, {"artifact": ARTIFACT})
    assert str(e.value) == (
        'vm-003: cni_plugins_list names ["nope"], not in cni-plugins-linux-amd64-v1.0.1.tgz; '
        "it has bridge, host-local, macvlan"
    )


def test_same_archive_for_every_host_of_the_play():
    v1, _ = role_values("cni_plugins")
    v2, _ = role_values("cni_plugins", cni_plugins_version="v1.9.1")
    hosts = {
        "vm-001": {"_cni_plugins_want": rp.archive_request(v1, "cni_plugins", "vm-001")},
        "vm-002": {"_cni_plugins_want": rp.archive_request(v1, "cni_plugins", "vm-002")},
    }
    rp.play_check("cni_plugins", hosts)  # the same request: fine
    hosts["vm-003"] = {"_cni_plugins_want": rp.archive_request(v2, "cni_plugins", "vm-003")}
    with pytest.raises(rp.RolePlanError) as e:
        rp.play_check("cni_plugins", hosts)
    assert re.match(r"vm-003: the hosts of this play ask for different cni-plugins archives", str(e.value))
    assert '"v1.9.1"' in str(e.value) and "vm-001 asks for" in str(e.value)


def nl(host, **over):
    v, _ = role_values("node_local", **over)
    return rp.plan("node_local", host, v, {"role_dir": "/roles/node_local"})


def test_node_local_files_as_to_nice_json_and_the_overlay():
    entry, facts = nl("vm-007", node_local_conf_dir="/etc/cni/node-local/")
    files = {f["dest"]: f for f in entry["files"]}
    assert files["/opt/cni/bin/node-local"] == {
        "src": "/roles/node_local/files/node-local",
        "dest": "/opt/cni/bin/node-local",
        "mode": "0755",
    }
    assert files["/etc/cni/node-local/.index"]["content"] == "7\n"
    defaults = role_files("node_local")[0]["node_local_configs"]
    for name, template in defaults.items():
        assert files[f"/etc/cni/node-local/{name}"]["content"] == to_nice_json(template, indent=2) + "\n"
    assert entry["report"] == "index 7, configs default macvlan ipvlan"
    assert entry["directories"] == [{"path": "/etc/cni/node-local", "mode": "0755"}]
    assert entry["overlay"]["index"] == 7 and entry["overlay"]["drop"] == ["/etc/cni/node-local/.index"]
    assert facts["_node_local_index"] == 7
    # checked on the node again when it or host-local (cni_plugins) changed, or it does not answer
    assert entry["node"]["after"] == ["node_local", "cni_plugins"]
    assert "/opt/cni/bin/node-local" in entry["node"]["probe"]


def test_node_local_host_name_without_index():
    with pytest.raises(rp.RolePlanError, match=r"host node-b: host name 'node-b' does not match the index"):
        nl("node-b")


def test_node_local_bad_config_name_names_the_host():
    bad = dict(role_files("node_local")[0]["node_local_configs"], **{".hidden": {"ipam": {}}})
    with pytest.raises(rp.RolePlanError) as e:
        nl("vm-001", node_local_configs=bad)
    assert re.match(r"vm-001: node_local_bin_dir .*not starting with '\.'.*\"\.hidden\"", str(e.value))
    assert not str(e.value).startswith("vm-001: vm-001")


def play_facts(**hosts):
    return {h: {k: f[k] for k in rp.ROLES["node_local"].play_facts} for h, (_, f) in hosts.items()}


def test_node_local_play_duplicate_index_and_overlap():
    ok = {h: nl(h) for h in ("vm-001", "vm-002", "vm-003")}
    rp.play_check("node_local", play_facts(**ok))
    dup = dict(ok, **{"vm-003": nl("vm-003", node_local_index=2)})
    with pytest.raises(rp.RolePlanError, match="hosts vm-002 and vm-003 both have node index 2"):
        rp.play_check("node_local", play_facts(**dup))
    seed = json.loads(json.dumps(role_files("node_local")[0]["node_local_configs"]))
    for rset in seed["macvlan"]["ipam"]["ranges"]:
        del rset[0]["rangeEnd"]
    over = {h: nl(h, node_local_configs=seed) for h in ("vm-001", "vm-002")}
    with pytest.raises(
        rp.RolePlanError, match=r"node-local config 'macvlan': the ranges of two hosts overlap"
    ):
        rp.play_check("node_local", play_facts(**over))


def test_resolve_once_per_run_and_request(tmp_path):
    calls = []
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()

    def resolver(**kw):
        calls.append(kw)
        if kw["version"] == "bad":
            raise rp.artifacts.ArtifactError("archive bad not found")
        return {"version": kw["version"], "unpacked": str(unpacked), "root": str(unpacked), "files": []}

    v, _ = role_values("cni_plugins", cni_plugins_cache_dir=str(tmp_path))
    want = rp.archive_request(v, "cni_plugins", "vm-001")
    env = {}
    a = rp.resolve_once("cni-plugins", want, env=env, home="/h", key="run1", resolver=resolver)
    b = rp.resolve_once(
        "cni-plugins", dict(want, host="vm-002"), env=env, home="/h", key="run1", resolver=resolver
    )
    assert a == b and len(calls) == 1  # the second host reads the first one's result
    assert calls[0]["artifact"] == "cni-plugins" and calls[0]["checksum"] is None
    rp.resolve_once("cni-plugins", want, env=env, home="/h", key="run2", resolver=resolver)
    assert len(calls) == 2  # another run resolves again (the archive may have changed)
    for _ in range(2):  # a failure is not kept: each host reports it
        with pytest.raises(rp.artifacts.ArtifactError):
            rp.resolve_once(
                "cni-plugins", dict(want, version="bad"), env=env, home="/h", key="run1", resolver=resolver
            )
    assert len(calls) == 4
    assert os.listdir(tmp_path / "plans")


def test_memos_of_finished_runs_are_pruned_when_a_memo_is_written(tmp_path):
    """A run's memos go once its ansible-playbook process is gone (or the pid is another process)."""
    import subprocess  # noqa: PLC0415 (this test only)

    p = subprocess.Popen(["true"])
    p.wait()
    me = os.getpid()
    plans = tmp_path / "plans"
    plans.mkdir()
    live = plans / f"run-{me}-{rp._start(me)}-aaaa.json"
    gone = plans / f"run-{p.pid}-12345-bbbb.json"
    reused = plans / f"run-{me}-1-cccc.json"  # this pid, another start: another process
    other = plans / "unrelated.json"
    for f in (live, gone, reused, other):
        f.write_text("{}")
    rp.once(str(tmp_path), ["x"], lambda: {"v": 1}, key=f"{me}-{rp._start(me)}")
    assert live.exists() and other.exists() and not gone.exists() and not reused.exists()


MULTUS_ART = {
    "root": "/u/multus-cni_3.9.3_linux_amd64",
    "members": ["multus-cni_3.9.3_linux_amd64/multus-cni"],
}


def mv(**over):
    v, _ = role_values("multus", **{"multus_version": "3.9.3", "multus_node_index": None, **over})
    v.update(
        {
            k: over.get(k, d)
            for k, d in (
                ("multus_node_index_pattern", "^vm-0*([1-9][0-9]*)$"),
                ("multus_kubectl_kubeconfig", v["multus_kubeconfig"]),
                ("multus_whereabouts_version", ""),
                ("_multus_conf_src", "/usr/lib/xcluster-multus/10-multus.conf"),
            )
        }
    )
    return v


def multus(host, groups=None, **over):
    v = mv(**over)
    found = {"artifact": MULTUS_ART, "role_dir": str(REPO / "roles" / "multus"), "groups": groups or {}}
    found.update(rp.ROLES["multus"].prepare(host, v))
    return rp.plan("multus", host, v, found)


def test_multus_files_report_and_overlay():
    entry, facts = multus("vm-001", groups={"xcluster_control_plane": ["vm-001"]})
    dests = [f["dest"] for f in entry["files"]]
    assert dests[:3] == [
        "/opt/cni/bin/multus-cni",
        "/usr/lib/xcluster-multus/10-multus.conf",
        "/usr/lib/xcluster-multus/activate",
    ]
    assert entry["files"][0]["src"] == "/u/multus-cni_3.9.3_linux_amd64/multus-cni"
    assert json.loads(entry["files"][1]["content"]) == facts["_multus_conf"]
    assert entry["files"][1]["content"] == to_nice_json(facts["_multus_conf"], indent=4) + "\n"
    assert all(d.startswith("/etc/kubernetes/multus/") for d in dests[3:]) and len(dests) > 4
    assert entry["report"] == "3.9.3 (multus-cni, cluster_network), manifests skipped: not run (tags)"
    assert entry["secrets"] == [] and "_multus_activate" in facts
    ovl = entry["overlay"]
    assert "index" not in ovl and ovl["conf_src"] == "/usr/lib/xcluster-multus/10-multus.conf"
    assert ovl["delegates"] is False and ovl["cni_info"] == "multus+bridge"
    assert not any(d.endswith("crd.yaml") or d.endswith("bridge.yaml") for d in ovl["base_drop"]), ovl[
        "base_drop"
    ]
    entry2, _ = multus("vm-002", groups={"xcluster_control_plane": ["vm-001"]}, multus_mode="delegates")
    assert entry2["report"].endswith("manifests not this host") and entry2["overlay"]["index"] == 2


def test_multus_node_entry_precheck_probe_and_the_control_plane():
    """What site.yml's install reads before its push (plugin_utils/nodestep.py): the base-config
    precheck, the activation's own check, and on the control plane whether an API server answers."""
    groups = {"xcluster_control_plane": ["vm-001"]}
    cp, _ = multus("vm-001", groups=groups)
    worker, _ = multus("vm-002", groups=groups)
    assert "get --raw /readyz" in cp["node"]["probe"] and "readyz" not in worker["node"]["probe"]
    assert "readyz" not in multus("vm-001", groups=groups, multus_manifests_apply=False)[0]["node"]["probe"]
    pre = worker["node"]["precheck"]
    assert pre["check"] == "multus_base" and pre["args"] == {
        "conf_file": "/etc/cni/net.d/10-multus.conf",
        "base_conf": "",
    }
    assert pre["cmd"] == mu.base_config_probe("/etc/cni/net.d/10-multus.conf", "/var/lib/xcluster-multus")
    assert "/usr/lib/xcluster-multus/activate check" in worker["node"]["probe"]
    assert worker["node"]["after"] == ["multus"]


def test_multus_kubeconfig_is_a_secret_and_never_in_the_files():
    entry, _ = multus(
        "vm-001",
        multus_kubeconfig_server="https://198.19.250.1:6443",
        multus_kubeconfig_token="xcm-unit-secret-7f",
    )
    (secret,) = entry["secrets"]
    assert (
        secret["mode"] == "0600"
        and secret["secret"] is True
        and secret["dest"] == "/etc/kubernetes/kubeconfig.token"
    )
    doc = yaml.safe_load(secret["content"])
    assert doc["users"][0]["user"]["token"] == "xcm-unit-secret-7f"
    assert doc["clusters"][0]["cluster"] == {
        "server": "https://198.19.250.1:6443",
        "insecure-skip-tls-verify": True,
    }
    assert "xcm-unit-secret-7f" not in json.dumps(entry["files"])


def test_multus_errors_keep_their_names():
    with pytest.raises(rp.RolePlanError, match=r"^multus_flavour: host vm-002: multus_version is '5.0'"):
        multus("vm-002", multus_version="5.0")
    with pytest.raises(
        rp.RolePlanError, match=r"^multus_activate_script: host vm-002: multus_links_up is \['eth 2'\]"
    ):
        multus("vm-002", multus_links_up=["eth 2"])
    with pytest.raises(rp.RolePlanError, match=r"vm-001: .*a kubeconfig is given either as"):
        multus("vm-001", multus_kubeconfig_server="https://198.19.250.1:6443")
    with pytest.raises(rp.RolePlanError, match=r"has no multus-cni_3.9.3_linux_amd64/multus-cni"):
        v = mv()
        found = {
            "artifact": {"archive": "a.tgz", "members": ["x"]},
            "role_dir": "",
            **rp.multus_prepare("vm-001", v),
        }
        rp.plan("multus", "vm-001", v, found)


def wv(**over):
    v, _ = role_values("whereabouts", **{"whereabouts_src_dir": "", **over})
    src = v["whereabouts_src_dir"]
    crds = v["whereabouts_crds_dir"] or (f"{src.rstrip('/')}/doc/crds" if src else "")
    v.update(
        _whereabouts_source="binary"
        if v["whereabouts_binary"]
        else "url"
        if v["whereabouts_url"]
        else "build",
        _whereabouts_crds_src=crds,
    )
    return v


def ctx(tmp_path, host="vm-001", key="run1", task="t1"):
    return rp.Context(
        env={"XDG_CACHE_HOME": str(tmp_path / "cache")},
        home=str(tmp_path),
        host=host,
        all_hosts=("vm-001", "vm-002"),
        task=task,
        key=key,
    )


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({}, r"^vm-001: whereabouts has no source: .*expected the path of your whereabouts clone"),
        (
            {"whereabouts_url": "http://x/w", "whereabouts_url_sha256": "abc"},
            r'whereabouts_url_sha256 "abc" is not a sha256',
        ),
        (
            {"whereabouts_binary": "/bin/true", "whereabouts_extra_binaries": ["ip-reconciler"]},
            r'whereabouts_extra_binaries \["ip-reconciler"\] needs a build of your clone,'
            r" but the binary comes from binary",
        ),
        (
            {"whereabouts_binary": "/nonexistent/w"},
            r"vm-001: whereabouts_binary /nonexistent/w is not an executable file",
        ),
    ],
)
def test_whereabouts_bad_input(tmp_path, over, message):
    with pytest.raises(rp.RolePlanError, match=message):
        rp.whereabouts_obtain("vm-001", wv(**over), ctx(tmp_path))


def test_whereabouts_prebuilt_binary_crds_and_the_same_source(tmp_path):
    crds = tmp_path / "crds"
    crds.mkdir()
    for n in ("ippools", "overlappingrangeipreservations", "nodeslicepools"):
        (crds / f"whereabouts.cni.cncf.io_{n}.yaml").write_text("kind: CustomResourceDefinition\n")
    v = wv(
        whereabouts_binary="/bin/true",
        whereabouts_crds_dir=str(crds),
        whereabouts_kubeconfig_content="kc: secret\n",
    )
    found = rp.whereabouts_obtain("vm-001", v, ctx(tmp_path))
    assert found["binaries"] == {"whereabouts": "/bin/true"} and found["version"] == "prebuilt /bin/true"
    assert found["crds"] == [
        f"whereabouts.cni.cncf.io_{n}.yaml"
        for n in ("ippools", "overlappingrangeipreservations", "nodeslicepools")
    ]
    assert found["warnings"] == [] and found["build"] == {"skipped": True, "changed": False}
    entry, facts = rp.plan("whereabouts", "vm-001", v, found)
    assert [f["dest"] for f in entry["files"]][:2] == [
        "/opt/cni/bin/whereabouts",
        "/etc/kubernetes/whereabouts/whereabouts.cni.cncf.io_ippools.yaml",
    ]
    assert entry["secrets"] == [
        {
            "content": "kc: secret\n",
            "dest": "/etc/kubernetes/kubeconfig.token",
            "mode": "0600",
            "secret": True,
        }
    ]
    conf = entry["files"][-1]
    assert conf["dest"] == "/etc/cni/net.d/whereabouts.d/whereabouts.conf" and conf["mode"] == "0600"
    assert json.loads(conf["content"])["kubernetes"] == {"kubeconfig": "/etc/kubernetes/kubeconfig.token"}
    assert facts["_whereabouts_secret"] is True and len(facts["_whereabouts_files"]) == 6
    # a second host asking for another source, in the same run and task
    with pytest.raises(
        rp.RolePlanError,
        match=r"^the hosts of this play ask for different whereabouts sources.*vm-001.*vm-002",
    ):
        rp.whereabouts_obtain(
            "vm-002",
            wv(whereabouts_binary="/bin/false", whereabouts_crds_dir=str(crds)),
            ctx(tmp_path, "vm-002"),
        )
    # another task (another play) may ask for another one
    rp.whereabouts_obtain(
        "vm-002",
        wv(whereabouts_binary="/bin/false", whereabouts_crds_dir=str(crds)),
        ctx(tmp_path, "vm-002", task="t2"),
    )


def test_whereabouts_without_crds_warns_and_missing_crds_fail(tmp_path):
    found = rp.whereabouts_obtain("vm-001", wv(whereabouts_binary="/bin/true"), ctx(tmp_path))
    assert found["crds"] == [] and "no CRDs are shipped or applied" in found["warnings"][0]
    (tmp_path / "crds").mkdir()
    with pytest.raises(
        rp.RolePlanError, match=r"vm-001: \S+/crds has no whereabouts.cni.cncf.io_ippools.yaml, \S+; expected"
    ):
        rp.whereabouts_obtain(
            "vm-001",
            wv(whereabouts_binary="/bin/true", whereabouts_crds_dir=str(tmp_path / "crds")),
            ctx(tmp_path, key="run2"),
        )


def msv(**over):
    v, _ = role_values("multus_service", **{"multus_service_src_dir": "/clone", **over})
    v.update(
        _multus_service_controller=over.get("ctl", "vm-002"),
        _multus_service_proxies=over.get("proxies", ["vm-001", "vm-002"]),
    )
    return v


@pytest.mark.parametrize(
    ("over", "message"),
    [
        (
            {"multus_service_src_dir": ""},
            r"vm-001: no multus-service source: multus_service_src_dir is empty \(and \$MSERVICE_DIR",
        ),
        (
            {"multus_service_port": 70000},
            r"^vm-001: multus_service_port 70000, replicas 4/4, ip families \[\"IPv4\"\]: expected",
        ),
        ({"multus_service_ip_families": ["IPv4", "IPv4"]}, r"ip families \[\"IPv4\", \"IPv4\"\]"),
        (
            {"multus_service_start": True, "ctl": "vm-009"},
            r'multus_service_controller_host "vm-009" / multus_service_proxy_hosts \[\]',
        ),
        (
            {"multus_service_start": True, "proxies": ["vm-001", "vm-7"]},
            r'multus_service_proxy_hosts \["vm-7"\] are not inventory hosts',
        ),
    ],
)
def test_multus_service_bad_input(tmp_path, over, message):
    with pytest.raises(rp.RolePlanError, match=message):
        rp.multus_service_obtain("vm-001", msv(**over), ctx(tmp_path))


def test_multus_service_build_once_per_run_and_the_files(tmp_path, monkeypatch):
    calls = []

    def build(**kw):
        calls.append(kw)
        return {
            "built": True,
            "key": "k" * 40,
            "version": "",
            "binaries": {n: f"/b/{n}" for n in kw["expect"]},
        }

    monkeypatch.setattr(rp.gobuild, "build", build)
    v = msv()
    found = rp.multus_service_obtain("vm-001", v, ctx(tmp_path))
    again = rp.multus_service_obtain("vm-002", v, ctx(tmp_path, "vm-002"))
    assert len(calls) == 1 and calls[0]["recipe"] == "go-install" and again["build"] == found["build"]
    assert (
        found["version"] == "build kkkkkkkkkkkk, built from the clone /clone"
        and found["build"]["changed"] is True
    )
    found["templates"] = {"svc.yaml.j2": "svc\n", "deployment.yaml.j2": "dep\n"}
    entry, facts = rp.plan("multus_service", "vm-001", v, found)
    assert [(f["dest"], f.get("src", f.get("content"))) for f in entry["files"]] == [
        ("/bin/multus-proxy", "/b/multus-proxy"),
        ("/bin/multus-service-controller", "/b/multus-service-controller"),
        ("/etc/kubernetes/multus-service/svc.yaml", "svc\n"),
        ("/etc/kubernetes/multus-service/deployment.yaml", "dep\n"),
    ]
    assert entry["directories"] == [{"path": "/etc/kubernetes/multus-service", "mode": "0755"}]
    assert (
        facts["_multus_service_version"]
        == entry["report"]
        == "build kkkkkkkkkkkk, built from the clone /clone"
    )
