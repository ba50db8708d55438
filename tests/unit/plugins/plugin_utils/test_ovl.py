# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The overlay archive (plugins/plugin_utils/ovl.py) and the overlay's boot script
(playbooks/templates/multus.rc.j2):

- the roles' lists merged and checked (a path from two roles, per-host differences, secrets
  never shown), the members (no directory on the way: a /bin symlink survives GNU and busybox
  tar), the archive's bytes and modes;
- what the .rc computes at boot: the node index from the host name (run in a UTS namespace of
  the test's own, so `hostname` answers vm-NNN), .index, and the placeholder rule over a file's
  text, checked against the Python rule (hypothesis) with busybox sh (its sed applet) and dash
  (GNU sed); bad host names, routers (index above the maximum).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pathlib
import shlex
import shutil
import stat
import subprocess
import tarfile

import jinja2
import pytest
from ansible_collections.xcluster.multus.plugins.plugin_utils import ovl
from ansible_collections.xcluster.multus.plugins.plugin_utils.nodeindex import substitute
from hypothesis import given, settings
from hypothesis import strategies as st

REPO = pathlib.Path(__file__).resolve().parents[4]
RC_TEMPLATE = REPO / "playbooks/templates/multus.rc.j2"
SHELLS = {
    "busybox": [shutil.which("busybox") or "/bin/busybox", "sh"],
    "dash": [shutil.which("dash") or "/bin/dash"],
}
ROOT = os.geteuid() == 0


def src(tmp_path, name, data, mode=0o755):
    p = tmp_path / name
    p.write_bytes(data)
    p.chmod(mode)
    return str(p)


# ------------------------------------------------------------------------- the lists


def test_collect_merges_roles_with_the_push_rules(tmp_path):
    d = tmp_path / "plugins"
    d.mkdir()
    src(d, "bridge", b"B")
    src(d, "host-local", b"H", 0o700)
    files, dirs = ovl.collect(
        "vm-001",
        [
            {"name": "cni_plugins", "files": [{"src": str(d), "dest": "/opt/cni/bin"}]},
            {
                "name": "node_local",
                "files": [{"content": "x\n", "dest": "/etc/cni/node-local/default"}],
                "directories": [{"path": "/etc/cni/node-local", "mode": "0750"}],
            },
            {"name": "multus", "files": [{"content": "k", "dest": "/etc/k", "secret": True}]},
        ],
    )
    got = {f.dest: (f.mode, f.sha256) for f in files}
    assert got == {
        "/opt/cni/bin/bridge": (0o755, hashlib.sha256(b"B").hexdigest()),  # a directory: every file
        "/opt/cni/bin/host-local": (0o700, hashlib.sha256(b"H").hexdigest()),  # the source's mode
        "/etc/cni/node-local/default": (0o644, hashlib.sha256(b"x\n").hexdigest()),  # content: 0644
        "/etc/k": (0o600, hashlib.sha256(b"k").hexdigest()),  # secret: 0600
    }
    assert [(x.path, x.mode) for x in dirs] == [("/etc/cni/node-local", 0o750)]


def test_collect_resolves_a_relative_src_in_the_role(tmp_path):
    script = src(tmp_path, "node-local", b"#!/bin/sh\n")
    seen = []

    def resolve(role, name):
        seen.append((role, name))
        return script

    files, _ = ovl.collect(
        "vm-001",
        [{"name": "node_local", "files": [{"src": "node-local", "dest": "/opt/cni/bin/node-local"}]}],
        resolve,
    )
    assert seen == [("node_local", "node-local")] and files[0].src == script


@pytest.mark.parametrize(
    ("sources", "match"),
    [
        (
            [
                {"name": "a", "files": [{"content": "1", "dest": "/etc/x"}]},
                {"name": "b", "files": [{"content": "2", "dest": "/etc/x"}]},
            ],
            r"vm-001: /etc/x is given by both a and b; expected each path from one role",
        ),
        (
            [{"name": "a", "files": [{"dest": "/etc/x", "state": "absent"}]}],
            r"vm-001 \(a\): /etc/x: state absent has no place in an overlay",
        ),
        (
            [{"name": "a", "files": [{"content": "1", "dest": "etc/x"}]}],
            r"vm-001 \(a\): files\[0\].dest: 'etc/x'",
        ),
        ([{"files": []}], r"vm-001: sources\[0\]: .* is not a source"),
        ([{"name": "a", "extra": 1}], r"unknown keys \['extra'\]"),
        ("nope", r"vm-001: sources: 'nope' is not a list"),
    ],
)
def test_collect_refuses_bad_lists(sources, match):
    with pytest.raises(ovl.OvlError, match=match):
        ovl.collect("vm-001", sources)


def per_host(**hosts):
    return {h: ovl.collect(h, [{"name": "r", "files": f}]) for h, f in hosts.items()}


def test_check_same_names_the_path_and_the_hosts():
    same = [{"content": "a", "dest": "/etc/a"}]
    ovl.check_same(per_host(**{"vm-001": same, "vm-002": same}))
    with pytest.raises(
        ovl.OvlError,
        match=r"/etc/a differs \(content sha256 [0-9a-f]{12} vs [0-9a-f]{12}\) "
        r"between vm-001 and vm-002: one overlay serves every node",
    ):
        ovl.check_same(per_host(**{"vm-001": same, "vm-002": [{"content": "b", "dest": "/etc/a"}]}))
    with pytest.raises(ovl.OvlError, match=r"/etc/a differs \(mode 0644 vs 0600\)"):
        ovl.check_same(
            per_host(**{"vm-001": same, "vm-002": [{"content": "a", "dest": "/etc/a", "mode": "0600"}]})
        )
    with pytest.raises(ovl.OvlError, match=r"/etc/b is only on vm-002 between vm-001 and vm-002"):
        ovl.check_same(per_host(**{"vm-001": same, "vm-002": same + [{"content": "b", "dest": "/etc/b"}]}))


def test_check_same_never_shows_a_secret():
    one = [{"content": "token-1", "dest": "/etc/k", "secret": True}]
    two = [{"content": "token-2", "dest": "/etc/k", "secret": True}]
    with pytest.raises(ovl.OvlError) as e:
        ovl.check_same(per_host(**{"vm-001": one, "vm-002": two}))
    text = str(e.value)
    assert "differs (content)" in text
    for secret in (
        "token-",
        hashlib.sha256(b"token-1").hexdigest()[:12],
        hashlib.sha256(b"token-2").hexdigest()[:12],
    ):
        assert secret not in text


# ------------------------------------------------------------------------- the archive


def sample(tmp_path):
    plugin = src(tmp_path, "multus-proxy", b"\x7fELF proxy")
    return ovl.collect(
        "vm-001",
        [
            {"name": "m", "files": [{"src": plugin, "dest": "/bin/multus-proxy"}]},
            {
                "name": "n",
                "files": [
                    {"content": "{}\n", "dest": "/etc/cni/node-local/default"},
                    {"content": "k", "dest": "/etc/cni/net.d/w.d/kubeconfig", "secret": True},
                ],
                "directories": [
                    {"path": "/etc/cni/node-local", "mode": "0755"},
                    {"path": "/etc/cni/net.d/w.d"},
                ],
            },
        ],
    )


def test_members_are_the_given_directories_then_the_files(tmp_path):
    files, dirs = sample(tmp_path)
    m = [(i.name, i.type, i.mode, i.uid, i.uname) for i, _f in ovl.members(files, dirs)]
    assert m == [
        ("etc/cni/node-local", tarfile.DIRTYPE, 0o755, 0, "root"),
        ("etc/cni/net.d/w.d", tarfile.DIRTYPE, 0o755, 0, "root"),
        ("bin/multus-proxy", tarfile.REGTYPE, 0o755, 0, "root"),
        ("etc/cni/net.d/w.d/kubeconfig", tarfile.REGTYPE, 0o600, 0, "root"),
        ("etc/cni/node-local/default", tarfile.REGTYPE, 0o644, 0, "root"),
    ]


@pytest.mark.parametrize(
    ("files", "dirs", "match"),
    [
        ([{"content": "1", "dest": "/etc/x"}], [{"path": "/etc/x/y"}], "/etc/x is a file and the directory"),
        ([{"content": "1", "dest": "/etc/x"}, {"content": "2", "dest": "/etc/x/y"}], [], "/etc/x is a file"),
    ],
)
def test_members_refuse_a_file_where_a_directory_must_be(files, dirs, match):
    f, d = ovl.collect("vm-001", [{"name": "r", "files": files, "directories": dirs}])
    with pytest.raises(ovl.OvlError, match=match):
        ovl.members(f, d)


def test_write_gives_the_bytes_modes_and_time(tmp_path):
    files, dirs = sample(tmp_path)
    buf = io.BytesIO()
    ovl.write(buf, files, dirs, 1700000000)
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as t:
        got = {
            m.name: (m.mode, m.mtime, t.extractfile(m).read() if m.isfile() else None) for m in t.getmembers()
        }
    assert got["bin/multus-proxy"] == (0o755, 1700000000, b"\x7fELF proxy")
    assert got["etc/cni/net.d/w.d/kubeconfig"] == (0o600, 1700000000, b"k")
    assert got["etc/cni/node-local"] == (0o755, 1700000000, None)
    again = io.BytesIO()
    ovl.write(again, files, dirs, 1700000000)
    assert again.getvalue() == buf.getvalue()  # reproducible


@pytest.mark.parametrize("tar", ["gnu", "busybox"])
@pytest.mark.skipif(not ROOT, reason="extracting owners needs root")
def test_unpacking_keeps_a_bin_symlink_and_makes_missing_directories(tmp_path, tar):
    files, dirs = sample(tmp_path)
    archive = tmp_path / "o.tar"
    with open(archive, "wb") as f:
        ovl.write(f, files, dirs, 1700000000)
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "bin").symlink_to("usr/bin")  # merged /usr, as Debian's
    (root / "etc").mkdir(mode=0o755)
    cmd = ["tar"] if tar == "gnu" else [SHELLS["busybox"][0], "tar"]
    subprocess.run([*cmd, "-C", str(root), "-x", "-f", str(archive)], check=True, capture_output=True)
    assert (root / "bin").is_symlink() and (root / "usr/bin/multus-proxy").read_bytes() == b"\x7fELF proxy"
    assert stat.S_IMODE((root / "usr/bin/multus-proxy").stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "etc/cni/net.d/w.d/kubeconfig").stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "etc/cni/net.d").stat().st_mode) == 0o755  # made on the way


