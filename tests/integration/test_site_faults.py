# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Faults and bad input through site.yml, on one netns lab of this module's own (tests/lab/lab,
3 nodes). What each node holds is read from its overlay upper dirs on this host (every file:
type, mode, sha256), so "nothing changed" and "nothing half-installed" are compared file by
file. The tests run in order on the shared lab (each needs the state the previous one left):

1. bad input fails in site.yml's preflight naming the host and the value, and no node
   changes: a host name without an index, two hosts with one index, a template without a
   placeholder, per-node ranges that overlap, an index too large for an IPv4 octet, and a
   multus archive whose sha256 does not match;
2. check mode on the fresh nodes changes nothing (and says what it would change);
3. a node unreachable in the middle of the run (its eth0 taken down between site.yml's one
   push and the activation, by the test callback tests/callback_plugins/xcm_probe.py): the
   other nodes converge, the cut-off node holds every file whole under its final name (the
   same bytes as the others') and was never activated; a rerun with it back activates it,
   installs no file there again, and changes nothing on the others. The rerun is at -vvv: the kubeconfig
   token shows in no output, and every secret file is mode 0600 (a push cut short in the
   middle of a file: tests/integration/test_cni_plugins_faults.py, tests/unit/);
4. check mode on the installed nodes changes nothing and reports nothing to change;
5. 100 concurrent ADDs of the installed node-local (with host-local) on one node, over ssh:
   100 distinct addresses of each family in the node's own range, all released by 100
   concurrent DELs.

Needs root and the archives of tests/artifacts/build-all.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import shlex
import subprocess

import labrun  # tests/helpers
import pytest
import yaml
from nodetree import delta, snapshot

REPO = labrun.REPO
ARCHIVES = labrun.ARCHIVES_DIR
MULTUS = "multus-cni_3.9.3_linux_amd64.tar.gz"
NODES = (1, 2, 3)
TOKEN = "xcm-fault-token-c2VjcmV0LWZhdWx0cw"
# every real run gets the multus kubeconfig (a secret) made from these; no whereabouts in this
# lab: the ipvlan NADs (whereabouts IPAM) are asked for explicitly (a case below checks the refusal)
SECRET_VARS = {
    "multus_kubeconfig_server": "https://198.19.250.1:6443",
    "multus_kubeconfig_token": TOKEN,
    "multus_nads_without_plugin": True,
}
KUBECONFIG = "etc/kubernetes/kubeconfig.token"


class Lab(labrun.Lab):
    def __init__(self, env, tmp):
        super().__init__(env)
        self.tmp = tmp

    def snapshot(self):
        """Each node's writes: its overlay upper dirs and its private /tmp."""
        return {
            n: {
                **self.upper(n),
                **{"tmp/" + k: v for k, v in snapshot(os.path.join(self.node_dir(n), "tmp")).items()},
            }
            for n in NODES
        }

    def changes(self):
        now = self.snapshot()
        return {n: delta(self.fresh[n], now[n]) for n in NODES}

    def close_masters(self):
        """No ssh control master left from earlier commands: every run connects anew."""
        for n in NODES:
            subprocess.run(
                ["ssh", "-F", os.path.join(self.state, "ssh_config"), "-O", "exit", f"vm-{n:03d}"],
                capture_output=True,
                check=False,
            )

    def variant(self, name, rename=None, host_vars=None):
        """An inventory beside the lab's (so its group_vars apply): hosts renamed, host vars added."""
        with open(self.inventory) as f:
            inv = yaml.safe_load(f)
        hosts = inv["all"]["children"]["xcluster"]["hosts"]
        for old, new in (rename or {}).items():
            hosts[new] = hosts.pop(old)
        for host, values in (host_vars or {}).items():
            hosts[host] = {**(hosts[host] or {}), **values}
        path = os.path.join(self.state, f"inventory-{name}.yml")
        with open(path, "w") as f:
            yaml.safe_dump(inv, f)
        return path

    def play(self, *args, inventory=None, ok=True, extra=None, env=None):
        """site.yml with the lab's archives and the secret vars; -> (output, recap {host: counts})."""
        vf = os.path.join(self.tmp, "vars.json")
        with open(vf, "w") as f:
            json.dump({**SECRET_VARS, **(extra or {})}, f)
        self.close_masters()
        env = {**self.env, **(env or {})}
        r = super().play("site.yml", "-e", f"@{vf}", *args, inventory=inventory, env=env)
        assert (r.rc == 0) == ok, r.out[-8000:]
        assert TOKEN not in r.out, "the kubeconfig token showed in the output"
        return r.out, r.recap


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    labrun.require_lab()
    tmp = str(tmp_path_factory.mktemp("faults"))
    lab = Lab(labrun.lab_env(f"xsf{os.getpid() % 100000}", len(NODES)), tmp)  # the base roles only
    with labrun.running(lab):
        lab.fresh = lab.snapshot()
        yield lab


# ------------------------------------------------------------------- 1. preflight faults


def _tampered_multus(lab):
    """A copy of the multus archive with one byte changed, beside the real SHA256SUMS."""
    d = os.path.join(lab.tmp, "tampered")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(ARCHIVES, MULTUS), "rb") as f:
        data = bytearray(f.read())
    data[-100] ^= 0xFF
    with open(os.path.join(d, MULTUS), "wb") as f:
        f.write(data)
    return {"multus_archive_dirs": [d], "multus_checksum": os.path.join(ARCHIVES, "SHA256SUMS")}


