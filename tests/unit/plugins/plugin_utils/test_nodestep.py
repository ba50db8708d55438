# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""What site.yml's install asks of a node around its one push (plugins/plugin_utils/nodestep.py)
and the roles' probes that feed it (plugins/plugin_utils/roleplan.py): the one read command run
for real with sh on fake node trees (a stand-in activation script, a stand-in node-local, the
real daemon.sh with a stand-in daemon, the real multus base-config probe), then the rules that
say which roles' configure has work."""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import subprocess
import time

import pytest
from ansible_collections.xcluster.multus.plugins.plugin_utils import multus as mu
from ansible_collections.xcluster.multus.plugins.plugin_utils import nodestep as ns
from ansible_collections.xcluster.multus.plugins.plugin_utils import plan as p
from ansible_collections.xcluster.multus.plugins.plugin_utils import roleplan as rp

REPO = pathlib.Path(__file__).resolve().parents[4]
DAEMON = REPO / "roles/multus_service/files/daemon.sh"
TOKEN = "::xcm-node-test"


def _sh(cmd):
    r = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, check=False, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def _read(plan, roles, selected=None):
    cmd = ns.read_command(plan, roles, selected, TOKEN)
    return ns.parse(_sh(cmd), TOKEN) if cmd else {}


def _script(path, body):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


# ------------------------------------------------------------------ the probes, run for real


def test_multus_probe_needed_until_the_activation_says_nothing_would_change(tmp_path):
    act = tmp_path / "usr/lib/xcluster-multus/activate"
    probe = rp.multus_probe(str(act), "WOULD:")
    out = _sh(probe)
    assert ns.NEEDED in out and "not installed" in out  # first run: no script yet
    _script(act, 'echo "WOULD: write /etc/cni/net.d/00-multus.conf"\n')
    out = _sh(probe)
    assert ns.NEEDED in out and "WOULD: write" in out
    _script(act, '[ "$1" = check ] || exit 9\n')  # activated: its check says nothing
    assert ns.NEEDED not in _sh(probe)
    _script(act, "exit 3\n")  # a failing check is work too (configure says why)
    assert ns.NEEDED in _sh(probe)


def test_node_local_probe_needs_jq_and_an_answer(tmp_path):
    if not shutil.which("jq"):
        pytest.skip("jq missing")
    script = tmp_path / "opt/cni/bin/node-local"
    probe = rp.node_local_probe(str(script))
    assert ns.NEEDED in _sh(probe)  # not installed
    _script(script, 'echo "{\\"cniVersion\\":\\"0.4.0\\",\\"supportedVersions\\":[\\"0.4.0\\"]}"\n')
    assert ns.NEEDED not in _sh(probe)
    _script(script, "echo 'host-local: not found' >&2; exit 1\n")  # host-local missing beside it
    assert ns.NEEDED in _sh(probe)
    _script(script, 'echo "{\\"supportedVersions\\":[]}"\n')
    empty = tmp_path / "empty"
    empty.mkdir()
    env_path = f"PATH={empty}"  # no jq on this node: needed (configure then says so)
    assert ns.NEEDED in _sh(f"{env_path}; {probe}")


def test_multus_service_probe_with_the_real_daemon_script(tmp_path):
    bin_dir, run_dir = tmp_path / "bin", tmp_path / "run"
    bin_dir.mkdir()
    shutil.copy(shutil.which("sleep"), bin_dir / "multus-proxy")
    probe = rp.multus_service_probe(DAEMON.read_text(), ["multus-proxy"], str(bin_dir), str(run_dir))
    out = _sh(probe)
    assert ns.NEEDED in out and f"XCM-NOT-RUNNING {bin_dir}/multus-proxy" in out
    start = subprocess.run(
        [
            "sh",
            "-s",
            "--",
            "start",
            str(bin_dir / "multus-proxy"),
            str(run_dir / "multus-proxy.pid"),
            str(tmp_path / "proxy.log"),
            "0",
            "0",
            "300",
        ],
        stdin=DAEMON.open(),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "XCM-STARTED" in start.stdout
    try:
        out = _sh(probe)
        assert ns.NEEDED not in out and out.startswith("XCM-RUNNING ")
    finally:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int((run_dir / "multus-proxy.pid").read_text()), signal.SIGTERM)
    time.sleep(0.2)
    assert ns.NEEDED in _sh(probe)  # it exited: started again by the configure


