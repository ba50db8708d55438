"""The node-local IPAM script with REAL host-local (Debian's containernetworking-plugins) in REAL
network namespaces. Only 198.18.0.0/15 and 2001:db8::/32, only inside namespaces made here."""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import pathlib
import re
import shutil
import stat
import subprocess
import tempfile
import uuid

import pytest
from ansible_collections.xcluster.multus.plugins.plugin_utils.nodeindex import PLACEHOLDER_RE
from nodelocal_cases import (
    CNI_DIR,
    HOST_LOCAL,
    LAB_DEFAULT,
    LAB_MACVLAN,
    SCRIPT,
    SHELLS,
    have,
    plugin_config,
    run_script,
)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates network namespaces (ip netns add)"),
    pytest.mark.skipif(not have("ip", "jq", "busybox", "dash"), reason="needs iproute2, jq, busybox, dash"),
    pytest.mark.skipif(
        not HOST_LOCAL.exists(), reason=f"{HOST_LOCAL} missing: apt-get install containernetworking-plugins"
    ),
]


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture
def make_netns():
    """Creates network namespaces of our own (unique names); all removed afterwards."""
    made = []

    def make():
        name = f"nlt-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        made.append(name)
        return name

    yield make
    for name in made:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def netns(make_netns):
    """A network namespace of our own (a pod)."""
    return make_netns()


@pytest.fixture
def node(tmp_path):
    """A node-local dir (cfg files + .index 7) whose configs keep leases under tmp_path/data."""
    return Node(tmp_path, index="7")


class Node:
    def __init__(self, tmp, index=None):
        self.dir = tmp / "node-local"
        self.dir.mkdir()
        self.data = tmp / "data"
        for name, template in (("macvlan", LAB_MACVLAN), ("default", LAB_DEFAULT)):
            conf = copy.deepcopy(template)
            conf["ipam"]["dataDir"] = str(self.data)
            (self.dir / name).write_text(json.dumps(conf, indent=2) + "\n")
        if index is not None:
            (self.dir / ".index").write_text(index + "\n")

    def env(self, command="ADD", netns="/dev/null", container="c1", ifname="net2", **extra):
        env = {
            "NODE_LOCAL_DIR": str(self.dir),
            "NODE_LOCAL_HOST_LOCAL": str(HOST_LOCAL),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container,
            "CNI_NETNS": netns,
            "CNI_IFNAME": ifname,
            "CNI_PATH": str(CNI_DIR),
        }
        env.update(extra)
        return env

    def leases(self, cfg="macvlan"):
        """Lease files (one per allocated address) -> their content."""
        d = self.data / f"node-local-{cfg}"
        if not d.exists():
            return {}
        return {
            p.name: p.read_text()
            for p in d.iterdir()
            if p.name != "lock" and not p.name.startswith("last_reserved_ip")
        }


def _ns_path(name):
    return f"/var/run/netns/{name}"


def _ips(result):
    return [ipaddress.ip_interface(ip["address"]) for ip in result["ips"]]


def _in_node_range(iface, index):
    if iface.version == 4:
        lo, hi = f"198.18.{index}.0", f"198.18.{index}.255"
    else:
        lo, hi = f"2001:db8:15::198.18.{index}.0", f"2001:db8:15::198.18.{index}.255"
    return ipaddress.ip_address(lo) <= iface.ip <= ipaddress.ip_address(hi)