SEED_MACVLAN = {  # the seed's macvlan: a rangeStart per node and no rangeEnd (overlaps the next node)
    "cniVersion": "0.4.0",
    "name": "macvlan",
    "ipam": {"type": "host-local", "ranges": [[{"subnet": "198.18.0.0/16", "rangeStart": "198.18.%.0"}]]},
}
NO_PLACEHOLDER = {
    "cniVersion": "0.4.0",
    "name": "macvlan",
    "ipam": {"type": "host-local", "ranges": [[{"subnet": "198.18.0.0/16", "rangeStart": "198.18.7.0"}]]},
}
PREFLIGHT = {
    "hostname-without-index": (
        {"rename": {"vm-002": "node-b"}},
        {},
        r"host node-b: host name 'node-b' does not match the index pattern",
    ),
    "two-hosts-one-index": (
        {"host_vars": {"vm-003": {"node_local_index": 2}}},
        {},
        r"hosts vm-002 and vm-003 both have node index 2",
    ),
    "template-without-placeholder": (
        {},
        {"macvlan": NO_PLACEHOLDER},
        r"node-local config 'macvlan': host vm-001 \(index 1\): template .*'rangeStart': '198\.18\.7\.0'.*"
        r"has no placeholder",
    ),
    "overlapping-ranges": (
        {},
        {"macvlan": SEED_MACVLAN},
        r"node-local config 'macvlan': the ranges of two hosts overlap.*vm-001.*vm-002",
    ),
    "index-too-large-for-an-octet": (
        {"host_vars": {"vm-003": {"node_local_index": 300}}},
        {},
        r"host vm-003 \(index 300\): \S+ is '198\.19\.300\.128/25'",
    ),
    "nad-without-its-plugin": (
        {},
        {"multus_nads_without_plugin": False},
        r"host vm-001: NAD ipvlan uses whereabouts; NAD ipvlan2 uses whereabouts, which is not installed.*"
        r"SETUP=None.*multus_nads_skip.*multus_nads_without_plugin: true",
    ),
    "multus-archive-checksum-mismatch": (
        {},
        "tampered",
        rf"sha256 mismatch for \S+/tampered/{re.escape(MULTUS)}: expected [0-9a-f]{{64}}",
    ),
}


@pytest.mark.parametrize("case", PREFLIGHT.values(), ids=PREFLIGHT.keys())
def test_bad_input_fails_in_preflight_and_no_node_changes(lab, case):
    inv_change, configs, expect = case
    inventory = lab.variant(re.sub(r"\W", "", expect)[:20], **inv_change) if inv_change else None
    if configs == "tampered":
        extra = _tampered_multus(lab)
    elif "multus_nads_without_plugin" in configs:
        extra = configs
    elif configs:
        with open(os.path.join(REPO, "tests", "lab", "group_vars", "all", "node_local.yml")) as f:
            base = yaml.safe_load(f)
        extra = {"node_local_configs": {**base["node_local_configs"], **configs}}
    else:
        extra = {}
    out, recap = lab.play(inventory=inventory, extra=extra, ok=False)
    assert re.search(expect, out), out[-6000:]
    # it stopped in the preflight play, for every host (any_errors_fatal): no install task ran
    assert "PLAY [Install and activate]" not in out, out[-3000:]
    assert all(r["changed"] == 0 for r in recap.values()), recap
    assert lab.changes() == {n: {} for n in NODES}


