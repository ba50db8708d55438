# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The activation script (roles/multus/files/activate.sh), rendered by the role's filter and run
with busybox sh (whose own `ip` applet it then uses, as on a busybox node) and with dash (and
iproute2's ip), against files in a temporary directory and real links (veths) in a network
namespace of the test's own."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import uuid

import pytest
from ansible_collections.xcluster.multus.plugins.plugin_utils.multus import (
    MultusError,
    activate_script,
    base_config,
    base_config_probe,
)

REPO = pathlib.Path(__file__).resolve().parents[4]
BODY = (REPO / "roles/multus/files/activate.sh").read_text()
SHELLS = {
    "busybox": [shutil.which("busybox") or "/bin/busybox", "sh"],
    "dash": [shutil.which("dash") or "/bin/dash"],
}
# The lab's base config, as tests/lab writes it (spacing and all).
BASE = """{
  "cniVersion": "0.4.0",
  "name": "cni-x",
  "type": "bridge",
  "bridge": "cbr0",
  "isGateway": true,
  "ipMasq": false,
  "ipam": {
    "type": "host-local",
    "ranges": [
      [ { "subnet": "198.19.130.0/24" } ],
      [ { "subnet": "2001:db8:128:2::/64" } ]
    ]
  }
}
"""

MULTUS_CONF = '{"cniVersion": "0.4.0", "name": "multus", "type": "multus", "clusterNetwork": "bridge"}\n'

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")


@pytest.fixture
def netns():
    """A network namespace of our own with links eth2, eth3, eth4 (veths, down)."""
    name = f"xcmact-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for i in (2, 3, 4):
            subprocess.run(
                ["ip", "-n", name, "link", "add", f"eth{i}", "type", "veth", "peer", "name", f"peer{i}"],
                check=True,
            )
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


class Node:
    """A node's files under tmp, the rendered script, and a runner inside the netns."""

    def __init__(self, tmp, netns, links=("eth2", "eth3", "eth4"), base_name="cni-x", base_conf=None):
        self.tmp = tmp
        self.netns = netns
        self.net_dir = tmp / "etc/cni/net.d"
        self.base = self.net_dir / "10-bridge.conf"
        self.moved = tmp / "etc/cni/multus/net.d/bridge.conf"
        self.state = tmp / "var/lib/xcluster-multus"
        self.conf = self.net_dir / "10-multus.conf"
        self.conf_src = tmp / "usr/lib/xcluster-multus/10-multus.conf"
        self.conf_src.parent.mkdir(parents=True)
        self.conf_src.write_text(MULTUS_CONF)
        self.script = tmp / "activate"
        self.script.write_text(
            activate_script(
                BODY,
                {
                    "base_conf": "" if base_conf is None else str(base_conf),
                    "moved_dir": str(self.moved.parent),
                    "conf_src": str(self.conf_src),
                    "multus_conf": str(self.conf),
                    "base_name": base_name,
                    "new_name": "bridge",
                    "links": list(links),
                    "state_dir": str(self.state),
                },
            )
        )
        self.script.chmod(0o755)

    def write_base(self, text=BASE, mode=0o640):
        self.base.parent.mkdir(parents=True, exist_ok=True)
        self.base.write_text(text)
        self.base.chmod(mode)

    def run(self, shell, *args):
        # PATH without the venv: the script must need nothing but sh, coreutils/busybox and ip.
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, *SHELLS[shell], str(self.script), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=False,
        )

    def up(self, link):
        out = subprocess.run(
            ["ip", "-n", self.netns, "-j", "link", "show", "dev", link],
            capture_output=True,
            text=True,
            check=True,
        )
        return "UP" in json.loads(out.stdout)[0]["flags"]


@pytest.fixture(params=sorted(SHELLS))
def shell(request):
    if not os.path.exists(SHELLS[request.param][0]):
        pytest.skip(f"{request.param} not installed")
    return request.param


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_apply_moves_renames_keeps_original_and_sets_links_up(tmp_path, netns, shell):
    node = Node(tmp_path, netns)
    node.write_base()
    before = sha(node.base)
    r = node.run(shell, "apply")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        f"CHANGED: moved {node.base} to {node.moved} (network cni-x renamed bridge)",
        f"CHANGED: wrote {node.conf}",
        "CHANGED: link eth2 set up",
        "CHANGED: link eth3 set up",
        "CHANGED: link eth4 set up",
    ]
    assert not node.base.exists()
    moved = json.loads(node.moved.read_text())
    assert moved == dict(json.loads(BASE), name="bridge")
    assert oct(node.moved.stat().st_mode & 0o777) == "0o644"
    assert sha(node.state / "base.conf") == before  # the original, byte for byte
    assert all(node.up(x) for x in ("eth2", "eth3", "eth4"))
    assert (node.state / "links-up").read_text().split() == ["eth2", "eth3", "eth4"]
    assert node.conf.read_text() == MULTUS_CONF  # written after the move, the only active config
    assert sorted(p.name for p in node.net_dir.iterdir()) == ["10-multus.conf"]

    # again: nothing to do
    r = node.run(shell, "apply")
    assert r.returncode == 0, r.stderr
    assert "CHANGED" not in r.stdout
    assert r.stdout.splitlines()[:2] == [
        f"OK: base config already at {node.moved}",
        f"OK: {node.conf} is multus's config",
    ]