# ------------------------------------------------------------------------- at boot


CONF = json.dumps({"delegates": [{"subnet": "198.19.%.128/25", "x": "a.x"}]}, indent=4) + "\n"
CONF_CN = json.dumps({"clusterNetwork": "bridge", "logFile": "/var/log/%.x.log"}, indent=4) + "\n"


def test_at_boot_drops_the_index_and_checks_the_template():
    hosts = {
        h: ovl.collect(
            h,
            [
                {
                    "name": "r",
                    "files": [
                        {"content": f"{i}\n", "dest": "/etc/cni/node-local/.index"},
                        {"content": ovl.boot_subst(CONF, i), "dest": "/etc/cni/net.d/10-multus.conf"},
                    ],
                }
            ],
        )
        for h, i in (("vm-001", 1), ("vm-002", 2))
    }
    out = ovl.at_boot(
        hosts,
        {"vm-001": 1, "vm-002": 2},
        ["/etc/cni/node-local/.index"],
        {"/etc/cni/net.d/10-multus.conf": CONF},
    )
    ovl.check_same(out)
    (f,) = out["vm-001"][0]
    assert f.content == CONF.encode() and f.sha256 == hashlib.sha256(CONF.encode()).hexdigest()
    with pytest.raises(
        ovl.OvlError,
        match=r"vm-002: /etc/cni/net.d/10-multus.conf: the overlay's .rc would "
        r"render it at boot \(node index 7\) differently",
    ):
        ovl.at_boot(hosts, {"vm-001": 1, "vm-002": 7}, [], {"/etc/cni/net.d/10-multus.conf": CONF})
    with pytest.raises(ovl.OvlError, match="vm-002: no node index"):
        ovl.at_boot(hosts, {"vm-001": 1}, [], {"/etc/cni/net.d/10-multus.conf": CONF})