# ------------------------------------------------------------------------ ADD / CHECK / DEL


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_add_check_del(node, netns, shell):
    conf = plugin_config("macvlan")
    env = node.env(netns=_ns_path(netns), container="ctr-a")

    add = run_script(conf, node.env(netns=_ns_path(netns), container="ctr-a"), shell)
    assert add.returncode == 0, add.stdout + add.stderr
    result = json.loads(add.stdout)
    assert result["cniVersion"] == "1.0.0"
    ips = _ips(result)
    assert sorted(i.version for i in ips) == [4, 6]
    assert all(_in_node_range(i, 7) for i in ips), ips
    assert str(ips[0].network) == "198.18.0.0/16"
    leases = node.leases()
    assert sorted(leases) == sorted(str(i.ip) for i in ips)
    assert all(text.splitlines()[0] == "ctr-a" and "net2" in text for text in leases.values()), leases

    check = run_script(conf, {**env, "CNI_COMMAND": "CHECK"}, shell)
    assert (check.returncode, check.stdout) == (0, ""), check.stdout + check.stderr

    for _ in range(2):  # DEL twice is fine
        dele = run_script(conf, {**env, "CNI_COMMAND": "DEL"}, shell)
        assert (dele.returncode, dele.stdout) == (0, ""), dele.stdout + dele.stderr
        assert node.leases() == {}
    remaining = sorted(p.name for p in (node.data / "node-local-macvlan").iterdir())
    assert remaining == ["last_reserved_ip.0", "last_reserved_ip.1", "lock"]

    # CHECK after DEL: host-local's own error and exit code come through unchanged
    check = run_script(conf, {**env, "CNI_COMMAND": "CHECK"}, shell)
    assert check.returncode != 0
    assert "Failed to find address added by container ctr-a" in json.loads(check.stdout)["msg"]


def test_index_from_hostname(tmp_path, netns):
    node = Node(tmp_path, index=None)  # no .index: the host name decides
    prefix = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', "vm-0042"]
    add = run_script(plugin_config("default"), node.env(netns=_ns_path(netns)), prefix=prefix)
    assert add.returncode == 0, add.stdout + add.stderr
    ips = [str(i) for i in _ips(json.loads(add.stdout))]
    # the first free address of each subnet: host-local skips the gateway (.129, and ::1 by default)
    assert ips == ["198.19.42.130/25", "2001:db8:11::c613:2a02/120"]


def test_index_file_wins_over_hostname(node, netns):
    prefix = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', "vm-003"]
    add = run_script(plugin_config("macvlan"), node.env(netns=_ns_path(netns)), prefix=prefix)
    assert add.returncode == 0, add.stdout + add.stderr
    assert all(_in_node_range(i, 7) for i in _ips(json.loads(add.stdout)))


def test_host_local_beside_the_script_and_version(node, tmp_path, netns):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shutil.copy(SCRIPT, bindir / "node-local")
    (bindir / "host-local").symlink_to(HOST_LOCAL)
    env = node.env(netns=_ns_path(netns))
    del env["NODE_LOCAL_HOST_LOCAL"]
    add = run_script(plugin_config("macvlan"), env, script=bindir / "node-local")
    assert add.returncode == 0, add.stdout + add.stderr
    assert len(node.leases()) == 2

    version_in = '{"cniVersion":"0.4.0"}'
    own = subprocess.run(
        [str(HOST_LOCAL)],
        input=version_in,
        env={"CNI_COMMAND": "VERSION"},
        capture_output=True,
        text=True,
        check=False,
    )
    ours = run_script(version_in, {**env, "CNI_COMMAND": "VERSION"}, script=bindir / "node-local")
    assert (ours.returncode, ours.stdout) == (own.returncode, own.stdout)
    assert "1.0.0" in json.loads(ours.stdout)["supportedVersions"]


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0"])
def test_result_in_the_callers_version(node, netns, version):
    conf = plugin_config("macvlan", version=version)
    env = node.env(netns=_ns_path(netns))
    add = run_script(conf, env)
    assert add.returncode == 0, add.stdout + add.stderr
    assert json.loads(add.stdout)["cniVersion"] == version
    check = run_script(conf, {**env, "CNI_COMMAND": "CHECK"})
    assert check.returncode == 0, check.stdout


