# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""push_files through ansible-playbook: (a) the local connection into a temp dir, (b) real
Python-less SSH nodes (a netns lab of the shared lab, tests/lab, through tests/helpers/labtarget.py)."""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest
from labtarget import Target, missing_tools

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
VENV_BIN = os.path.join(REPO, ".venv", "bin")


def sha(data):
    return hashlib.sha256(data).hexdigest()


def env_for(tmp):
    env = dict(os.environ)
    env.update(
        PATH=VENV_BIN + os.pathsep + env.get("PATH", ""),
        ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
        ANSIBLE_SSH_CONTROL_PATH_DIR=os.path.join(tmp, "cp"),
        ANSIBLE_LOCAL_TEMP=os.path.join(tmp, "atmp"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
    )
    return env


class Runner:
    """Writes a play around one push_files task, runs it, returns the task's result per host.

    state_dir: where the nodes keep push_files' records, unless the task's args say: by default
    a directory of the test's own (local: under tmp; lab nodes: their /root, which the tests
    read from the host); None leaves push_files' default (a lab node's own /var/lib)."""

    def __init__(self, tmp, hosts="localhost", inventory=None, wrap=None, play_extra=None, *, state_dir=""):
        self.tmp, self.hosts, self.inventory, self.wrap = str(tmp), hosts, inventory, wrap or []
        self.play_extra = play_extra or {}
        self.n = 0
        if state_dir == "":
            state_dir = os.path.join(self.tmp, "state", "push") if hosts == "localhost" else "/root/xcm-push"
        self.state_dir = state_dir

    def play(self, args, *, check=False, diff=False, extra=(), become=None, timeout=300, popen=False):
        self.n += 1
        out = os.path.join(self.tmp, f"result{self.n}")
        play = {"hosts": self.hosts, "gather_facts": False, **self.play_extra}
        if self.hosts == "localhost":
            play["connection"] = "local"
        if self.state_dir is not None and "state_dir" not in args:
            args = {**args, "state_dir": self.state_dir}
        push = {"name": "push", "xcluster.multus.push_files": args, "register": "r", "ignore_errors": True}
        if become is not None:
            push["become"] = become
        save = {
            "name": "save",
            "ansible.builtin.copy": {
                "content": "{{ r | to_json }}",
                "dest": out + "-{{ inventory_hostname }}.json",
            },
            "delegate_to": "localhost",
            "become": False,
            "check_mode": False,
        }
        play["tasks"] = [push, save]
        pb = os.path.join(self.tmp, f"play{self.n}.yml")
        with open(pb, "w") as f:
            json.dump([play], f)  # JSON is YAML
        cmd = [*self.wrap, os.path.join(VENV_BIN, "ansible-playbook"), pb]
        cmd += ["-i", self.inventory] if self.inventory else []
        cmd += ["--check"] * check + ["--diff"] * diff + list(extra)
        if popen:
            env = env_for(self.tmp)
            return subprocess.Popen(
                cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
            )
        p = subprocess.run(
            cmd, env=env_for(self.tmp), capture_output=True, text=True, timeout=timeout, check=False
        )
        assert p.returncode == 0, p.stdout + p.stderr
        results = {}
        for name in os.listdir(self.tmp):
            if name.startswith(f"result{self.n}-"):
                with open(os.path.join(self.tmp, name)) as f:
                    results[name[len(f"result{self.n}-") : -5]] = json.load(f)
        self.output = p.stdout + p.stderr
        return results


def read(path):
    with open(path, "rb") as f:
        return f.read()


def tree(path):
    """{relative path: (content, mode)} of every file below path."""
    out = {}
    for root, _, files in os.walk(path):
        for n in files:
            full = os.path.join(root, n)
            out[os.path.relpath(full, path)] = (read(full), oct(os.stat(full).st_mode & 0o7777))
    return out


@pytest.fixture
def srcdir(tmp_path):
    d = tmp_path / "src"
    d.mkdir()
    for i in range(5):
        (d / f"plugin{i}").write_bytes(os.urandom(200_000 + i))
        os.chmod(d / f"plugin{i}", 0o755)
    return d


# ---------------------------------------------------------------- (a) local connection


def test_local_lifecycle(tmp_path, srcdir):
    node, up = tmp_path / "node", tmp_path / "up"
    up.mkdir()
    r = Runner(tmp_path)
    args = {
        "upload_dir": str(up),
        "files": [
            {"src": str(srcdir) + "/", "dest": f"{node}/bin/", "mode": "0755"},
            {"content": "cfg\n", "dest": f"{node}/etc/a.conf"},
            {"content": "TOPSECRET\n", "dest": f"{node}/etc/token", "secret": True},
        ],
        "directories": [{"path": f"{node}/etc/empty.d", "mode": "0700"}],
    }
    # check mode on a fresh node: reports everything, changes nothing, transfers nothing
    res = r.play(args, check=True)["localhost"]
    assert res["changed"] and len(res["transferred"]) == 7 and res["bytes_transferred"] == 0
    assert res["round_trips"] == 1 and not node.exists() and os.listdir(up) == []

    (node / "bin").mkdir(parents=True)
    (node / "bin" / "other").write_bytes(b"someone else's")
    other_mtime = os.stat(node / "bin" / "other").st_mtime_ns
    res = r.play(args)["localhost"]
    # 4 round trips: read, private upload directory (a secret is among the files), put, finalize
    # (the controller's files are 1 MB, under push.SPLIT_MIN: one tar with the rendered content)
    assert res["changed"] and res["transport"] == "tar" and res["round_trips"] == 4
    assert res["bytes_transferred"] > 1_000_000 and len(res["transferred"]) == 7
    t = tree(node)
    assert t["bin/plugin3"] == (read(srcdir / "plugin3"), "0o755")
    assert t["etc/a.conf"] == (b"cfg\n", "0o644") and t["etc/token"] == (b"TOPSECRET\n", "0o600")
    assert oct(os.stat(node / "etc/empty.d").st_mode & 0o777) == "0o700"
    assert read(node / "bin" / "other") == b"someone else's"
    assert os.stat(node / "bin" / "other").st_mtime_ns == other_mtime
    assert os.listdir(up) == [] and not [n for n in os.listdir(node / "bin") if n.startswith(".")]

    res = r.play(args)["localhost"]  # rerun: nothing to do, one round trip, nothing sent
    assert not res["changed"] and res["bytes_transferred"] == 0 and res["round_trips"] == 1
    assert res["hashed"] == [f"{node}/etc/token"]  # the records say the rest is as installed

    (srcdir / "plugin1").write_bytes(b"new plugin1")  # one file changed: only it moves
    ino = {n: os.stat(node / "bin" / n).st_ino for n in ("plugin0", "plugin1")}
    res = r.play(args)["localhost"]
    assert res["transferred"] == [f"{node}/bin/plugin1"] and res["transport"] == "files"
    assert res["bytes_transferred"] == len(b"new plugin1") and res["round_trips"] == 3
    assert read(node / "bin" / "plugin1") == b"new plugin1"
    assert os.stat(node / "bin" / "plugin0").st_ino == ino["plugin0"]  # untouched
    assert os.stat(node / "bin" / "plugin1").st_ino != ino["plugin1"]  # renamed into place

    os.chmod(node / "bin" / "plugin2", 0o644)  # mode only: fixed without a transfer
    res = r.play(args)["localhost"]
    assert res["attributes_fixed"] == [f"{node}/bin/plugin2"] and res["transferred"] == []
    assert res["bytes_transferred"] == 0 and res["round_trips"] == 2
    assert os.stat(node / "bin" / "plugin2").st_mode & 0o777 == 0o755

    (srcdir / "plugin4").write_bytes(b"changed again")  # check mode on an installed tree
    before = tree(node)
    res = r.play(args, check=True)["localhost"]
    assert res["changed"] and res["transferred"] == [f"{node}/bin/plugin4"] and res["bytes_transferred"] == 0
    assert tree(node) == before and os.listdir(up) == []

    # leftovers of an interrupted run are cleaned by the next run
    (node / "bin" / ".xcm-tmp.AbC123").mkdir()
    (node / "bin" / ".xcm-tmp.AbC123" / "m0").write_bytes(b"partial")
    user = getpass.getuser()  # the local connection's login user
    (up / f".xcm-up.{user}.dead.tar").write_bytes(b"partial")
    res = r.play(args)["localhost"]
    assert sorted(res["cleaned"]) == sorted([f"{node}/bin/.xcm-tmp.AbC123", f"{up}/.xcm-up.{user}.dead.tar"])
    assert not (node / "bin" / ".xcm-tmp.AbC123").exists() and os.listdir(up) == []
    assert not r.play(args)["localhost"]["changed"]

    # uninstall: absent files and a directory
    gone = {
        "upload_dir": str(up),
        "files": [
            {"dest": f"{node}/bin/plugin0", "state": "absent"},
            {"dest": f"{node}/nope", "state": "absent"},
        ],
        "directories": [{"path": f"{node}/etc", "state": "absent"}],
    }
    res = r.play(gone)["localhost"]
    assert res["removed"] == [f"{node}/bin/plugin0"] and res["directories"] == [f"{node}/etc"]
    assert not (node / "bin" / "plugin0").exists() and not (node / "etc").exists()
    assert (node / "bin" / "plugin1").exists() and (node / "bin" / "other").exists()
    assert not r.play(gone)["localhost"]["changed"]


def test_local_failed_put_changes_nothing(tmp_path, srcdir):
    node = tmp_path / "node"
    node.mkdir()
    (node / "plugin0").write_bytes(b"old")
    r = Runner(tmp_path)
    args = {
        "upload_dir": str(tmp_path / "no-such-dir"),
        "files": [{"src": str(srcdir) + "/", "dest": str(node)}],
    }
    res = r.play(args)["localhost"]
    assert res["failed"] and "localhost: uploading " in res["msg"] and " failed: " in res["msg"]
    assert os.listdir(node) == ["plugin0"] and read(node / "plugin0") == b"old"


def test_local_bad_input_names_host_value_and_expectation(tmp_path):
    r = Runner(tmp_path)
    res = r.play({"files": [{"content": "x", "dest": "/tmp/x", "mode": 755}]})["localhost"]
    assert res["failed"] and res["msg"] == (
        "localhost: files[0].mode: 755 is not a mode; expected a quoted octal string such as '0755'"
    )
    res = r.play({"files": [{"content": "x", "dest": "relative"}]})["localhost"]
    assert "localhost: files[0].dest: 'relative' is not an absolute path" in res["msg"]
    res = r.play({"files": [{"src": "no-such-file-xyz", "dest": "/tmp/x"}]})["localhost"]
    assert res["msg"].startswith("localhost: files[0].src: 'no-such-file-xyz' was not found on the contr")
    res = r.play({"files": [], "bogus": 1})["localhost"]
    assert res["failed"] and "bogus" in res["msg"]


def test_local_diff_and_secret_with_vvv(tmp_path):
    node = tmp_path / "node"
    node.mkdir()
    (node / "plain").write_bytes(b"line 1\nold plain\nline 3\n")
    (node / "bin").write_bytes(b"\x7fELF\x00old")
    script = tmp_path / "script.sh"
    script.write_bytes(b"#!/bin/sh\necho new\n")
    r = Runner(tmp_path)
    secret = "S3CR3T-" + os.urandom(8).hex()
    args = {
        "files": [
            {"content": "line 1\nnew plain\nline 3\n", "dest": f"{node}/plain"},
            {"content": secret, "dest": f"{node}/token", "secret": True},
            {"content": "\x00new", "dest": f"{node}/bin"},
            {"src": str(script), "dest": f"{node}/script.sh"},
        ],
        "upload_dir": str(tmp_path),
    }
    res = r.play(args, diff=True, extra=["-vvv"])["localhost"]
    out = r.output
    # text: a unified diff of the content, as copy/template show it
    assert (
        f"--- before: {node}/plain\n+++ after: {node}/plain\n"
        "@@ -1,3 +1,3 @@\n line 1\n-old plain\n+new plain\n" in out
    )
    assert f"+++ after: {script}\n@@ -0,0 +1,2 @@\n+#!/bin/sh\n+echo new\n" in out
    # binary: size and sha256
    assert f"-sha256: {sha(bytes([0x7F]) + b'ELF' + bytes([0]) + b'old')}\n-size: 8\n" in out
    assert f"+sha256: {sha(bytes([0]) + b'new')}\n+size: 4\n" in out
    assert res["round_trips"] == 5  # read, diff read, private upload directory, upload, finalize
    assert f"+++ after: {node}/token" in out and "+sha256: (secret)" in out
    assert secret not in out and sha(secret.encode()) not in out
    assert read(node / "token").decode() == secret


# ---------------------------------------------------------------- (b) Python-less SSH nodes


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    miss = missing_tools()
    if miss:
        pytest.skip(f"missing: {', '.join(miss)} (scripts/install-deps)")
    t = Target(str(tmp_path_factory.mktemp("target")), nodes=1).up()
    yield t
    t.down()


def ssh_runner(target, tmp, transfer="sftp", user="root", **kw):
    inv = target.inventory(os.path.join(tmp, f"inv-{transfer}-{user}"), user=user, transfer=transfer)
    return Runner(tmp, hosts="xcluster", inventory=inv, wrap=target.wrap([]), **kw)


def test_ssh_node_has_no_python(target, tmp_path):
    r = target.ssh(1, "python3 -c 1; echo rc=$?; readlink -f /proc/$$/exe; type sha256sum tar", check=False)
    assert "rc=126" in r.stdout or "rc=127" in r.stdout
    # busybox's applets (as on xcluster) are the VM lab's: LAB=vm tests/integration/test_push_files_lab.py
    res = ssh_runner(target, str(tmp_path)).play({"files": [{"content": "x", "dest": "/tmp/np/x"}]})
    assert res["vm-001"]["changed"] and read(target.node_path(1, "/tmp/np/x")) == b"x"


@pytest.mark.parametrize("transfer", ["sftp", "scp", "piped", "smart"])
def test_ssh_transfer_methods(target, tmp_path, srcdir, transfer):
    dest = f"/tmp/{transfer}/bin"
    r = ssh_runner(target, str(tmp_path), transfer)
    args = {
        "files": [{"src": str(srcdir) + "/", "dest": dest}, {"content": "c\n", "dest": f"/tmp/{transfer}/c"}]
    }
    res = r.play(args)["vm-001"]
    assert res["changed"] and res["transport"] == "tar" and len(res["transferred"]) == 6
    host_view = target.node_path(1, dest)
    assert tree(host_view) == tree(str(srcdir))
    res = r.play(args)["vm-001"]
    assert not res["changed"] and res["round_trips"] == 1 and res["bytes_transferred"] == 0
    (srcdir / "plugin2").write_bytes(b"v2")
    res = r.play(args)["vm-001"]
    assert res["transferred"] == [f"{dest}/plugin2"] and res["transport"] == "files"
    assert read(os.path.join(host_view, "plugin2")) == b"v2"
    assert not [n for n in os.listdir(target.node_path(1, "/tmp")) if n.startswith(".xcm-")]


def test_ssh_become_from_a_non_root_user(target, tmp_path, srcdir):
    if not shutil.which("sudo"):
        pytest.skip("sudo is not installed (apt sudo): no become method for the non-root user")
    r = ssh_runner(target, str(tmp_path), user="xcmuser")
    args = {
        "files": [{"src": str(srcdir) + "/", "dest": "/tmp/become/bin"}, {"content": "k", "dest": "/root/k"}]
    }
    res = r.play(args)["vm-001"]  # without become: /root is not the user's
    assert res["failed"] and "vm-001: the finalize step failed" in res["msg"]
    assert not os.path.exists(target.node_path(1, "/root/k"))
    res = r.play(args, become=True)["vm-001"]
    assert res["changed"] and len(res["transferred"]) == 6, res
    for p in ("/tmp/become/bin/plugin0", "/root/k"):
        st = os.stat(target.node_path(1, p))
        assert (st.st_uid, st.st_gid) == (0, 0), p  # the become user's, not xcmuser's
    assert read(target.node_path(1, "/root/k")) == b"k"
    assert not r.play(args, become=True)["vm-001"]["changed"]
    # leftovers of the failed run: the upload by xcmuser was removed, nothing left in /tmp
    assert not [n for n in os.listdir(target.node_path(1, "/tmp")) if n.startswith(".xcm-up.xcmuser")]


@pytest.mark.parametrize("transfer", ["sftp", "piped"])
def test_ssh_secret_never_shown_even_with_vvv(target, tmp_path, transfer):
    r = ssh_runner(target, str(tmp_path), transfer)
    secret = "S3CR3T-" + os.urandom(8).hex()
    files = [{"content": secret, "dest": f"/tmp/sec-{transfer}/token", "secret": True}]
    res = r.play({"files": files}, diff=True, extra=["-vvv"])["vm-001"]
    assert res["round_trips"] == 4  # read, private upload dir, upload, finalize
    out = r.output
    r.play({"files": files}, diff=True, extra=["-vvv"])  # second run: the node's checksum is read
    out += r.output
    assert secret not in out and sha(secret.encode()) not in out
    assert "censored" in out
    assert oct(os.stat(target.node_path(1, f"/tmp/sec-{transfer}/token")).st_mode & 0o777) == "0o600"
    assert not [n for n in os.listdir(target.node_path(1, "/tmp")) if n.startswith(".xcm-")]
    # the same without secret: -vvv does show the node's answer (the test above can fail)
    plain = [{"content": secret, "dest": f"/tmp/sec-{transfer}/plain"}]
    assert r.play({"files": plain})["vm-001"]["round_trips"] == 3
    r.play({"files": plain}, extra=["-vvv"])
    assert sha(secret.encode()) in r.output


def test_ssh_killed_transfer_leaves_no_partial_file(target, tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    old.write_bytes(os.urandom(1_000_000))
    new.write_bytes(os.urandom(60_000_000))
    r = ssh_runner(target, str(tmp_path))
    dest = "/tmp/kill/big"
    assert r.play({"files": [{"src": str(old), "dest": dest}]})["vm-001"]["changed"]
    node_tmp = target.node_path(1, "/tmp")
    # slow the controller -> node link down (the node's port on the lab's fabric) to kill mid-file
    tbf = [
        "tc",
        "qdisc",
        "add",
        "dev",
        target.port(1),
        "root",
        "tbf",
        "rate",
        "40mbit",
        "burst",
        "64kb",
        "latency",
        "500ms",
    ]
    subprocess.run(target.in_fabric(tbf), check=True)
    try:
        p = r.play({"files": [{"src": str(new), "dest": dest}]}, popen=True)
        deadline, seen = time.time() + 60, 0
        while time.time() < deadline and seen < 5_000_000:
            ups = [n for n in os.listdir(node_tmp) if n.startswith(".xcm-up.root.")]
            seen = os.path.getsize(os.path.join(node_tmp, ups[0])) if ups else 0
            time.sleep(0.05)
        assert 5_000_000 <= seen < 60_000_000, f"could not catch the upload in flight ({seen} bytes)"
        # ansible's workers run in their own session: kill everything in the play's PID
        # namespace (ansible, workers, ssh clients, the ssh mux master)
        assert target.kill_controller()
        p.wait()
        size = -1
        while size != os.path.getsize(os.path.join(node_tmp, ups[0])):  # the node saw the end
            size = os.path.getsize(os.path.join(node_tmp, ups[0]))
            time.sleep(0.5)
        assert size < 60_000_000, f"the upload completed ({size} bytes) before the kill"
    finally:
        subprocess.run(target.in_fabric(["tc", "qdisc", "del", "dev", target.port(1), "root"]), check=False)
    assert sha(read(target.node_path(1, dest))) == sha(read(old))  # old content, whole
    left = [n for n in os.listdir(node_tmp) if n.startswith(".xcm-")]
    assert left, "the partial upload should still be there for the next run to clean"
    res = r.play({"files": [{"src": str(new), "dest": dest}]})["vm-001"]
    assert res["changed"] and sorted(os.path.basename(c) for c in res["cleaned"]) == sorted(left), (res, left)
    assert sha(read(target.node_path(1, dest))) == sha(read(new))
    assert not [n for n in os.listdir(node_tmp) if n.startswith(".xcm-")]
    assert not [n for n in os.listdir(target.node_path(1, "/tmp/kill")) if n.startswith(".xcm-")]


def test_ssh_diff_of_a_text_file_reads_the_node(target, tmp_path):
    r = ssh_runner(target, str(tmp_path))
    files = [{"content": "a: 1\nb: 2\n", "dest": "/tmp/diff/conf.yml"}]
    assert r.play({"files": files})["vm-001"]["changed"]
    files[0]["content"] = "a: 1\nb: 3\n"
    res = r.play({"files": files}, diff=True, check=True)["vm-001"]
    assert res["changed"] and res["round_trips"] == 2, res  # read, diff read
    assert (
        "--- before: /tmp/diff/conf.yml\n+++ after: /tmp/diff/conf.yml\n"
        "@@ -1,2 +1,2 @@\n a: 1\n-b: 2\n+b: 3\n" in r.output
    )
    assert read(target.node_path(1, "/tmp/diff/conf.yml")) == b"a: 1\nb: 2\n"  # check mode


def _node_pids(target, k, comm):
    out = subprocess.run(
        ["ip", "netns", "pids", f"{target.name}-vm-{k:03d}"], capture_output=True, text=True, check=True
    )
    found = []
    for pid in out.stdout.split():
        with contextlib.suppress(OSError), open(f"/proc/{pid}/comm") as f:
            if f.read().strip() == comm:
                found.append(int(pid))
    return found


def _upload_in_flight(target, r, args, node_dir, on_flight, *, rate="40mbit"):
    """Run the play in a thread over a slowed link; when the node has >= 3 MB of the upload,
    call on_flight(); return the play's result."""
    subprocess.run(target.in_fabric(["tc", "qdisc", "add", "dev", target.port(1), "root", "tbf", "rate", rate,
                                    "burst", "64kb", "latency", "500ms"]), check=True)  # fmt: skip
    out = {}
    th = threading.Thread(target=lambda: out.update(r.play(args)))
    try:
        th.start()
        deadline, seen = time.time() + 60, 0
        while time.time() < deadline and seen < 3_000_000:
            ups = [n for n in os.listdir(node_dir) if n.startswith(".xcm-up.root.")]
            seen = os.path.getsize(os.path.join(node_dir, ups[0])) if ups else 0
            time.sleep(0.05)
        assert seen >= 3_000_000, f"could not catch the upload in flight ({seen} bytes)"
        on_flight()
        th.join(120)
    finally:
        subprocess.run(target.in_fabric(["tc", "qdisc", "del", "dev", target.port(1), "root"]), check=False)
    assert not th.is_alive()
    return out["vm-001"]