# ------------------------------------------------------------------ 2. check mode, fresh


def test_check_mode_on_fresh_nodes_changes_nothing(lab):
    out, recap = lab.play("--check")
    assert set(recap) == {f"vm-{n:03d}" for n in NODES}
    assert all(r["changed"] > 0 and r["failed"] == 0 for r in recap.values()), (
        recap
    )  # it says what it would do
    assert lab.changes() == {n: {} for n in NODES}


# ------------------------------------------------- 3. a node unreachable in the middle


def _bin(changes):
    return {k: v[1] for k, v in changes.items() if k.startswith("opt/cni/bin/") and v[1]}


def test_node_unreachable_mid_run_then_rerun_converges(lab):
    # vm-002's management cable pulled: its eth0's peer on the lab's bridge set down (the node's
    # addresses stay); its ssh control master closed first (else sessions would hang on it)
    port = ["ip", "-n", f"{lab.prefix}-fabric", "link", "set", "n002e0"]
    ssh_config = os.path.join(lab.state, "ssh_config")
    hook = {
        "ANSIBLE_CALLBACK_PLUGINS": os.path.join(REPO, "tests", "callback_plugins"),
        "ANSIBLE_CALLBACKS_ENABLED": "xcm_probe",
        "XCM_PROBE_HOOK_TASK": "multus.multus : Activate multus",
        "XCM_PROBE_HOOK_CMD": (
            f"ssh -F {ssh_config} -o ControlPath={lab.state}/cp/%C -O exit vm-002 2>/dev/null; "
            f"{' '.join(port)} down"
        ),
    }
    try:
        out, recap = lab.play(ok=False, env=hook)
    finally:
        subprocess.run([*port, "up"], check=True)
    assert recap["vm-002"]["unreachable"] == 1, recap
    for h in ("vm-001", "vm-003"):
        assert recap[h]["unreachable"] == recap[h]["failed"] == 0 and recap[h]["changed"] > 0, recap
    after1 = lab.snapshot()
    ch = {n: delta(lab.fresh[n], after1[n]) for n in NODES}

    # the others converged: installed and activated
    for n in (1, 3):
        assert ch[n]["etc/cni/net.d/10-bridge.conf"][1] is None, f"vm-00{n}: base config not moved"
        assert ch[n]["etc/cni/net.d/10-multus.conf"][1][0] == "f"
        assert ch[n]["opt/cni/bin/multus-cni"][1][:2] == ("f", 0o755)
    # the cut-off node: site.yml's one push before the cut, every file whole under its final
    # name (the same bytes as on vm-001), no leftover temporary file, never activated
    two = ch[2]
    assert "etc/cni/net.d/10-bridge.conf" not in two, "vm-002's base config changed"
    assert "etc/cni/multus/net.d/bridge.conf" not in two and "var/lib/xcluster-multus/base.conf" not in two
    # multus's config waits beside the activation; never active before the base config moved
    assert "etc/cni/net.d/10-multus.conf" not in two
    staged = "usr/lib/xcluster-multus/10-multus.conf"
    assert two[staged] == ch[1][staged]
    assert not [k for k in two if ".xcm-" in k], sorted(two)
    bin1, bin2 = _bin(ch[1]), _bin(two)
    assert len(bin2) == 18 and bin2 == bin1, sorted(bin2)  # 16 plugins, node-local, multus-cni
    assert two["etc/cni/node-local/.index"][1][2] == hashlib.sha256(b"2\n").hexdigest()

    # the rerun with vm-002 back (at -vvv): it activates vm-002, installs no file there again
    # (they are all there) and changes nothing elsewhere
    out, recap = lab.play("-vvv")
    assert recap["vm-002"]["changed"] > 0 and recap["vm-002"]["failed"] == 0, recap
    assert recap["vm-001"]["changed"] == recap["vm-003"]["changed"] == 0, recap
    assert "censored" in out  # the secret's tasks ran, hidden (TOKEN absence is checked in play())
    after2 = lab.snapshot()
    for n in (1, 3):
        assert delta(after1[n], after2[n]) == {}, f"vm-00{n} changed by the rerun"
    # vm-002: only the activation's doing; no file installed again (push_files' records, which
    # a new install rewrites with the new file's inode and ctime, are as the first run left them)
    assert set(delta(after1[2], after2[2])) == {"etc/cni/net.d/10-bridge.conf", *labrun.ACTIVATION_MADE} | {
        k for k in after2[2] if k.startswith("etc/cni/multus") and k not in after1[2]
    }
    ch = {n: delta(lab.fresh[n], after2[n]) for n in NODES}
    assert set(ch[2]) == set(ch[1]) == set(ch[3])
    assert _bin(ch[2]) == _bin(ch[1]) == _bin(ch[3])
    # secrets: mode 0600 on every node, and the token is in them (they did arrive)
    for n in NODES:
        assert ch[n][KUBECONFIG][1][:2] == ("f", 0o600), ch[n][KUBECONFIG]
        with open(os.path.join(lab.node_dir(n), "upper", KUBECONFIG)) as f:
            assert TOKEN in f.read()
    lab.installed = after2