def test_old_version_check_is_host_locals_answer(node, netns):
    """A 0.3.1 caller has no CHECK; host-local says so itself (its output, its exit code)."""
    conf = plugin_config("macvlan", version="0.3.1")
    check = run_script(conf, node.env(command="CHECK", netns=_ns_path(netns)))
    own = subprocess.run(
        [str(HOST_LOCAL)],
        input=json.dumps(
            {**conf, "name": "node-local-macvlan", "ipam": {"type": "host-local", "ranges": []}}
        ),
        env=node.env(command="CHECK", netns=_ns_path(netns)),
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == own.returncode != 0
    assert json.loads(check.stdout) == json.loads(own.stdout)


def test_networks_on_one_cfg_share_one_lease_store(node, netns):
    a = run_script(plugin_config("macvlan", name="net-a"), node.env(netns=_ns_path(netns), container="c1"))
    b = run_script(plugin_config("macvlan", name="net-b"), node.env(netns=_ns_path(netns), container="c2"))
    assert a.returncode == b.returncode == 0, a.stdout + b.stdout
    ips_a, ips_b = _ips(json.loads(a.stdout)), _ips(json.loads(b.stdout))
    assert not {i.ip for i in ips_a} & {i.ip for i in ips_b}
    assert sorted(p.name for p in node.data.iterdir()) == ["node-local-macvlan"]
    assert len(node.leases()) == 4


def test_fifty_adds_at_once(node, netns):
    conf = json.dumps(plugin_config("macvlan"))

    def start(command, i):
        env = {
            "PATH": os.environ["PATH"],
            **node.env(command=command, netns=_ns_path(netns), container=f"c{i:02d}"),
        }
        return subprocess.Popen(
            [*SHELLS["busybox"], str(SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )

    procs = [start("ADD", i) for i in range(50)]  # all started before any is fed
    outs = [p.communicate(conf, timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 50, outs
    results = [_ips(json.loads(out)) for out, _ in outs]
    v4 = {i.ip for r in results for i in r if i.version == 4}
    v6 = {i.ip for r in results for i in r if i.version == 6}
    assert len(v4) == len(v6) == 50
    assert all(_in_node_range(i, 7) for r in results for i in r)
    leases = node.leases()
    assert len(leases) == 100
    assert {t.splitlines()[0] for t in leases.values()} == {f"c{i:02d}" for i in range(50)}

    procs = [start("DEL", i) for i in range(50)]
    outs = [p.communicate(conf, timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 50, outs
    assert node.leases() == {}


# ------------------------------------------------------- inside a real plugin (macvlan), a pod


def test_as_ipam_of_the_real_macvlan_plugin(node, tmp_path, make_netns):
    """macvlan (real) on a node namespace with master eth3 calls node-local from CNI_PATH for a pod."""
    node_ns, pod_ns = make_netns(), make_netns()
    subprocess.run(
        ["ip", "-n", node_ns, "link", "add", "eth3", "type", "veth", "peer", "name", "eth3-peer"], check=True
    )
    for ns in (node_ns, pod_ns):  # no IPv6 DAD wait (macvlan waits for addresses to settle)
        for conf in ("all", "default"):
            sysctl = f"net.ipv6.conf.{conf}.accept_dad=0"
            subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", sysctl], check=True)
    for dev in ("eth3", "eth3-peer"):
        subprocess.run(["ip", "-n", node_ns, "link", "set", dev, "up"], check=True)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shutil.copy(SCRIPT, bindir / "node-local")  # run by its #!/bin/sh line
    (bindir / "host-local").symlink_to(HOST_LOCAL)
    env = node.env(netns=_ns_path(pod_ns), container="pod-1", CNI_PATH=f"{bindir}:{CNI_DIR}")
    del env["NODE_LOCAL_HOST_LOCAL"]
    env["PATH"] = os.environ["PATH"]
    conf = plugin_config("macvlan")

    def macvlan(command, prev=None):
        return subprocess.run(
            ["ip", "netns", "exec", node_ns, str(CNI_DIR / "macvlan")],
            input=json.dumps(conf if prev is None else {**conf, "prevResult": prev}),
            env={**env, "CNI_COMMAND": command},
            capture_output=True,
            text=True,
            check=False,
        )

    add = macvlan("ADD")
    assert add.returncode == 0, add.stdout + add.stderr
    result = json.loads(add.stdout)
    addrs = {str(i) for i in _ips(result)}
    shown = subprocess.run(
        ["ip", "-n", pod_ns, "-j", "addr", "show", "dev", "net2"], capture_output=True, text=True, check=True
    )
    in_pod = {f"{a['local']}/{a['prefixlen']}" for a in json.loads(shown.stdout)[0]["addr_info"]}
    assert addrs <= in_pod, (addrs, in_pod)
    assert all(_in_node_range(ipaddress.ip_interface(a), 7) for a in addrs)
    check = macvlan("CHECK", result)
    assert check.returncode == 0, check.stdout + check.stderr
    dele = macvlan("DEL", result)
    assert dele.returncode == 0, dele.stdout + dele.stderr
    assert node.leases() == {}


# -------------------------------------------------------------------------------- bad input


class Bad:
    """A bad input and the CNI error it must give."""

    def __init__(self, stdin, code, msg, details="", *, setup=None, env=None):
        self.stdin, self.code, self.msg, self.details = stdin, code, msg, details
        self.setup, self.env = setup, env or {}


def _writes(name, text):
    """Setup: write a file into the node-local dir (@data: the test's lease dir)."""
    return lambda node: (node.dir / name).write_text(text.replace("@data", str(node.data)))


mac = plugin_config("macvlan")
bad = plugin_config("bad")
BAD = {
    "no-cfg": Bad(plugin_config(None), 7, r"no ipam.cfg string", r"expected \"ipam\""),
    "empty-cfg": Bad(plugin_config(""), 7, r"no ipam.cfg string"),
    "cfg-not-string": Bad(plugin_config(5), 7, r"no ipam.cfg string"),
    "no-ipam": Bad({"cniVersion": "0.4.0", "name": "n"}, 7, r"no ipam.cfg string"),
    "cfg-parent": Bad(
        plugin_config("../node-local/macvlan"), 7, r"invalid ipam.cfg", r"cfg '\.\./node-local"
    ),
    "cfg-slash": Bad(plugin_config("sub/macvlan"), 7, r"invalid ipam.cfg", r"no '\.\.'"),
    "cfg-absolute": Bad(plugin_config("/etc/passwd"), 7, r"invalid ipam.cfg"),
    "cfg-dotdot": Bad(plugin_config(".."), 7, r"invalid ipam.cfg"),
    "cfg-dotdot-inside": Bad(plugin_config("a..b"), 7, r"invalid ipam.cfg"),
    "cfg-leading-dot": Bad(plugin_config(".index"), 7, r"invalid ipam.cfg", r"not starting with '\.'"),
    "cfg-space": Bad(plugin_config("mac vlan"), 7, r"invalid ipam.cfg"),
    "cfg-newline": Bad(plugin_config("macvlan\n"), 7, r"invalid ipam.cfg"),
    "cfg-missing": Bad(plugin_config("nosuch"), 5, r"cannot read the config for cfg 'nosuch'", r"/nosuch"),
    "cfg-directory": Bad(plugin_config("adir"), 5, r"cannot read", setup=lambda n: (n.dir / "adir").mkdir()),
    "cfg-dangling-link": Bad(
        plugin_config("link"), 5, r"cannot read", setup=lambda n: (n.dir / "link").symlink_to(n.dir / "gone")
    ),
    "cfg-not-json": Bad(
        bad, 6, r"invalid config for cfg 'bad'", r"not valid JSON", setup=_writes("bad", "{x\n")
    ),
    "cfg-empty": Bad(bad, 6, r"invalid config", r"not one JSON object", setup=_writes("bad", "")),
    "cfg-two-docs": Bad(bad, 6, r"invalid config", r"not one JSON object", setup=_writes("bad", "{}\n{}\n")),
    "cfg-array": Bad(bad, 6, r"invalid config", r"not one JSON object", setup=_writes("bad", "[]\n")),
    "cfg-no-ipam": Bad(bad, 7, r"invalid config", r"no \"ipam\"", setup=_writes("bad", '{"name":"x"}')),
    "cfg-other-ipam": Bad(
        bad,
        7,
        r"invalid config",
        r"ipam.type \"whereabouts\"",
        setup=_writes(
            "bad", '{"ipam":{"type":"whereabouts","ranges":[[{"subnet":"198.18.0.0/24"}]],"dataDir":"@data"}}'
        ),
    ),
    "stdin-not-json": Bad("{cniVersion", 6, r"not a JSON object"),
    "stdin-empty": Bad("", 6, r"not a JSON object"),
    "stdin-array": Bad("[]", 6, r"not a JSON object"),
    "stdin-two-docs": Bad("{} {}", 6, r"not a JSON object"),
    "index-zero": Bad(mac, 100, r"no node index", r"got '0'", setup=_writes(".index", "0\n")),
    "index-word": Bad(mac, 100, r"no node index", r"got 'vm-003'", setup=_writes(".index", "vm-003\n")),
    "index-empty": Bad(mac, 100, r"no node index", setup=_writes(".index", "")),
    "index-leading-zero": Bad(mac, 100, r"no node index", setup=_writes(".index", "07")),
    "host-local-missing": Bad(
        mac,
        5,
        r"host-local not found",
        r"/nonexistent/host-local",
        env={"NODE_LOCAL_HOST_LOCAL": "/nonexistent/host-local"},
    ),
    "host-local-not-executable": Bad(
        mac, 5, r"host-local not found", env={"NODE_LOCAL_HOST_LOCAL": "@dir/macvlan"}
    ),
}


@pytest.mark.parametrize("case", BAD.values(), ids=BAD.keys())
def test_bad_input_gives_cni_error(node, case):
    if case.setup:
        case.setup(node)
    env = {k: v.replace("@dir", str(node.dir)) for k, v in case.env.items()}
    _assert_cni_error(node, run_script(case.stdin, {**node.env(), **env}), case)


def _assert_cni_error(node, run, case):
    assert run.returncode == 1, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 1, run.stdout
    err = json.loads(lines[0])
    assert sorted(err) == ["cniVersion", "code", "details", "msg"]
    assert err["code"] == case.code, err
    assert re.search(case.msg, err["msg"]), err
    assert re.search(case.details, err["details"]), err
    version = case.stdin.get("cniVersion", "1.0.0") if isinstance(case.stdin, dict) else "1.0.0"
    assert err["cniVersion"] == version
    assert not node.data.exists(), "nothing may be allocated"


@pytest.mark.parametrize("host", ["node-a", "vm-000", "vm", "vm-01a"])
def test_no_index_from_hostname(tmp_path, host):
    node = Node(tmp_path, index=None)
    prefix = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', host]
    case = Bad(
        plugin_config("macvlan", version="0.4.0"), 100, r"no node index", rf"from host name '{host}' got ''"
    )
    _assert_cni_error(node, run_script(case.stdin, node.env(), prefix=prefix), case)


def test_unreadable_config():
    """Mode 000 config, script run as nobody (root reads everything)."""
    top = tempfile.mkdtemp(prefix="nlt-")
    try:
        os.chmod(top, 0o755)
        node = Node(pathlib.Path(top), index="7")
        os.chmod(node.dir / "macvlan", 0)
        script = node.dir.parent / "node-local-copy"
        shutil.copy(SCRIPT, script)
        os.chmod(script, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        case = Bad(mac, 5, r"cannot read the config for cfg 'macvlan'", r"no readable file")
        _assert_cni_error(node, run_script(mac, node.env(), script=script, prefix=prefix), case)
    finally:
        shutil.rmtree(top)


def test_no_jq(node):
    """busybox sh finds its own applets (cat, dirname) with an empty PATH; jq is gone."""
    run = run_script(plugin_config("macvlan"), {**node.env(), "PATH": "/nonexistent"}, "busybox")
    assert run.returncode == 1
    assert json.loads(run.stdout) == {
        "cniVersion": "1.0.0",
        "code": 5,
        "msg": "node-local: jq not found",
        "details": "",
    }
    assert not node.data.exists()


# ---------------------------------------------------------------------------- the script


def test_script_is_posix_sh():
    for shell in (["dash", "-n"], ["busybox", "sh", "-n"]):
        subprocess.run([*shell, str(SCRIPT)], check=True)
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", "-s", "sh", str(SCRIPT)], check=True)
    assert os.access(SCRIPT, os.X_OK)
    assert SCRIPT.read_text().startswith("#!/bin/sh\n")


def test_script_substitution_is_written_once_and_is_the_python_rule():
    text = SCRIPT.read_text()
    assert text.count("gsub(") == 1
    (jq_regex,) = re.findall(r'gsub\("((?:[^"\\]|\\.)*)"', text)
    assert json.loads(f'"{jq_regex}"') == PLACEHOLDER_RE.pattern
