# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""site.yml, the overlay (ovl/tar -> playbooks/ovl.yml) and uninstall.yml, on two netns labs of
this module's own (tests/lab/lab, LAB=netns, 2 nodes each: A gets the overlay, B the live push).
The nodes' writes land in their overlay upper dirs on this host, so what each way installs is
compared file by file (type, mode, sha256), as "what changed since the fresh node":

1. ovl/tar keeps xcluster's contract: the archive alone on stdout (or in OUTFILE), logs on
   stderr, no secret in them, SETUP=None gives the base only, a failure writes nothing;
2. the overlay unpacked onto lab A's fresh nodes (`tar -C / -x` over ssh) with its
   /etc/init.d/25multus.rc run gives exactly the files site.yml gives lab B's fresh nodes;
3. uninstall.yml gives both labs their fresh trees back (base CNI config byte for byte);
4. `import_playbook: xcluster.multus.site` from a playbook in a temporary directory, with the
   collection built and installed by ansible-galaxy (the checkout unseen), installs the same;
5. playbooks/basic.yml (the seed's basic check) gives the same pods and ping matrix on both.

whereabouts and multus-service are in (clone stand-ins, tests/artifacts/*-src, built once by
the roles). Needs root, Go, and the archives of tests/artifacts/build-all. The tests run in
order on shared labs (each step needs the previous one's state).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import tarfile

import labrun  # tests/helpers
import pytest
from nodetree import delta

REPO = labrun.REPO
LAB_VARS = labrun.LAB_VARS
CACHE = labrun.CACHE
NODES = (1, 2)
RC = "etc/init.d/27multus.rc"
PROFILE = "etc/profile"
VARIANTS = ["usr/lib/xcluster-multus/10-multus.conf." + m for m in ("cluster_network", "delegates")]
TOKEN = "lab-token-c2VjcmV0LWluLXRoZS1sYWI"  # the lab's whereabouts kubeconfig (group_vars)
EPOCH = "1700000000"
RECORDS = "var/lib/xcluster-multus/push"  # push_files' records (its state_dir)
# what the activation makes on a node (the same with the overlay's .rc and the live push)
ACTIVATION_MADE = labrun.ACTIVATION_MADE


def go_env():
    gocache = os.path.join(CACHE, "go")
    return {
        "PATH": os.pathsep.join([labrun.VENV_BIN, "/usr/local/go/bin", os.environ.get("PATH", "")]),
        "GOFLAGS": "-modcacherw",
        "GOTOOLCHAIN": "local",
        "GOMODCACHE": os.path.join(gocache, "modcache"),
        "GOCACHE": os.path.join(gocache, "build-cache"),
    }


def is_record(rel):
    return rel == RECORDS or rel.startswith(RECORDS + "/")


def without_records(changes):
    return {k: v for k, v in changes.items() if not is_record(k)}


class Lab(labrun.Lab):
    def __init__(self, name, env, tmp):
        super().__init__(env, name)
        self.tmp = tmp

    def snapshot(self):
        return {n: self.upper(n) for n in NODES}

    def changes(self):
        """What changed on each node since the lab was fresh."""
        now = self.snapshot()
        return {n: delta(self.fresh[n], now[n]) for n in NODES}

    def unpack_overlay(self, archive):
        with open(archive, "rb") as f:
            data = f.read()
        out = {}
        for n in NODES:
            self.ssh(n, "tar -C / -x", data)
            out[n] = self.ssh(n, f"/{RC}")
        return out


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    labrun.require_lab()
    tmp = str(tmp_path_factory.mktemp("site"))
    env = dict(os.environ, **go_env())
    env.pop("ARCHIVE", None)  # the lab's group_vars then use the cache's archives/
    for tool, dest in (("whereabouts-src", "whereabouts"), ("multus-service-src", "multus-service")):
        p = subprocess.run(
            [os.path.join(REPO, "tests", "artifacts", tool), os.path.join(tmp, dest)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert p.returncode == 0, p.stderr
    env.update(
        WHEREABOUTS_DIR=os.path.join(tmp, "whereabouts"),
        MSERVICE_DIR=os.path.join(tmp, "multus-service"),
        ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
    )
    sources = {k: env[k] for k in ("WHEREABOUTS_DIR", "MSERVICE_DIR")}  # the stand-in clones
    labs = {
        n: Lab(
            n,
            labrun.lab_env(
                f"xso{os.getpid() % 10000}{n}", len(NODES), base=env, json_results=False, **sources
            ),
            tmp,
        )
        for n in ("a", "b")
    }
    with labrun.running(*labs.values()):
        for lab in labs.values():
            lab.fresh = lab.snapshot()
        yield {"env": env, "tmp": tmp, "a": labs["a"], "b": labs["b"]}


def play(lab, playbook, *args, cwd=REPO, env=None, ok=True):
    r = lab.play(playbook, *args, cwd=cwd, env=env)
    assert (r.rc == 0) == ok, r.out[-6000:]
    assert TOKEN not in r.out, "a secret showed in the output"
    return r.out


def ovl_tar(ctx, *args, out="-", env_extra=None):
    env = dict(ctx["env"], OVL_INVENTORY=ctx["a"].inventory, OVL_VARS=LAB_VARS, SOURCE_DATE_EPOCH=EPOCH)
    env.update(env_extra or {})
    return subprocess.run(
        [os.path.join(REPO, "ovl", "tar"), out, *args],
        env=env,
        cwd=ctx["tmp"],
        capture_output=True,
        timeout=900,
        check=False,
    )


def tar_members(data):
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        return {m.name: m for m in t.getmembers()}


def test_ovl_tar_contract(ctx):
    p = ovl_tar(ctx)
    err = p.stderr.decode()
    assert p.returncode == 0, err[-6000:]
    members = tar_members(p.stdout)  # stdout is the archive and nothing else
    assert "PLAY RECAP" in err and TOKEN not in err
    # the same bytes to a file (SOURCE_DATE_EPOCH: the same member times)
    path = os.path.join(ctx["tmp"], "multus.tar")
    q = ovl_tar(ctx, out=path)
    assert q.returncode == 0 and q.stdout == b"", q.stderr.decode()[-3000:]
    with open(path, "rb") as f:
        assert f.read() == p.stdout
    ctx["archive"] = path

    for name in (
        RC,
        "opt/cni/bin/multus-cni",
        "opt/cni/bin/bridge",
        "opt/cni/bin/node-local",
        "opt/cni/bin/whereabouts",
        "bin/multus-proxy",
        "usr/lib/xcluster-multus/activate",
        "usr/lib/xcluster-multus/10-multus.conf",
        "usr/lib/xcluster-multus/10-multus.conf.delegates",
        "usr/lib/xcluster-multus/10-multus.conf.cluster_network",
        "etc/kubernetes/multus/multus-crd-macvlan.yaml",
        "etc/kubernetes/multus/multus-crd-ipvlan.yaml",
        "etc/cni/node-local/ipvlan",
    ):
        assert name in members, name
    assert members[RC].mode == 0o755 and members["opt/cni/bin/multus-cni"].mode == 0o755
    assert members["etc/cni/net.d/whereabouts.d/whereabouts.conf"].mode == 0o600
    assert members["etc/cni/net.d/whereabouts.d/whereabouts.kubeconfig"].mode == 0o600
    assert members["etc/cni/node-local"].isdir() and members["etc/cni/node-local"].mode == 0o755
    # per node, made at boot; directories on the way are not members (/bin stays a symlink)
    assert "etc/cni/node-local/.index" not in members
    # never an active multus config in the archive: the rc writes it after moving the base config
    active = (".conf", ".conflist", ".json")
    assert not [n for n in members if os.path.dirname(n) == "etc/cni/net.d" and n.endswith(active)]
    assert not {"bin", "etc", "opt", "usr", "etc/cni", "opt/cni/bin"} & set(members)
    assert {m.uid for m in members.values()} == {0} and {m.mtime for m in members.values()} == {int(EPOCH)}

    base = ovl_tar(ctx, env_extra={"SETUP": "None"})  # WHEREABOUTS_DIR, MSERVICE_DIR still set
    assert base.returncode == 0, base.stderr.decode()[-3000:]
    names = set(tar_members(base.stdout))
    assert not [n for n in names if "whereabouts" in n or "multus-proxy" in n or "multus-service" in n]
    assert {n for n in names if n.startswith("etc/kubernetes/")} == {
        "etc/kubernetes/multus/multus-crd.yaml",
        "etc/kubernetes/multus/multus-crd-bridge.yaml",
    }
    assert {RC, "opt/cni/bin/multus-cni", "etc/cni/node-local/macvlan"} <= names

    bad = os.path.join(ctx["tmp"], "bad.yml")
    with open(bad, "w") as f:
        f.write("cni_plugins_version: v9.9.9\n")
    fail = ovl_tar(ctx, "-e", f"@{bad}")
    assert fail.returncode != 0 and fail.stdout == b""
    assert "cni-plugins-linux-amd64-v9.9.9.tgz" in fail.stderr.decode()
    assert b"No out-file" in ovl_tar(ctx, out="").stderr


def test_overlay_gives_the_files_of_the_live_push(ctx):
    a, b = ctx["a"], ctx["b"]
    rc_out = a.unpack_overlay(ctx["archive"])
    for n in NODES:
        assert "CHANGED: moved /etc/cni/net.d/10-bridge.conf" in rc_out[n], rc_out[n]
    play(b, "site.yml")
    da, db = a.changes(), b.changes()
    for n in NODES:
        # push_files' records of what it installed (mode 0600 in 0700 directories): one per
        # installed file but the secrets, on the live nodes only (they describe those nodes)
        records = {k[len(RECORDS) + 1 :]: v[1] for k, v in db[n].items() if is_record(k)}
        db[n] = without_records(db[n])
        record_files = {
            ("usr/" + k if k.startswith("bin/") else k) for k, v in records.items() if v[0] == "f"
        }
        made = {k for k, v in db[n].items() if v[1] and v[1][0] == "f"} - ACTIVATION_MADE
        assert record_files == {k for k in made if not k.endswith(".kubeconfig")}, record_files ^ made
        assert {v[:2] for v in records.values()} == {("f", 0o600), ("d", 0o700)}
        assert da[n].pop(RC)[1][:2] == ("f", 0o755)  # the overlay's boot script: its one extra file
        assert da[n].pop(PROFILE)[1][0] == "f"  # and CNI_INFO=multus+bridge in /etc/profile, as xcluster's
        for variant in VARIANTS:  # and both 10-multus.conf variants (DELEGATES picks one at boot)
            assert da[n].pop(variant)[1][:2] == ("f", 0o644)
        assert "CNI_INFO=multus+bridge\n" in a.ssh(n, "cat /etc/profile")
        assert da[n] == db[n], f"vm-00{n}: overlay vs live: {set(da[n].items()) ^ set(db[n].items())}"
        d = db[n]
        assert d["etc/cni/node-local/.index"][1][2] == hashlib.sha256(f"{n}\n".encode()).hexdigest()
        assert d["etc/cni/net.d/10-bridge.conf"][1] is None  # moved under multus' confDir
        assert d["etc/cni/multus/net.d/bridge.conf"][1][0] == "f"
        assert d["usr/bin/multus-proxy"][1][:2] == ("f", 0o755)  # /bin -> usr/bin on this host
        assert d["etc/cni/net.d/whereabouts.d/whereabouts.kubeconfig"][1][:2] == ("f", 0o600)
        assert (
            len([p for p in d if p.startswith("opt/cni/bin/")]) == 16 + 3
        )  # plugins, multus, node-local, whereabouts
    ctx["installed"] = db
    again = a.unpack_overlay(ctx["archive"])  # the .rc again: nothing more to do
    for n in NODES:
        assert "CHANGED" not in again[n] and "OK: base config already at" in again[n], again[n]
    assert {
        n: {k: v for k, v in d.items() if k not in (RC, PROFILE, *VARIANTS)} for n, d in a.changes().items()
    } == da


def test_uninstall_gives_the_fresh_tree_back(ctx):
    for lab in (ctx["a"], ctx["b"]):  # a: installed by the overlay, b: by site.yml
        out = play(lab, "playbooks/uninstall.yml")
        flat = " ".join(out.split())  # the summary line may be folded (yaml result format)
        assert "CHANGED: removed /etc/cni/net.d/10-multus.conf" in flat
        assert "CHANGED: restored /etc/cni/net.d/10-bridge.conf" in flat
        left = lab.changes()
        if lab is ctx["a"]:  # the rc's CNI_INFO line stays in /etc/profile (as xcluster's)
            left = {n: {k: v for k, v in d.items() if k != PROFILE} for n, d in left.items()}
        assert left == {n: {} for n in NODES}, f"lab {lab.name}: left after uninstall: {left}"


def test_import_playbook_from_the_installed_collection(ctx, tmp_path):
    b = ctx["b"]
    env = dict(ctx["env"])
    env.pop("ANSIBLE_CONFIG")
    ag = os.path.join(labrun.VENV_BIN, "ansible-galaxy")
    subprocess.run(
        [ag, "collection", "build", "--output-path", str(tmp_path), REPO],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
    )
    built = [f for f in os.listdir(tmp_path) if f.startswith("xcluster-multus-")]
    assert len(built) == 1, built
    coll = tmp_path / "collections"
    subprocess.run(
        [ag, "collection", "install", "-p", str(coll), str(tmp_path / built[0])],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
    )
    (tmp_path / "ansible.cfg").write_text(
        f"[defaults]\ncollections_path = {coll}\ncollections_scan_sys_path = False\n"
        "host_key_checking = False\nretry_files_enabled = False\n"
    )
    (tmp_path / "play.yml").write_text(
        "---\n- name: xcluster.multus from the installed collection\n"
        "  ansible.builtin.import_playbook: xcluster.multus.site\n"
    )
    env["ANSIBLE_CONFIG"] = str(tmp_path / "ansible.cfg")
    out = play(b, "play.yml", "-vv", cwd=str(tmp_path), env=env)
    paths = set(re.findall(r"task path: (\S+)", out))
    ours = {p for p in paths if "xcluster/multus" in p or REPO in p}
    assert ours and all(p.startswith(str(coll)) for p in ours), sorted(ours)[:5]
    assert {n: without_records(d) for n, d in b.changes().items()} == ctx["installed"]


def basic(lab, tmp):
    """playbooks/basic.yml, then each host's pod interfaces and pings saved as JSON."""
    out = os.path.join(tmp, f"basic-{lab.name}.json")
    pb = os.path.join(tmp, f"basic-{lab.name}.yml")
    save = (
        "{{ dict(groups['xcluster'] | zip(groups['xcluster'] | map('extract', hostvars, '_basic_pod')"
        " | zip(groups['xcluster'] | map('extract', hostvars, '_basic_ping')"
        " | map(attribute='stdout_lines')))) | to_json }}"
    )
    with open(pb, "w") as f:
        json.dump(
            [
                {"ansible.builtin.import_playbook": os.path.join(REPO, "playbooks", "basic.yml")},
                {
                    "name": "Save the results",
                    "hosts": "localhost",
                    "gather_facts": False,
                    "tasks": [{"ansible.builtin.copy": {"content": save, "dest": out, "mode": "0644"}}],
                },
            ],
            f,
        )
    play(lab, pb)
    with open(out) as f:
        res = json.load(f)
    pods = {
        h: [(i["ifname"], i["network"], i["type"], sorted(a["local"] for a in i["addresses"])) for i in r[0]]
        for h, r in res.items()
    }
    pings = {h: sorted(ln.strip() for ln in r[1] if ln.strip().startswith("{")) for h, r in res.items()}
    return pods, pings


def test_basic_check_gives_the_same_result(ctx):
    a, b = ctx["a"], ctx["b"]
    a.unpack_overlay(ctx["archive"])  # b still has the installed collection's push
    pods_a, pings_a = basic(a, ctx["tmp"])
    pods_b, pings_b = basic(b, ctx["tmp"])
    assert pods_a == pods_b
    assert pings_a == pings_b
    for pod in pods_a.values():
        assert [i[0] for i in pod] == ["eth0", "net1", "net2"], (
            pod
        )  # no ipvlan on netns: macvlan, host-device
        assert all(i[3] for i in pod[:2]), pod
    assert all(json.loads(ln)["ok"] for lines in pings_a.values() for ln in lines)
    assert sum(len(v) for v in pings_a.values()) == len(NODES) * (len(NODES) - 1) * 2  # macvlan v4+v6


def test_delegates_mode_the_rc_renders_what_the_live_push_would(ctx):
    """multus_mode delegates: 10-multus.conf depends on the node; the overlay holds it with its
    placeholders and the .rc fills them in at boot. site.yml in check mode then finds nothing
    to change on the overlay-installed nodes."""
    a = ctx["a"]
    play(a, "playbooks/uninstall.yml")  # (the basic check's runtime leftovers stay: leases, logs)
    path = os.path.join(ctx["tmp"], "delegates.tar")
    p = ovl_tar(ctx, "-e", "multus_mode=delegates", out=path)
    assert p.returncode == 0, p.stderr.decode()[-3000:]
    with tarfile.open(path) as t:
        conf = t.extractfile("usr/lib/xcluster-multus/10-multus.conf").read().decode()
    assert '"subnet": "198.19.%.128/25"' in conf  # the lab's delegates (tests/lab/group_vars)
    a.unpack_overlay(path)
    for n in NODES:
        assert f'"subnet": "198.19.{n}.128/25"' in a.ssh(n, "cat /etc/cni/net.d/10-multus.conf")
    out = play(a, "site.yml", "--check", "-e", "multus_mode=delegates")
    recap = re.findall(r"^(vm-\d+)\s+: ok=\d+\s+changed=(\d+)", out, re.M)
    assert sorted(recap) == [(f"vm-00{n}", "0") for n in NODES], out[-3000:]