def test_boot_subst_is_the_placeholder_rule_on_string_values():
    value = {"a": "11.0.%.0/24", "b": ["1100::11.0.x.0/120", "a.xy", "%%.x.x"]}
    text = json.dumps(value, indent=4, sort_keys=True)
    assert ovl.boot_subst(text, 42) == json.dumps(substitute(value, 42), indent=4, sort_keys=True)


# ------------------------------------------------------------------------- the .rc


def render_rc(tmp, delegates=True, max_index=200, profile=None, workers_only=()):
    env = jinja2.Environment(trim_blocks=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["quote"] = shlex.quote
    activate = tmp / "activate"
    activate.write_text(f'#!/bin/sh\necho "activate $*" >{tmp}/activated\n')
    # the variants the overlay carries; the rc picks one (DELEGATES) into 10-multus.conf
    (tmp / "10-multus.conf.delegates").write_text(CONF)
    (tmp / "10-multus.conf.cluster_network").write_text(CONF_CN)
    if profile is not None:
        (tmp / "profile").write_text(profile)
    activate.chmod(0o755)
    text = env.from_string(RC_TEMPLATE.read_text()).render(
        _ovl_rc_name="27multus.rc",
        _ovl_index_file=str(tmp / "node-local/.index"),
        _ovl_delegates=delegates,
        _ovl_max_index=max_index,
        _ovl_conf_src=str(tmp / "10-multus.conf"),
        _ovl_profile=str(tmp / "profile"),
        _ovl_cni_info="multus+bridge",
        _ovl_activate_path=str(activate),
        _ovl_workers_only=list(workers_only),
    )
    rc = tmp / "27multus.rc"
    rc.write_text(text)
    return rc


def run_rc(shell, rc, hostname):
    script = f"hostname {shlex.quote(hostname)} && exec {' '.join(map(shlex.quote, SHELLS[shell]))} {rc}"
    return subprocess.run(
        ["unshare", "--uts", "sh", "-c", script], capture_output=True, text=True, check=False
    )


needs_root = pytest.mark.skipif(not ROOT, reason="the .rc is run in a UTS namespace of the test's own (root)")


@needs_root
@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_rc_writes_the_index_and_runs_the_activation(tmp_path, shell):
    rc = render_rc(tmp_path)
    p = run_rc(shell, rc, "vm-004")
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "node-local/.index").read_text() == "4\n"
    assert stat.S_IMODE((tmp_path / "node-local/.index").stat().st_mode) == 0o644
    assert (tmp_path / "10-multus.conf").read_text() == ovl.boot_subst(CONF, 4)
    assert (tmp_path / "activated").read_text() == "activate apply\n"
    assert (tmp_path / "profile").read_text() == "CNI_INFO=multus+bridge\n"  # as xcluster's rc
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob("node-local/*.tmp"))


