# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Faults of the cni_plugins role, through ansible-playbook playbooks/cni_plugins.yml, on one
lab of this module's own (tests/lab/lab, 2 nodes, LAB=netns by default, LAB=vm works too):

- a tampered archive fails before any node changes (against the given and the pinned sha256);
- a missing archive lists every path searched and the URL;
- a URL download with no known sha256 asks for one; an unknown plugin name lists the archive's;
- killing ansible-playbook (and its ssh) in the middle of the push leaves no partial file under
  a final name in /opt/cni/bin; the rerun converges, cleans up, and leaves no temporary file.

Needs root and the archive of tests/artifacts/build-all (cni-plugins v1.0.1). Node state is
read over ssh, so the same assertions hold on both backends.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import time

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LABCMD = os.path.join(REPO, "tests", "lab", "lab")
VENV_BIN = os.path.join(REPO, ".venv", "bin")
BACKEND = os.environ.get("LAB", "netns")
NODES = (1, 2)
NAME = "cni-plugins-linux-amd64-v1.0.1.tgz"
PINNED_V101 = "5238fbb2767cbf6aae736ad97a7aa29167525dcd405196dfbc064672a730d3cf"  # upstream's
BUILT = os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "xcluster-multus", "archives"
)
# What a node holds where the role works: /opt/cni/bin (name, mode, size, mtime, inode) and /tmp
SNAPSHOT = "stat -c '%n %a %s %Y %i' /opt/cni/bin/* /opt/cni/bin/.[!.]* 2>/dev/null; echo; ls -a /tmp"


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def members(path):
    """{name: bytes} of the regular files in a flat archive."""
    with tarfile.open(path) as tar:
        return {os.path.basename(m.name): tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def pack(path, files):
    """A flat archive in the upstream layout (./, ./name ...), modes 0755."""
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        d = tarfile.TarInfo("./")
        d.type, d.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(d)
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(f"./{name}")
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return path


def sha_listing(text):
    """{name: sha256} from sha256sum output lines."""
    return {ln.split()[1]: ln.split()[0] for ln in text.splitlines() if re.match("[0-9a-f]{64}  ", ln)}


class Lab:
    def __init__(self, env, inventory, tmp):
        self.env, self.inventory, self.tmp = env, inventory, tmp
        self.home = os.path.join(tmp, "home")  # $HOME of ansible-playbook: its own ~/Downloads
        os.makedirs(os.path.join(self.home, "Downloads"), exist_ok=True)
        self.n = 0

    def ssh(self, node, cmd):
        p = subprocess.run(
            [LABCMD, "ssh", str(node), cmd], env=self.env, capture_output=True, text=True, check=False
        )
        assert p.returncode == 0, f"vm-00{node}: {cmd}: {p.stderr}"
        return p.stdout

    def snapshot(self):
        return {n: self.ssh(n, SNAPSHOT) for n in NODES}

    def command(self, extra_vars, archive_dir):
        """ansible-playbook on playbooks/cni_plugins.yml (then the push results saved as JSON)."""
        self.n += 1
        out = os.path.join(self.tmp, f"push{self.n}.json")
        pushes = "{{ groups['xcluster'] | map('extract', hostvars, '_cni_plugins_push') }}"
        save = "{{ dict(groups['xcluster'] | zip(_t_pushes)) | to_json }}"
        pb = os.path.join(self.tmp, f"run{self.n}.yml")
        with open(pb, "w") as f:
            json.dump(
                [
                    {"ansible.builtin.import_playbook": os.path.join(REPO, "playbooks", "cni_plugins.yml")},
                    {
                        "name": "Save the push results",
                        "hosts": "localhost",
                        "gather_facts": False,
                        "vars": {"_t_pushes": pushes},
                        "tasks": [{"ansible.builtin.copy": {"content": save, "dest": out, "mode": "0644"}}],
                    },
                ],
                f,
            )
        vf = os.path.join(self.tmp, f"vars{self.n}.json")
        with open(vf, "w") as f:
            json.dump(extra_vars, f)
        env = dict(os.environ)
        env.update(
            PATH=VENV_BIN + os.pathsep + env.get("PATH", ""),
            ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
            ANSIBLE_CALLBACK_RESULT_FORMAT="json",  # messages unwrapped, one line each
            ANSIBLE_NOCOLOR="1",
            HOME=self.home,
            ARCHIVE=archive_dir,
        )
        env.pop("XDG_CACHE_HOME", None)
        cmd = [os.path.join(VENV_BIN, "ansible-playbook"), "-i", self.inventory, pb, "-e", f"@{vf}"]
        return cmd, env, out

    def play(self, extra_vars, archive_dir, ok=True):
        cmd, env, out = self.command(extra_vars, archive_dir)
        p = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
        output = p.stdout + p.stderr
        assert (p.returncode == 0) == ok, output
        if not ok:
            return output
        with open(out) as f:
            return json.load(f)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    assert os.path.isfile(os.path.join(BUILT, NAME)), (
        f"{BUILT}/{NAME} is missing: run tests/artifacts/build-all"
    )
    prefix = f"xcf{BACKEND[0]}{os.getpid() % 100000}"
    env = dict(os.environ, LAB=BACKEND, LAB_PREFIX=prefix, LAB_NET="auto", LAB_NODES=str(len(NODES)))
    p = subprocess.run([LABCMD, "up"], env=env, capture_output=True, text=True, timeout=900, check=False)
    try:
        assert p.returncode == 0, f"lab up failed:\n{p.stdout}{p.stderr}"
        inv = subprocess.run([LABCMD, "inventory"], env=env, capture_output=True, text=True, check=True)
        yield Lab(env, inv.stdout.strip(), str(tmp_path_factory.mktemp("cni")))
    finally:
        subprocess.run([LABCMD, "down"], env=env, capture_output=True, check=False)


@pytest.fixture(scope="module")
def built(lab):
    """The build-all archive (a copy: a concurrent rebuild cannot change it), its sha256, its files."""
    d = os.path.join(lab.tmp, "built")
    os.makedirs(d)
    shutil.copy(os.path.join(BUILT, NAME), d)
    return d, sha256(os.path.join(d, NAME)), members(os.path.join(d, NAME))


@pytest.fixture(scope="module")
def tampered(lab, built):
    """A valid archive in the same layout with one plugin replaced."""
    d = os.path.join(lab.tmp, "tampered")
    os.makedirs(d)
    pack(os.path.join(d, NAME), {**built[2], "bridge": b"#!/bin/sh\necho tampered\n"})
    return d


def common_vars(lab, **kw):
    return {"cni_plugins_cache_dir": os.path.join(lab.tmp, "cache"), **kw}


@pytest.mark.parametrize("against", ["given", "pinned"])
def test_tampered_archive_fails_before_any_node_changes(lab, built, tampered, against):
    good = built[1]
    before = lab.snapshot()
    extra = common_vars(lab)
    if against == "given":
        extra["cni_plugins_checksum"] = good
    out = lab.play(extra, tampered, ok=False)
    expected = good if against == "given" else PINNED_V101
    origin = "checksum given by the user" if against == "given" else "pinned table"
    assert f"sha256 mismatch for {tampered}/{NAME}: expected {expected} ({origin}" in out
    assert f"actual {sha256(os.path.join(tampered, NAME))}" in out
    assert "Install the plugins" not in out  # the play stopped in preflight, for every host
    assert lab.snapshot() == before


def test_missing_archive_lists_every_path_searched_and_the_url(lab, tmp_path):
    dirs = [str(tmp_path / "d1"), str(tmp_path / "d2")]
    before = lab.snapshot()
    extra = common_vars(lab, cni_plugins_archive_dirs=dirs)  # the lab's cni_plugins_download: false
    out = lab.play(extra, str(tmp_path / "archive"), ok=False)
    m = re.search(
        r"archive cni-plugins\S+ not found\. Searched:(.*?)It can be downloaded from ([^\s\"\\]+)", out
    )
    assert m, out
    searched = [s.strip() for s in m.group(1).replace("\\n", "\n").splitlines() if s.strip()]
    assert searched == [
        f"{lab.home}/Downloads/{NAME}",
        f"{tmp_path}/archive/{NAME}",
        f"{dirs[0]}/{NAME}",
        f"{dirs[1]}/{NAME}",
        f"{lab.tmp}/cache/downloads/{NAME}",
    ]
    assert m.group(2) == (f"https://github.com/containernetworking/plugins/releases/download/v1.0.1/{NAME}")
    assert lab.snapshot() == before


def test_url_without_a_known_checksum_asks_for_one(lab, tmp_path):
    # v1.10.0 is not in the pinned table; nothing listens on 127.0.0.1:9 (never contacted)
    extra = common_vars(
        lab,
        cni_plugins_version="v1.10.0",
        cni_plugins_download=True,
        cni_plugins_url="http://127.0.0.1:9/{archive}",
    )
    before = lab.snapshot()
    out = lab.play(extra, str(tmp_path), ok=False)
    name = "cni-plugins-linux-amd64-v1.10.0.tgz"
    assert f"archive {name} not found" in out
    assert f"It can be downloaded from http://127.0.0.1:9/{name}, but no sha256 is pinned for it" in out
    assert "give checksum (its sha256) to download it" in out
    assert not os.path.exists(os.path.join(lab.tmp, "cache", "downloads", name))
    assert lab.snapshot() == before


def test_unknown_plugin_name_lists_what_the_archive_has(lab, built):
    src, good, files = built
    before = lab.snapshot()
    extra = common_vars(lab, cni_plugins_checksum=good, cni_plugins_list=["bridge", "nosuch"])
    out = lab.play(extra, src, ok=False)
    have = ", ".join(sorted(files))
    assert f'vm-001: cni_plugins_list names [\\"nosuch\\"], not in {NAME}; it has {have}' in out
    assert lab.snapshot() == before


def test_killed_transfer_leaves_no_partial_file_and_the_rerun_converges(lab, built, tmp_path):
    src, good, old = built
    lab.play(common_vars(lab, cni_plugins_checksum=good), src)  # the release as it is
    # a new archive: every plugin changed (a trailing byte string: ELF binaries still run)
    # plus a large file, so the push is long enough to be killed in the middle
    new = {n: data + b"\0xcm-new" for n, data in old.items()}
    new["zz-big"] = os.urandom(48 << 20)
    newdir = tmp_path / "new"
    newdir.mkdir()
    pack(newdir / NAME, new)
    extra = common_vars(lab, cni_plugins_checksum=sha256(newdir / NAME))
    total = sum(len(d) for d in new.values())
    sums = {
        n: (hashlib.sha256(old[n]).hexdigest() if n in old else None, hashlib.sha256(d).hexdigest())
        for n, d in new.items()
    }

    mgmt = f"{lab.env['LAB_PREFIX']}-mgmt"  # the lab's own controller-side veth: slow it down
    tbf = ["tbf", "rate", "200mbit", "burst", "256kb", "latency", "400ms"]
    subprocess.run(["tc", "qdisc", "add", "dev", mgmt, "root", *tbf], check=True)
    try:
        # ssh control masters of this run only (not shared with earlier plays), so that they
        # too live in the PID namespace below
        cp = os.path.join(lab.tmp, "cpk")
        ssh_args = f"-o ControlMaster=auto -o ControlPersist=60s -o ControlPath={cp}/%C -o Compression=no"
        os.makedirs(cp, mode=0o700, exist_ok=True)
        cmd, env, _out = lab.command({**extra, "ansible_ssh_args": ssh_args}, str(newdir))
        # its own PID namespace: killing it (SIGKILL) kills ansible-playbook, its workers, every
        # ssh and ssh control master it started, and nothing else
        p = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--kill-child", *cmd],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline, seen = time.time() + 300, 0
        while time.time() < deadline and seen < 16 << 20 and p.poll() is None:
            out = lab.ssh(1, "stat -c %s /tmp/.xcm-up.root.* 2>/dev/null || true").split()
            seen = int(out[0]) if out else 0
            time.sleep(0.2)
        assert p.poll() is None and (16 << 20) <= seen < total, f"could not catch the push in flight ({seen})"
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        last = -1
        while True:  # until the nodes saw the end of the upload
            sizes = lab.ssh(1, "stat -c %s /tmp/.xcm-up.root.*")
            if sizes == last:
                break
            last = sizes
            time.sleep(0.5)
        assert int(sizes.split()[0]) < total, "the upload was not cut short"
    finally:
        subprocess.run(["tc", "qdisc", "del", "dev", mgmt, "root"], check=False)

    for n in NODES:
        listing = lab.ssh(n, "ls -a /opt/cni/bin /tmp; cd /opt/cni/bin && sha256sum -- *")
        assert ".xcm-up.root." in listing, "the killed upload should be left for the next run to clean"
        assert ".xcm-tmp." not in listing
        # under their final names: the whole old files, never a part of a new one (no zz-big)
        assert sha_listing(listing) == {k: v[0] for k, v in sums.items() if k in old}, f"vm-00{n}"

    res = lab.play(extra, str(newdir))  # the rerun converges
    for n in NODES:
        r = res[f"vm-00{n}"]
        assert r["changed"] and sorted(os.path.basename(t) for t in r["transferred"]) == sorted(new)
        assert [c for c in r["cleaned"] if "/.xcm-up.root." in c], r["cleaned"]
        got = lab.ssh(n, "ls -a /opt/cni/bin /tmp; cd /opt/cni/bin && sha256sum -- *")
        assert ".xcm-" not in got
        assert sha_listing(got) == {k: v[1] for k, v in sums.items()}, f"vm-00{n}"
        assert '"supportedVersions"' in lab.ssh(n, "CNI_COMMAND=VERSION /opt/cni/bin/bridge </dev/null")