# ------------------------------------------------------------------ one read, prechecks


def _plan(tmp_path, **over):
    net = tmp_path / "etc/cni/net.d"
    net.mkdir(parents=True, exist_ok=True)
    conf = str(net / "00-multus.conf")
    plan = {
        "cni_plugins": {"files": [], "node": {"after": []}},
        "node_local": {
            "files": [{"dest": "/opt/cni/bin/node-local"}],
            "node": {"probe": "echo 'node-local answers'", "after": ["node_local", "cni_plugins"]},
        },
        "multus": {
            "files": [{"dest": "/opt/cni/bin/multus"}],
            "node": {
                "precheck": {
                    "cmd": mu.base_config_probe(conf, str(tmp_path / "state")),
                    "check": "multus_base",
                    "args": {"conf_file": conf, "base_conf": ""},
                },
                "probe": f"echo '{ns.NEEDED} not activated'",
                "after": ["multus"],
            },
        },
        "whereabouts": {"files": [], "node": {"after": [], "always": True}},
    }
    plan.update(over)
    return plan, net


def test_one_read_gives_every_part_and_a_failing_part_does_not_stop_the_rest(tmp_path):
    plan, net = _plan(tmp_path)
    plan["node_local"]["node"]["probe"] = "false"
    (net / "10-bridge.conflist").write_text("{}")
    out = _read(plan, ["cni_plugins", "node_local", "multus", "whereabouts"])
    assert set(out) == {("node_local", "probe"), ("multus", "precheck"), ("multus", "probe")}
    assert "XCM-BASE file 10-bridge.conflist" in out[("multus", "precheck")]
    assert ns.NEEDED in out[("multus", "probe")]
    ns.prechecks("vm-002", plan, ["multus"], out)  # a base config: fine


def test_a_node_without_a_base_config_fails_naming_host_and_what_it_holds(tmp_path):
    plan, net = _plan(tmp_path)
    (net / "notes.txt").write_text("x")
    out = _read(plan, ["multus"])
    with pytest.raises(ns.NodeStepError, match=r"vm-003.*notes\.txt"):
        ns.prechecks("vm-003", plan, ["multus"], out)


def test_unselected_configure_reads_nothing_and_nothing_to_read_is_none(tmp_path):
    plan, _ = _plan(tmp_path)
    sel = p.tagged(["multus", "node_local"], ["multus_install", "node_local_install"], [])
    assert ns.read_command(plan, ["multus", "node_local"], sel, TOKEN) is None
    assert ns.read_command(plan, ["cni_plugins", "whereabouts"], None, TOKEN) is None


def test_a_bad_node_entry_is_refused_naming_the_host():
    with pytest.raises(ns.NodeStepError, match="vm-001.*multus.*expected a dict"):
        ns.prechecks("vm-001", {"multus": {"node": {"bogus": 1}}}, ["multus"], {})
    with pytest.raises(ns.NodeStepError, match="check one of"):
        ns.prechecks(
            "vm-001", {"multus": {"node": {"precheck": {"cmd": "true", "check": "x"}}}}, ["multus"], {}
        )


# ------------------------------------------------------------------ which configure has work