def test_ssh_upload_to_a_full_disk_says_so_and_removes_the_upload(target, tmp_path):
    big = tmp_path / "big"
    big.write_bytes(os.urandom(3_000_000))
    target.ssh(1, "mkdir -p /tmp/full /tmp/fulldest && mount -t tmpfs -o size=1m xcm-full /tmp/full"
                  " && mount -t tmpfs -o size=1m xcm-full /tmp/fulldest")  # fmt: skip
    try:
        r = ssh_runner(target, str(tmp_path))
        res = r.play({"files": [{"src": str(big), "dest": "/tmp/fullkept/big"}], "upload_dir": "/tmp/full"})
        res = res["vm-001"]
        assert res["failed"] and "failed: the node's /tmp/full is full (" in res["msg"], res["msg"]
        assert "the upload needs 2930 KiB); the partial upload was removed;" in res["msg"]
        assert target.ssh(1, "ls -A /tmp/full").stdout == ""  # removed at once
        assert not os.path.exists(target.node_path(1, "/tmp/fullkept/big"))
        # the upload fits, the destination does not: the finalize step says so, cleans up
        res = r.play({"files": [{"src": str(big), "dest": "/tmp/fulldest/big"}]})["vm-001"]
        assert res["failed"] and "the finalize step failed on the node: a disk is full" in res["msg"], res
        assert target.ssh(1, "ls -A /tmp/fulldest").stdout == ""
        assert not [n for n in os.listdir(target.node_path(1, "/tmp")) if n.startswith(".xcm-up.")]
    finally:
        target.ssh(1, "umount /tmp/full /tmp/fulldest", check=False)