@needs_root
@pytest.mark.parametrize(
    ("hostname", "rc_code", "says"),
    [
        ("vm-000", 1, "host name 'vm-000' is not vm-NNN"),
        ("node-1", 1, "host name 'node-1' is not vm-NNN"),
        ("vm-201", 0, "vm-201: index 201 is above 200, not a cluster node"),
    ],
)
def test_rc_leaves_other_hosts_alone(tmp_path, hostname, rc_code, says):
    rc = render_rc(tmp_path)
    p = run_rc("busybox", rc, hostname)
    assert p.returncode == rc_code and says in p.stdout + p.stderr
    assert not (tmp_path / "node-local").exists() and not (tmp_path / "activated").exists()


TEXT = st.text(alphabet=st.sampled_from(list('.x%X_a0Z:-"{} \n\\/')), max_size=60)


@needs_root
@pytest.mark.parametrize("shell", sorted(SHELLS))
@settings(max_examples=60, deadline=None)
@given(text=TEXT, index=st.integers(min_value=1, max_value=200))
def test_rc_substitutes_as_the_python_rule(tmp_path_factory, shell, text, index):
    tmp = tmp_path_factory.mktemp("rc")
    rc = render_rc(tmp)
    (tmp / "10-multus.conf.delegates").write_text(text)
    p = run_rc(shell, rc, f"vm-{index:03d}")
    assert p.returncode == 0, p.stderr
    assert (tmp / "10-multus.conf").read_text() == ovl.boot_subst(text, index)