def test_to_configure_the_rules(tmp_path):
    plan, _ = _plan(tmp_path)
    roles = ["cni_plugins", "node_local", "multus", "whereabouts"]
    quiet = {("node_local", "probe"): "node-local answers\n", ("multus", "probe"): "\n"}
    # a no-op rerun: only what works on every run
    assert ns.to_configure(plan, roles, quiet) == [("whereabouts", "every run on this host")]
    # host-local changed: node-local is checked again; multus's own files: activated again
    changed = p.pushed(plan, {"changed_files": ["/opt/cni/bin/multus"]}, roles)
    changed["cni_plugins"]["changed"] = ["/opt/cni/bin/host-local"]
    got = dict(ns.to_configure(changed, roles, quiet))
    assert got["node_local"] == "cni_plugins changed" and got["multus"] == "multus changed"
    assert "cni_plugins" not in got
    # the probe says the node needs it
    got = dict(ns.to_configure(plan, roles, {("multus", "probe"): f"{ns.NEEDED} x\n"}))
    assert got["multus"].startswith("the node needs it") and got["node_local"].endswith("no answer")
    # no node entry (a role without a plan, e.g. a sixth role): always, as before
    assert ns.to_configure({"extra": {"files": []}}, ["extra"], {}) == [("extra", "no node entry")]
    # a role whose configure is not selected is left out
    sel = p.tagged(roles, ["whereabouts_install"], [])
    assert ns.to_configure(plan, roles, quiet, sel) == []


def test_the_read_fits_a_dropbear_command_with_every_role_on():
    """dropbear refuses a command over 9000 bytes: the read with every probe (both multus-service
    daemons on one host) stays well below, and runs."""
    plan = {
        "node_local": {"node": {"probe": rp.node_local_probe("/opt/cni/bin/node-local")}},
        "multus": {
            "node": {
                "precheck": {
                    "cmd": mu.base_config_probe("/etc/cni/net.d/10-multus.conf", "/var/lib/xcluster-multus"),
                    "check": "multus_base",
                },
                "probe": rp.multus_probe("/usr/lib/xcluster-multus/activate", "WOULD:"),
            }
        },
        "multus_service": {
            "node": {
                "probe": rp.multus_service_probe(
                    DAEMON.read_text(),
                    ["multus-service-controller", "multus-proxy"],
                    "/usr/local/bin",
                    "/var/run/multus-service",
                )
            }
        },
    }
    cmd = ns.read_command(plan, list(plan), None, TOKEN)
    assert len(cmd.encode()) < 6000, len(cmd.encode())
    out = ns.parse(_sh(cmd), TOKEN)
    assert out[("multus_service", "probe")].count("XCM-NOT-RUNNING") == 2


@pytest.mark.parametrize(
    ("kubectl", "needed", "why"),
    [
        (None, False, "no kubectl on this node"),
        (
            'echo "Unable to connect to the server: dial tcp 198.18.0.1:6443"; exit 1',
            False,
            "Unable to connect",
        ),
        ('case "$*" in *"get --raw /readyz") echo ok ;; *) exit 1 ;; esac', True, None),
    ],
)
def test_the_control_planes_manifests_probe_with_a_stand_in_kubectl(tmp_path, kubectl, needed, why):
    """On the control plane: an API server answers (configure applies the manifests), or the
    report and the warning say why not, and the configure does not run for that alone."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for tool in ("sh", "tail", "printf", "cat"):
        if shutil.which(tool):
            os.symlink(shutil.which(tool), bin_ / tool)
    if kubectl:
        _script(bin_ / "kubectl", kubectl + "\n")
    api = mu.api_probe("kubectl", 5, "/etc/kubernetes/kubeconfig.token")
    probe = rp.manifests_probe(api, "3.9.3 (multus-cni, delegates), manifests skipped: ", "vm-001: skipped: ")
    plan = {"multus": {"node": {"probe": probe, "after": ["multus"]}}}
    out = ns.parse(_sh(f"PATH={bin_}; " + ns.read_command(plan, ["multus"], None, TOKEN)), TOKEN)
    work = ns.to_configure(plan, ["multus"], out)
    reports, says = ns.untouched(["multus"], out, [r for r, _ in work])
    if needed:
        assert work == [("multus", "the node needs it: XCM-NEEDED an API server answers")]
        assert reports == {} and says == []
    else:
        assert work == []
        prefix = "3.9.3 (multus-cni, delegates), manifests skipped: "
        assert reports["multus"].startswith(prefix) and why in reports["multus"]
        assert says == [f"vm-001: skipped: ({reports['multus'][len(prefix) :]})"]
