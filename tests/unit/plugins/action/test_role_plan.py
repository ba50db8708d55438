# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The action xcluster.multus.role_plan without a playbook: a real DataLoader and Templar, the
roles' real defaults, vars and argument specs, real archives (tests/helpers/artifact_cases.py);
what it sets (the contract and the roles' private facts) and how it fails."""

from __future__ import annotations

from unittest import mock

import pytest
from ansible.errors import AnsibleActionFail
from ansible.parsing.dataloader import DataLoader
from ansible.playbook.play_context import PlayContext
from ansible.template import Templar, trust_as_template
from ansible_collections.xcluster.multus.plugins.action.role_plan import COLLECTION, ActionModule
from artifact_cases import CNI_DIR, CNI_NAME


def action(args):
    task = mock.MagicMock()
    task.args = args
    task.async_val = 0
    task.check_mode = False
    loader = DataLoader()
    return ActionModule(task, mock.MagicMock(), PlayContext(), loader, Templar(loader=loader))


def host_vars(host, **kw):
    return {"inventory_hostname": host, "ansible_play_hosts": ["vm-001", "vm-002"], **kw}


@pytest.fixture
def cni_archive(archives, tmp_path):
    """The test's real cni-plugins v1.0.1 archive in a dir, its sha256 given."""
    if CNI_NAME not in archives:
        pytest.skip(f"needs the CNI plugins in {CNI_DIR}")
    path, sha = archives[CNI_NAME]
    return {
        "cni_plugins_version": CNI_NAME.rsplit("-", 1)[1][: -len(".tgz")],
        "cni_plugins_archive_dirs": [path.rsplit("/", 1)[0]],
        "cni_plugins_checksum": sha,
        "cni_plugins_download": False,
        "cni_plugins_cache_dir": str(tmp_path / "cache"),
    }


def test_host_scope_sets_the_contract_and_private_facts(cni_archive):
    tv = host_vars("vm-002", node_local_index=None, **cni_archive)
    out = action({"roles": ["cni_plugins", "node_local"]}).run(task_vars=tv)
    assert out["changed"] is False and out["roles"] == ["cni_plugins", "node_local"]
    facts = out["ansible_facts"]
    plan = facts["xcluster_multus_plan"]
    assert set(plan) == {"cni_plugins", "node_local"}
    dests = [f["dest"] for f in plan["cni_plugins"]["files"]]
    assert "/opt/cni/bin/host-local" in dests and all(d.startswith("/opt/cni/bin/") for d in dests)
    assert all(
        f["src"].startswith(str(cni_archive["cni_plugins_cache_dir"])) for f in plan["cni_plugins"]["files"]
    )
    assert plan["node_local"]["overlay"]["index"] == 2 == facts["_node_local_index"]
    assert plan["node_local"]["files"][0]["src"] == f"{COLLECTION}/roles/node_local/files/node-local"
    assert facts["_cni_plugins_want"]["host"] == "vm-002"
    # no role asks for a ServiceAccount: not in site.yml's credentials group (k8s-rbac: one that does)
    assert out["credentials"] == [] and "add_group" not in out
    assert plan["node_local"]["node"]["after"] == ["node_local", "cni_plugins"]


def test_a_templated_host_variable_and_an_earlier_plan_kept(cni_archive):
    tv = host_vars(
        "vm-001",
        node_local_bin_dir=trust_as_template("{{ my_root }}/bin"),  # as inventory values are
        my_root="/srv",
        xcluster_multus_plan={"other": {"files": []}},
        **cni_archive,
    )
    facts = action({"roles": ["node_local"]}).run(task_vars=tv)["ansible_facts"]
    assert facts["xcluster_multus_plan"]["other"] == {"files": []}
    assert facts["xcluster_multus_plan"]["node_local"]["files"][0]["dest"] == "/srv/bin/node-local"


def test_bad_type_fails_against_the_roles_spec():
    tv = host_vars("vm-001", node_local_configs="not a dict")
    with pytest.raises(
        AnsibleActionFail, match=r"vm-001: role xcluster.multus.node_local: .*node_local_configs"
    ):
        action({"roles": ["node_local"]}).run(task_vars=tv)


def test_unknown_role_fails_or_is_skipped():
    with pytest.raises(AnsibleActionFail, match=r"role 'sixth' has no plan"):
        action({"roles": ["sixth"]}).run(task_vars=host_vars("vm-001"))
    out = action({"roles": ["sixth", "node_local"], "unknown": "skip"}).run(task_vars=host_vars("vm-001"))
    assert out["roles"] == ["node_local"]


def test_bad_argument_fails_against_the_module_doc():
    with pytest.raises(AnsibleActionFail, match=r"vm-001: role_plan: .*scope"):
        action({"roles": ["node_local"], "scope": "all"}).run(task_vars=host_vars("vm-001"))


def test_play_scope_checks_across_hosts(cni_archive):
    facts = {}
    for h, extra in (("vm-001", {}), ("vm-002", {"node_local_index": 1})):
        tv = host_vars(h, **cni_archive, **extra)
        facts[h] = action({"roles": ["node_local"]}).run(task_vars=tv)["ansible_facts"]
    tv = host_vars("vm-001", hostvars=facts)
    with pytest.raises(AnsibleActionFail, match="hosts vm-001 and vm-002 both have node index 1"):
        action({"roles": ["node_local", "cni_plugins"], "scope": "play"}).run(task_vars=tv)


def test_registry_and_switches_give_the_host_roles_and_the_fact_name():
    registry = [{"name": "node_local"}, {"name": "sixth", "auto": "False"}, {"name": "seventh"}]
    args = {"registry": registry, "switches": {"sixth": "auto"}, "unknown": "skip", "fact": "_xcm_plan"}
    out = action(args).run(task_vars=host_vars("vm-001"))
    assert out["host_roles"] == ["node_local", "seventh"] and out["roles"] == ["node_local"]
    assert set(out["ansible_facts"]["_xcm_plan"]) == {"node_local"}
    assert "xcluster_multus_plan" not in out["ansible_facts"]
    with pytest.raises(
        AnsibleActionFail, match=r"host vm-001: xcluster_multus_sixth is 'maybe'; expected one of"
    ):
        action(dict(args, switches={"sixth": "maybe"})).run(task_vars=host_vars("vm-001"))
    with pytest.raises(AnsibleActionFail, match=r"mutually exclusive: roles\|registry"):
        action(dict(args, roles=["node_local"])).run(task_vars=host_vars("vm-001"))


def test_switches_from_the_host_variables_and_what_the_playbooks_read():
    """Without switches, each xcluster_multus_<role> is the host's own variable (templated,
    default auto); the result carries what the playbooks read after the preflight: the switches,
    the tags selected for the host's roles, the registry's names and summary lines."""
    registry = [
        {"name": "node_local", "credentials": True},
        {"name": "sixth", "auto": "False", "not_installed": "not installed: no source"},
        {"name": "seventh", "auto": "True"},
    ]
    args = {"registry": registry, "unknown": "skip", "fact": "_xcm_plan"}
    tv = host_vars(
        "vm-001",
        xcluster_multus_sixth=trust_as_template("{{ 'tr' ~ 'ue' }}"),
        xcluster_multus_seventh="false",
        ansible_run_tags=["all"],
        ansible_skip_tags=["node_local_configure"],
    )
    out = action(args).run(task_vars=tv)
    assert out["switches"] == {"node_local": "auto", "sixth": "true", "seventh": "false"}
    assert out["host_roles"] == ["node_local", "sixth"]
    assert out["tagged"] == {
        "node_local_install": True,
        "node_local_configure": False,
        "sixth_install": True,
        "sixth_configure": True,
    }
    assert out["registry"] == [
        {"name": "node_local", "credentials": True},
        {"name": "sixth", "not_installed": "not installed: no source"},
        {"name": "seventh"},
    ]