# ---------------------------------------------------------------- 4. check mode, installed


def test_check_mode_on_installed_nodes_changes_nothing(lab):
    out, recap = lab.play("--check")
    assert all(r["changed"] == 0 and r["failed"] == 0 for r in recap.values()), recap
    now = lab.snapshot()
    assert {n: delta(lab.installed[n], now[n]) for n in NODES} == {n: {} for n in NODES}


# ------------------------------------------------------ 5. 100 concurrent ADDs on one node

CONCURRENT = r"""
set -e
cmd=$1 d=/tmp/xcm-concurrent leases=/var/lib/cni/networks/node-local-macvlan
rm -rf "$d"; mkdir -p "$d"; mkfifo "$d/gate"
ip netns add xcm-concurrent 2>/dev/null || true
export CNI_NETNS=/var/run/netns/xcm-concurrent CNI_IFNAME=net1 CNI_PATH=/opt/cni/bin
conf='{"cniVersion":"1.0.0","name":"xcm-concurrent","type":"macvlan","master":"eth3",
 "ipam":{"type":"node-local","cfg":"macvlan"}}'
exec 3<>"$d/gate" # held open here: no job blocks in open(); each waits for its line
i=0
while [ "$i" -lt 100 ]; do
  (read -r _ <"$d/gate"; rc=0
   printf '%s\n' "$conf" | CNI_COMMAND=$cmd CNI_CONTAINERID="xcm-$i" /opt/cni/bin/node-local \
     >"$d/$i.out" 2>"$d/$i.err" || rc=$?
   echo "$rc" >"$d/$i.rc") &
  i=$((i + 1))
done
i=0
while [ "$i" -lt 100 ]; do echo; i=$((i + 1)); done >&3 # all 100 go at once
wait
exec 3>&-
i=0
while [ "$i" -lt 100 ]; do
  printf '%s %s\n' "$(cat "$d/$i.rc")" "$(tr -d '\n' <"$d/$i.out")"
  i=$((i + 1))
done
echo LEASES "$(ls "$leases" | grep -c -v -e '^lock$' -e '^last_reserved_ip' || true)"
"""


def _concurrent(lab, command):
    out = lab.ssh(1, f"sh -c {shlex.quote(CONCURRENT)} concurrent {command}")
    lines = out.splitlines()
    leases = int(lines[-1].split()[1])
    results = [ln.split(" ", 1) for ln in lines[:-1]]
    assert len(results) == 100
    return results, leases


def test_hundred_concurrent_adds_on_one_node(lab):
    results, leases = _concurrent(lab, "ADD")
    assert [r[0] for r in results] == ["0"] * 100, [r for r in results if r[0] != "0"][:3]
    ips = [ipaddress.ip_interface(ip["address"]).ip for r in results for ip in json.loads(r[1])["ips"]]
    v4 = {ip for ip in ips if ip.version == 4}
    v6 = {ip for ip in ips if ip.version == 6}
    assert len(v4) == len(v6) == 100, (len(v4), len(v6))
    lo4, hi4 = ipaddress.ip_address("198.18.1.0"), ipaddress.ip_address("198.18.1.255")
    lo6, hi6 = (
        ipaddress.ip_address("2001:db8:15::198.18.1.0"),
        ipaddress.ip_address("2001:db8:15::198.18.1.255"),
    )
    assert all(lo4 <= ip <= hi4 for ip in v4) and all(lo6 <= ip <= hi6 for ip in v6)
    assert leases == 200

    results, leases = _concurrent(lab, "DEL")
    assert [r for r in results if r != ["0", ""]] == []
    assert leases == 0
    lab.ssh(1, "ip netns del xcm-concurrent; rm -rf /tmp/xcm-concurrent")