def test_ssh_closed_connection_says_so_and_removes_the_upload(target, tmp_path):
    big = tmp_path / "big"
    big.write_bytes(os.urandom(30_000_000))
    r = ssh_runner(target, str(tmp_path))
    node_tmp = target.node_path(1, "/tmp")

    def kill_sftp_server():  # the node's end of the transfer dies; the ssh connection lives
        pids = _node_pids(target, 1, "sftp-server")
        assert pids
        for pid in pids:
            os.kill(pid, signal.SIGKILL)

    res = _upload_in_flight(target, r, {"files": [{"src": str(big), "dest": "/tmp/closed/big"}]}, node_tmp,
                            kill_sftp_server)  # fmt: skip
    assert res["failed"] and "failed: the connection was closed (" in res["msg"], res["msg"]
    assert "; the partial upload was removed;" in res["msg"]
    assert not [n for n in os.listdir(node_tmp) if n.startswith(".xcm-up.")]
    assert not os.path.exists(target.node_path(1, "/tmp/closed/big"))


def test_ssh_timeout_says_so_and_the_next_run_removes_the_upload(target, tmp_path):
    big = tmp_path / "big"
    big.write_bytes(os.urandom(30_000_000))
    inv = target.inventory(
        os.path.join(str(tmp_path), "inv-timeout"),
        extra={"ansible_ssh_args": "'-o ControlMaster=no -o ServerAliveInterval=1 -o ServerAliveCountMax=3'",
               "ansible_timeout": "3"},
    )  # fmt: skip
    r = Runner(str(tmp_path), hosts="xcluster", inventory=inv, wrap=target.wrap([]))
    node_tmp = target.node_path(1, "/tmp")
    args = {"files": [{"src": str(big), "dest": "/tmp/timeout/big"}]}

    def blackhole():  # 1 byte/s to the node: nothing arrives, nothing is reset or closed
        tbf = ["tc", "qdisc", "replace", "dev", target.port(1), "root", "tbf", "rate", "8bit", "burst",
               "1600", "latency", "1ms"]  # fmt: skip
        subprocess.run(target.in_fabric(tbf), check=True)

    res = _upload_in_flight(target, r, args, node_tmp, blackhole)
    assert (
        res["failed"]
        and "failed: the connection timed out; the partial upload /tmp/.xcm-up.root." in res["msg"]
    ), res
    assert "stays in the node's /tmp; the next run removes it" in res["msg"]
    left = [n for n in os.listdir(node_tmp) if n.startswith(".xcm-up.")]
    assert len(left) == 1
    res = r.play(args)["vm-001"]  # the link is back
    assert res["changed"] and [os.path.basename(c) for c in res["cleaned"]] == left
    assert not [n for n in os.listdir(node_tmp) if n.startswith(".xcm-up.")]
    assert sha(read(target.node_path(1, "/tmp/timeout/big"))) == sha(read(big))