@needs_root
@pytest.mark.parametrize(
    ("built_delegates", "profile", "mode"),
    [
        (False, None, "cluster_network"),
        (True, None, "delegates"),
        (False, "PATH=/bin\nexport DELEGATES=yes\nCNI_INFO=bridge\n", "delegates"),  # xcluster's env ovl
        (False, "DELEGATES=yes\n", "delegates"),
        (True, "DELEGATES=no\n", "cluster_network"),
        (True, "# nothing\n", "delegates"),
        (
            False,
            "for i in 1 2; do :; done\nunset i\nprofile=/nowhere\nme=x\nPATH=/nowhere\n",
            "cluster_network",
        ),
    ],
)
def test_rc_takes_delegates_from_the_profile_at_boot(tmp_path, built_delegates, profile, mode):
    rc = render_rc(tmp_path, delegates=built_delegates, profile=profile)
    p = run_rc("dash", rc, "vm-002")
    assert p.returncode == 0, p.stderr
    assert f"multus config with {mode}" in p.stdout
    assert (tmp_path / "node-local/.index").read_text() == "2\n"  # whatever the profile does with i
    want = ovl.boot_subst(CONF, 2) if mode == "delegates" else CONF_CN
    assert (tmp_path / "10-multus.conf").read_text() == want
    prof = (tmp_path / "profile").read_text()
    assert prof.count("CNI_INFO=") == 1 and "CNI_INFO=multus+bridge\n" in prof


WB_CONF = '{\n  "datastore": "kubernetes"\n}\n'


@needs_root
@pytest.mark.parametrize(
    ("hostname", "profile", "kept", "says"),
    [
        ("vm-001", None, True, None),  # FIRST_WORKER default 1: every cluster node
        ("vm-001", "FIRST_WORKER=2\n", False, "not a worker (index 1, FIRST_WORKER 2): removed"),
        ("vm-002", "export FIRST_WORKER=2\n", True, None),
        ("vm-004", "FIRST_WORKER=5\n", False, "not a worker (index 4, FIRST_WORKER 5)"),
        ("vm-200", "FIRST_WORKER=3\n", True, None),
        ("vm-201", None, False, "not a worker (index 201, FIRST_WORKER 1)"),  # a router
        ("node-1", None, False, "not a worker (index none, FIRST_WORKER 1)"),
        ("vm-002", "FIRST_WORKER=two\n", True, "ERROR: FIRST_WORKER 'two'"),
    ],
)
def test_rc_keeps_whereabouts_conf_from_first_worker(tmp_path, hostname, profile, kept, says):
    """xcluster's 25whereabouts.rc: whereabouts.conf only on nodes FIRST_WORKER..200 (FIRST_WORKER
    from /etc/profile at boot, default 1); the multus activation itself is not affected."""
    conf = tmp_path / "whereabouts.d/whereabouts.conf"
    conf.parent.mkdir()
    conf.write_text(WB_CONF)
    rc = render_rc(tmp_path, profile=profile, workers_only=[str(conf)])
    p = run_rc("dash", rc, hostname)
    assert conf.exists() == kept, p.stdout + p.stderr
    if says:
        assert says in p.stdout + p.stderr
    if kept:
        assert conf.read_text() == WB_CONF
    if hostname.startswith("vm-") and int(hostname[3:]) <= 200:
        assert p.returncode == 0, p.stderr
        assert (tmp_path / "activated").read_text() == "activate apply\n"  # activated whatever FIRST_WORKER


@needs_root
def test_rc_without_workers_only_files_ignores_first_worker(tmp_path):
    rc = render_rc(tmp_path, profile="FIRST_WORKER=5\n")
    assert "FIRST_WORKER" not in rc.read_text().split("unset DELEGATES FIRST_WORKER", 1)[1]
    p = run_rc("dash", rc, "vm-001")
    assert p.returncode == 0 and "not a worker" not in p.stdout