def test_check_says_what_apply_would_do_and_changes_nothing(tmp_path, netns, shell):
    node = Node(tmp_path, netns)
    node.write_base()
    subprocess.run(["ip", "-n", netns, "link", "set", "eth3", "up"], check=True)
    r = node.run(shell, "check")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        f"WOULD: move {node.base} to {node.moved} (network cni-x renamed bridge)",
        f"WOULD: write {node.conf}",
        "WOULD: set link eth2 up",
        "OK: link eth3 is up",
        "WOULD: set link eth4 up",
    ]
    assert node.base.exists() and not node.moved.exists() and not node.state.exists()
    assert not node.conf.exists()
    assert not node.up("eth2")


def test_restore_gives_the_original_back_byte_for_byte(tmp_path, netns, shell):
    node = Node(tmp_path, netns)
    odd = BASE.replace('"name": "cni-x"', '"name"  :\t"cni-x"').replace("\n", "\r\n")  # odd spacing survives
    node.write_base(odd, mode=0o600)
    before = sha(node.base)
    subprocess.run(["ip", "-n", netns, "link", "set", "eth3", "up"], check=True)  # up before: stays up
    assert node.run(shell, "apply").returncode == 0
    assert json.loads(node.moved.read_text())["name"] == "bridge"
    r = node.run(shell, "restore")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        f"CHANGED: removed {node.conf}",
        f"CHANGED: restored {node.base} (removed {node.moved})",
        "CHANGED: link eth2 set down",
        "CHANGED: link eth4 set down",
    ]
    assert sha(node.base) == before
    assert oct(node.base.stat().st_mode & 0o777) == "0o600"
    assert not node.moved.exists()
    assert [node.up(x) for x in ("eth2", "eth3", "eth4")] == [False, True, False]
    r = node.run(shell, "restore")
    assert r.returncode == 0 and "CHANGED" not in r.stdout


def test_already_named_bridge_moves_unchanged(tmp_path, netns, shell):
    node = Node(tmp_path, netns)
    node.write_base(BASE.replace("cni-x", "bridge"))
    assert node.run(shell, "apply").returncode == 0
    assert node.moved.read_text() == BASE.replace("cni-x", "bridge")


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("other-name", 'has no "name": "cni-x" (nor "bridge"; found "kindnet"); not moved'),
        ("no-base", "no base CNI config: no *.conf, *.conflist or *.json in"),
        ("missing-link", "link eth9 does not exist"),
    ],
)
def test_errors_are_reported_and_the_rest_is_done(tmp_path, netns, shell, setup, message):
    links = ("eth2", "eth9") if setup == "missing-link" else ("eth2",)
    node = Node(tmp_path, netns, links=links)
    if setup == "other-name":
        node.write_base(BASE.replace("cni-x", "kindnet"))
    elif setup == "missing-link":
        node.write_base()
    r = node.run(shell, "apply")
    assert r.returncode == 1
    assert "activate: ERROR: " in r.stderr and message in r.stderr
    assert node.up("eth2")  # the other items are still done
    if setup == "other-name":
        assert node.base.exists() and not node.moved.exists() and not (node.state / "base.conf").exists()
    if setup != "missing-link":  # never multus active without its base config
        assert not node.conf.exists()


def test_name_with_a_dot_is_matched_literally(tmp_path, netns, shell):
    node = Node(tmp_path, netns, base_name="cni.x")
    node.write_base(BASE.replace("cni-x", "cniAx"))  # '.' must not match 'A'
    r = node.run(shell, "apply")
    assert r.returncode == 1 and "not moved" in r.stderr
    node.write_base(BASE.replace("cni-x", "cni.x"))
    r = node.run(shell, "apply")
    assert r.returncode == 0, r.stderr
    assert json.loads(node.moved.read_text())["name"] == "bridge"


def test_usage(tmp_path, netns, shell):
    r = Node(tmp_path, netns).run(shell, "bogus")
    assert r.returncode == 2 and "usage:" in r.stderr


CONFLIST = """{"cniVersion":"0.3.1","name":"k8s-pod-network","plugins":[{"type":"calico",
"name":"k8s-pod-network-0","ipam":{"type":"calico-ipam"}},{"type":"portmap","capabilities":{"portMappings":true}}]}"""


def test_any_primary_cni_conflist_moves_and_restores_byte_for_byte(tmp_path, netns, shell):
    node = Node(tmp_path, netns, base_name="")
    node.net_dir.mkdir(parents=True)
    base = node.net_dir / "10-calico.conflist"
    base.write_text(CONFLIST)
    (node.net_dir / "99-loopback.conf").write_text('{"cniVersion":"0.3.1","name":"lo","type":"loopback"}')
    (node.net_dir / "README").write_text("not a config")
    before = sha(base)
    r = node.run(shell, "apply")
    assert r.returncode == 0, r.stderr
    moved = node.moved.with_suffix(".conflist")
    assert r.stdout.splitlines()[:2] == [
        f"CHANGED: moved {base} to {moved} (network k8s-pod-network renamed bridge)",
        f"CHANGED: wrote {node.conf}",
    ]
    doc = json.loads(moved.read_text())
    assert doc["name"] == "bridge" and doc["plugins"][0]["name"] == "k8s-pod-network-0"  # only the network's
    assert sorted(p.name for p in node.net_dir.iterdir()) == ["10-multus.conf", "99-loopback.conf", "README"]
    r = node.run(shell, "restore")
    assert r.returncode == 0, r.stderr
    assert sha(base) == before and not moved.exists() and not node.conf.exists()


def test_a_config_sorting_before_multus_is_an_error(tmp_path, netns, shell):
    node = Node(tmp_path, netns, base_name="")
    node.net_dir.mkdir(parents=True)
    (node.net_dir / "05-first.conf").write_text(BASE.replace("cni-x", "first"))
    node.write_base()  # 10-bridge.conf sorts before 10-multus.conf
    r = node.run(shell, "apply")
    assert r.returncode == 1
    assert f"{node.base} comes before {node.conf} by name: the runtime would use it" in r.stderr
    assert not (node.net_dir / "05-first.conf").exists()  # the first by name was the base


# The Python rule (preflight, from one raw read) and the script pick the same base config.
LISTINGS = [
    ["10-bridge.conf"],
    ["10-multus.conf", "20-flannel.conflist"],
    ["99-loopback.conf", "05-cilium.conf", "README", "00-x.json.bak"],
    ["10-multus.conf"],
    [],
    ["Z.conf", "a.conf", "_.conflist"],
]


@pytest.mark.parametrize("names", LISTINGS)
def test_the_python_rule_and_the_script_agree(tmp_path, netns, names):
    node = Node(tmp_path, netns, base_name="", links=())
    node.net_dir.mkdir(parents=True)
    for n in names:
        (node.net_dir / n).write_text(BASE)
    probe = subprocess.run(
        ["sh", "-c", base_config_probe(str(node.conf), str(node.state))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    r = node.run("dash" if os.path.exists(SHELLS["dash"][0]) else "busybox", "check")
    try:
        chosen = base_config(probe, str(node.conf), host="vm-009")["path"]
    except MultusError as e:
        assert r.returncode == 1 and "no base CNI config" in r.stderr
        assert str(e).startswith("host vm-009: no base CNI config for multus to wrap")
        assert ", ".join(sorted(names)) in str(e) or (not names and "found nothing" in str(e))
        return
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith(f"WOULD: move {chosen} to ")
    # after apply, the probe says where the moved copy is and nothing is left to move
    node.run("busybox" if os.path.exists(SHELLS["busybox"][0]) else "dash", "apply")
    probe = subprocess.run(
        ["sh", "-c", base_config_probe(str(node.conf), str(node.state))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    got = base_config(probe, str(node.conf))
    assert got["moved"] and got["moved"].startswith(str(node.moved.parent))


@pytest.mark.skipif(not shutil.which("jq"), reason="the network name is read with jq when the node has it")
def test_only_the_networks_name_is_renamed_literally(tmp_path, netns, shell):
    node = Node(tmp_path, netns, base_name="")
    node.net_dir.mkdir(parents=True)
    base = node.net_dir / "10-x.conflist"
    base.write_text(
        '{\n  "plugins": [{"type": "bridge", "name": "cniAx"}],\n'
        '  "name": "cni.x",\n  "cniVersion": "0.4.0"\n}\n'
    )
    r = node.run(shell, "apply")
    assert r.returncode == 0, r.stderr
    doc = json.loads(node.moved.with_suffix(".conflist").read_text())
    assert doc["name"] == "bridge" and doc["plugins"][0]["name"] == "cniAx"  # '.' matched literally
