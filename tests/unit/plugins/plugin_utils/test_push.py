# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""plugin_utils/push.py without Ansible: validation, the node commands (run for real with
busybox sh, as on a node), compare, finalize, report and diff."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import pathlib
import shutil
import stat
import subprocess
import time

import pytest
from ansible_collections.xcluster.multus.plugins.plugin_utils import artifacts, push
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

BUSYBOX = shutil.which("busybox")
needs_busybox = pytest.mark.skipif(BUSYBOX is None, reason="busybox is not installed (apt busybox-static)")
H = "vm-001"


def node_sh(script, cwd=None):
    """Run a node command the way a node does: busybox sh (its applets come first)."""
    return subprocess.run([BUSYBOX, "sh", "-c", script], check=False, capture_output=True, text=True, cwd=cwd)


def sha(data):
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- normalize


def test_content_defaults_and_secret_mode():
    files, dirs = push.normalize(
        H,
        [
            {"content": "a", "dest": "/etc/a"},
            {"content": "b", "dest": "/etc/b", "secret": True},
            {"content": "c", "dest": "/etc//x/../c", "mode": "0640", "owner": "root", "group": 0},
        ],
        ["/etc/d", {"path": "/etc/e", "mode": "700", "state": "absent"}],
    )
    assert [f.mode for f in files] == [0o644, 0o600, 0o640]
    assert files[2].dest == "/etc/c" and files[2].group == "0"
    assert files[0].sha256 == sha(b"a") and files[0].size == 1
    assert dirs == [push.DirSpec("/etc/d"), push.DirSpec("/etc/e", "absent", 0o700)]


def test_src_file_and_directory_expand_with_their_modes(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "x").write_bytes(b"x")
    (tmp_path / "d" / "sub" / "y").write_bytes(b"yy")
    os.chmod(tmp_path / "d" / "x", 0o751)
    files, _ = push.normalize(
        H, [{"src": str(tmp_path / "d"), "dest": "/opt/bin/"}, {"src": "rel", "dest": "/z", "mode": "0600"}],
        find_source=lambda s: str(tmp_path / "d" / "x"),
    )  # fmt: skip
    assert [(f.dest, f.mode, f.size) for f in files] == [
        ("/opt/bin/sub/y", stat.S_IMODE(os.stat(tmp_path / "d/sub/y").st_mode), 2),
        ("/opt/bin/x", 0o751, 1),
        ("/z", 0o600, 1),
    ]


@pytest.mark.parametrize(
    ("item", "match"),
    [
        ({"content": "a", "dest": "etc/a"}, r"vm-001: files\[0\].dest: 'etc/a' is not an absolute path"),
        ({"content": "a", "dest": "/"}, "is the root directory"),
        ({"content": "a", "dest": "/a\nb"}, "newline"),
        ({"content": "a", "dest": "/x/.xcm-tmp.1"}, "reserved name"),
        ({"content": "a", "dest": "/a", "mode": 493}, r"files\[0\].mode: 493 is not a mode; expected a"),
        ({"content": "a", "dest": "/a", "mode": "u+x"}, "'u\\+x' is not a mode"),
        ({"content": "a", "dest": "/a", "mode": "0999"}, "is not a mode"),
        ({"content": "a", "dest": "/a", "owner": "bad name"}, "is not a user/group"),
        ({"content": "a", "dest": "/a", "secret": "yes"}, "is not a boolean"),
        ({"content": "a", "dest": "/a", "state": "gone"}, "is not a state"),
        ({"content": "a", "src": "/etc/hostname", "dest": "/a"}, "exactly one of src or content"),
        ({"dest": "/a"}, "exactly one of src or content"),
        ({"dest": "/a", "src": "/x", "state": "absent"}, "state absent takes no src"),
        ({"content": "a"}, "no dest"),
        ({"content": "a", "dest": "/a", "dset": 1}, "unknown keys"),
        ({"content": ["a"], "dest": "/a"}, r"content: is a list; expected a string"),
        ({"src": "/nonexistent/xyz", "dest": "/a"}, "does not exist on the controller"),
        ("/a", "is not a mapping"),
    ],
)
def test_bad_file_items_name_host_value_and_expectation(item, match):
    with pytest.raises(push.PushError, match=match) as e:
        push.normalize(H, [item])
    assert str(e.value).startswith("vm-001: ")


def test_bad_lists_and_duplicates():
    with pytest.raises(push.PushError, match="files: 'x' is not a list"):
        push.normalize(H, "x")
    with pytest.raises(push.PushError, match="'/a' is a dest given twice"):
        push.normalize(H, [{"content": "a", "dest": "/a"}, {"content": "b", "dest": "/b/../a"}])
    with pytest.raises(push.PushError, match="given twice"):
        push.normalize(H, [{"content": "a", "dest": "/a"}], ["/a"])
    with pytest.raises(push.PushError, match=r"directories\[0\].mode"):
        push.normalize(H, [], [{"path": "/d", "mode": 755}])


def test_secret_content_never_in_errors_or_repr():
    files, _ = push.normalize(H, [{"content": "TOPSECRET", "dest": "/a", "secret": True}])
    assert "TOPSECRET" not in repr(files)
    with pytest.raises(push.PushError) as e:
        push.normalize(H, [{"content": "TOPSECRET", "dest": "a", "secret": True}])
    assert "TOPSECRET" not in str(e.value)


# ---------------------------------------------------------------- the node's answer


def _stat_line(attrs, path, ctime="2026-01-01 00:00:00.000000001 +0000"):
    return f"{attrs}|{ctime}|4 12 2049 2026-01-01 00:00:00.000000000 +0000|{path}"


def test_parse_state_kinds_stat_records_and_sums():
    files, dirs = push.normalize(
        H,
        [
            {"content": "a", "dest": "/f"},
            {"content": "b", "dest": "/m"},
            {"dest": "/gone", "state": "absent"},
            {"content": "c", "dest": "/l"},
            {"content": "e", "dest": "/e"},
        ],
        ["/d"],
    )
    out = (
        "F\nM\nF\nL\nF\nD\n::xcm::\n"
        + "".join(
            _stat_line(a, p) + "\n"
            for a, p in [
                ("755 0 0 root root", "/f"),
                ("644 0 0 root root", "/gone"),
                ("644 0 0 root root", "/e"),
                ("755 1 2 bin daemon", "/d"),
            ]
        )
        + f"::xcm::\nH\nR {'e' * 64}\n::xcm::\n{'a' * 64}  /f\n::xcm::\n/.xcm-tmp.abc\n::xcm-ok::\n"
    )
    state, left = push.parse_state(H, out, files, dirs)
    ident = _stat_line("", "/f").split("|", 1)[1]
    assert state["/f"] == push.NodeEntry("file", 0o755, "0", "0", "root", "root", "a" * 64, ident, True)
    assert state["/e"].sha256 == "e" * 64 and not state["/e"].hashed  # from its record
    assert state["/m"].kind == "missing" and state["/l"].kind == "link"
    assert state["/gone"].sha256 is None and state["/d"].user == "bin"
    assert left == ["/.xcm-tmp.abc"]


LINE = _stat_line("644 0 0 root root", "/f")


@pytest.mark.parametrize(
    "out",
    [
        "",  # nothing at all (no OK mark)
        "F\n::xcm::\n::xcm::\nH\n::xcm::\n::xcm::\n::xcm-ok::\n",  # stat line missing
        "X\n::xcm::\n::xcm::\n::xcm::\n::xcm::\n::xcm-ok::\n",  # unknown kind
        "F\nF\n::xcm::\n644 0 0 root root\n::xcm-ok::\n",  # too few sections
        f"F\n::xcm::\n{LINE}\n::xcm::\n::xcm::\n::xcm::\n::xcm-ok::\n",  # no verdict
        f"F\n::xcm::\n{LINE}\n::xcm::\nH\n::xcm::\n::xcm::\n::xcm-ok::\n",  # hashed, but no sum
        f"F\n::xcm::\n{LINE}\n::xcm::\nR xyz\n::xcm::\n::xcm::\n::xcm-ok::\n",  # a record's sha256 odd
        f"F\n::xcm::\n644 0 0 root root\n::xcm::\nH\n::xcm::\n{'a' * 64}  /f\n::xcm::\n::xcm-ok::\n",
    ],
)
def test_parse_state_refuses_odd_answers(out):
    files, _ = push.normalize(H, [{"content": "a", "dest": "/f"}])
    with pytest.raises(push.PushError, match="vm-001: "):
        push.parse_state(H, out, files, [])


@needs_busybox
def test_state_command_on_busybox_reads_a_real_tree(tmp_path):
    (tmp_path / "same").write_bytes(b"same")
    (tmp_path / "other").write_bytes(b"old")
    os.chmod(tmp_path / "other", 0o600)
    (tmp_path / "dir").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "same")
    (tmp_path / "weird name 'q'").write_bytes(b"w")
    (tmp_path / ".xcm-tmp.zzz").mkdir()
    (tmp_path / "up").mkdir()
    (tmp_path / "up" / ".xcm-up.root.1234.tar").write_bytes(b"")
    (tmp_path / "up" / ".xcm-up.bob.1234").write_bytes(b"")  # someone else's: not ours to clean
    t = str(tmp_path)
    files, dirs = push.normalize(
        H,
        [
            {"content": "same", "dest": f"{t}/same", "mode": "0644"},
            {"content": "new", "dest": f"{t}/other", "mode": "0644"},
            {"content": "x", "dest": f"{t}/missing"},
            {"content": "x", "dest": f"{t}/link"},
            {"content": "w", "dest": f"{t}/weird name 'q'"},
            {"dest": f"{t}/other2", "state": "absent"},
        ],
        [t + "/dir", t + "/newdir"],
    )
    cmd = push.state_command(files, dirs, push.leftover_globs(files, dirs, t + "/up", "root"))
    r = node_sh(cmd)
    assert r.returncode == 0, r.stderr
    state, left = push.parse_state(H, r.stdout, files, dirs)
    assert state[f"{t}/same"].sha256 == sha(b"same")
    assert state[f"{t}/other"].mode == 0o600
    assert state[f"{t}/missing"].kind == "missing" and state[f"{t}/link"].kind == "link"
    assert state[f"{t}/weird name 'q'"].sha256 == sha(b"w")
    assert state[t + "/dir"].kind == "directory" and state[t + "/newdir"].kind == "missing"
    assert sorted(left) == [f"{t}/.xcm-tmp.zzz", f"{t}/up/.xcm-up.root.1234.tar"]
    p = push.plan(H, files, dirs, state, left)
    assert [f.dest for f in p.transfer] == [f"{t}/other", f"{t}/missing", f"{t}/link"]
    assert p.attrs == [] and p.remove == [] and [d.path for d in p.mkdirs] == [t + "/newdir"]


# ---------------------------------------------------------------- plan


def _entry(data, mode=0o644, user="root", uid="0"):
    return push.NodeEntry("file", mode, uid, uid, user, user, sha(data))


def test_plan_cases():
    files, dirs = push.normalize(
        H,
        [
            {"content": "same", "dest": "/same", "mode": "0644"},
            {"content": "new", "dest": "/changed", "mode": "0644"},
            {"content": "m", "dest": "/modeonly", "mode": "0755"},
            {"content": "o", "dest": "/owneronly", "mode": "0644", "owner": "bin"},
            {"content": "n", "dest": "/numeric", "owner": "0", "group": "root"},
            {"dest": "/absent-present", "state": "absent"},
            {"dest": "/absent-missing", "state": "absent"},
        ],
        [{"path": "/d1", "mode": "0700"}, "/d2", {"path": "/d3", "state": "absent"}],
    )
    state = {
        "/same": _entry(b"same"),
        "/changed": _entry(b"old"),
        "/modeonly": _entry(b"m"),
        "/owneronly": _entry(b"o"),
        "/numeric": _entry(b"n"),
        "/absent-present": _entry(b"x"),
        "/absent-missing": push.NodeEntry("missing"),
        "/d1": push.NodeEntry("directory", 0o755, "0", "0", "root", "root"),
        "/d2": push.NodeEntry("missing"),
        "/d3": push.NodeEntry("directory", 0o755, "0", "0", "root", "root"),
    }
    p = push.plan(H, files, dirs, state)
    assert [f.dest for f in p.transfer] == ["/changed"]
    assert [f.dest for f in p.attrs] == ["/modeonly", "/owneronly"]
    assert [f.dest for f in p.remove] == ["/absent-present"]
    assert [d.path for d in p.dir_attrs] == ["/d1"]
    assert [d.path for d in p.mkdirs] == ["/d2"] and [d.path for d in p.rmdirs] == ["/d3"]
    assert p.changed
    r = push.report(p, 10, 3, "files")
    assert r["changed_files"] == ["/absent-present", "/changed", "/modeonly", "/owneronly"]
    assert r["bytes_transferred"] == 10 and r["round_trips"] == 3


def test_plan_nothing_to_do_and_leftovers_alone_are_a_change():
    files, _ = push.normalize(H, [{"content": "s", "dest": "/s", "mode": "0644"}])
    assert not push.plan(H, files, [], {"/s": _entry(b"s")}).changed
    p = push.plan(H, files, [], {"/s": _entry(b"s")}, ["/.xcm-tmp.x"])
    assert p.changed and push.report(p)["cleaned"] == ["/.xcm-tmp.x"]


def test_plan_refuses_directories_in_the_way():
    files, _ = push.normalize(H, [{"content": "s", "dest": "/s"}])
    with pytest.raises(push.PushError, match="vm-001: dest: '/s' is a directory on the node"):
        push.plan(H, files, [], {"/s": push.NodeEntry("directory")})
    _, dirs = push.normalize(H, [], ["/d"])
    with pytest.raises(push.PushError, match="'/d' is a file on the node; expected a directory"):
        push.plan(H, [], dirs, {"/d": _entry(b"")})


def test_diff_shows_checksums_and_modes_never_secrets():
    files, _ = push.normalize(
        H,
        [
            {"content": "new", "dest": "/a", "mode": "0755"},
            {"content": "TOPSECRET", "dest": "/s", "secret": True},
            {"content": "m", "dest": "/m", "mode": "0600"},
        ],
    )
    state = {"/a": _entry(b"old"), "/s": _entry(b"oldsecret"), "/m": _entry(b"m")}
    d = push.diff(push.plan(H, files, [], state))
    assert d[0] == {
        "before_header": "/a",
        "after_header": "/a",
        "before": f"sha256: {sha(b'old')}\nmode: 0644\nowner: root\ngroup: root\n",
        "after": f"sha256: {sha(b'new')}\nsize: 3\nmode: 0755\nowner: root\ngroup: root\n",
    }
    text = repr(d)
    assert "TOPSECRET" not in text and sha(b"TOPSECRET") not in text and sha(b"oldsecret") not in text
    assert "sha256: (secret)" in d[1]["after"] and "size" not in d[1]["after"]
    assert d[2]["before"].replace("0644", "0600") == d[2]["after"].replace(
        "size: 1\n", ""
    )  # no ident: no size


@needs_busybox
def test_diff_of_text_files_is_their_content_read_in_one_node_command(tmp_path):
    node = tmp_path / "node d"  # a space in every path
    node.mkdir()
    (node / "a.conf").write_bytes(b"one\ntwo\n")
    (node / "was-binary").write_bytes(b"\x7fELF\x00\x01\xff")
    (node / "big").write_bytes(b"x\n" * 600)
    (node / "token").write_bytes(b"OLDSECRET\n")
    (node / "bin").write_bytes(b"old bin")
    (node / "same").write_bytes(b"same\n")
    src = tmp_path / "src.sh"
    src.write_bytes(b"#!/bin/sh\necho new\n")
    n = str(node)
    files, _ = push.normalize(
        H,
        [
            {"content": "one\nTWO\n", "dest": f"{n}/a.conf", "mode": "0600"},
            {"content": "now text\n", "dest": f"{n}/was-binary"},
            {"content": "y\n" * 600, "dest": f"{n}/big"},  # new and old over the limit
            {"content": "NEWSECRET\n", "dest": f"{n}/token", "secret": True},
            {"content": b"\x00\x01new bin", "dest": f"{n}/bin"},
            {"src": str(src), "dest": f"{n}/new.sh"},  # not on the node yet
            {"content": "same\n", "dest": f"{n}/same"},
        ],
    )
    out = node_sh(push.state_command(files, [], []))
    state, _ = push.parse_state(H, out.stdout, files, [])
    p = push.plan(H, files, [], state)
    after, fetch = push.diff_texts(p, 1000)
    assert sorted(after) == [f"{n}/a.conf", f"{n}/new.sh", f"{n}/was-binary"]
    assert fetch == [f"{n}/a.conf", f"{n}/was-binary"]  # new.sh: nothing on the node to read
    out = subprocess.run(
        [BUSYBOX, "sh", "-c", push.fetch_command(fetch, "::xcm-tok")], capture_output=True, check=True
    )
    # decoded as Ansible decodes a command's output (undecodable bytes as surrogates)
    old = push.parse_fetch(H, out.stdout.decode("utf-8", "surrogateescape"), fetch, "::xcm-tok")
    assert old == {f"{n}/a.conf": "one\ntwo\n", f"{n}/was-binary": None}  # NUL: binary
    entries = push.diff(p, {k: (old.get(k), v) for k, v in after.items()})
    d = {e["before_header"]: e for e in entries}
    conf = [e for e in entries if e["before_header"] == f"{n}/a.conf"]
    assert conf[0] == {
        "before_header": f"{n}/a.conf",
        "after_header": f"{n}/a.conf",
        "before": "one\ntwo\n",
        "after": "one\nTWO\n",
    }
    user = state[f"{n}/a.conf"].user
    assert conf[1]["before"].startswith("mode: 0644\nowner: " + user) and conf[1]["after"].startswith(
        "mode: 0600"
    )
    assert d[f"{n}/new.sh"]["before"] == "" and d[f"{n}/new.sh"]["after"] == "#!/bin/sh\necho new\n"
    assert d[f"{n}/new.sh"]["after_header"] == str(src)
    assert (
        d[f"{n}/was-binary"]["before"].startswith("sha256: ")
        and "size: 7\n" in d[f"{n}/was-binary"]["before"]
    )
    assert "size: 1200\n" in d[f"{n}/big"]["before"] and "size: 1200\n" in d[f"{n}/big"]["after"]
    assert "size: 9\n" in d[f"{n}/bin"]["after"]  # the new binary's size
    text = repr(d)
    assert "SECRET" not in text and sha(b"NEWSECRET\n") not in text and sha(b"OLDSECRET\n") not in text
    assert f"{n}/same" not in d
    tty = out.stdout.decode("utf-8", "surrogateescape").replace("\n", "\r\n")  # ssh -tt: onlcr
    assert push.parse_fetch(H, tty, fetch, "::xcm-tok") == old
    with pytest.raises(push.PushError, match="vm-001: unexpected answer"):
        push.parse_fetch(H, "::xcm-tok:\nx\n" + push.OK_MARK, fetch, "::xcm-tok")


@pytest.mark.parametrize(
    ("error", "free", "cleaned", "why", "left"),
    [
        ("sftp transfer failed: dest open failed: Failure", 512, True,
         "the node's /tmp is full (512 KiB free, the upload needs 2930 KiB)", "was removed"),
        ("scp: /tmp/x: No space left on device", None, False, "the node's /tmp is full",
         "the partial upload /tmp/.xcm-up.root.t.tar stays in the node's /tmp; the next run removes it"),
        ("Timeout, server 198.18.254.1 not responding.", None, False, "the connection timed out", "next run"),
        ("Connection closed", 90000, True, "the connection was closed", "the partial upload was removed"),
        ("sftp> put /c/timeout/big /tmp/x", 90000, True, "the connection was closed (the node's", "removed"),
        ("sftp> put /c/big /tmp/x", None, False, "the upload failed", "the next run removes it"),
        ('dest open "/tmp/x": Permission denied', 90000, True, "the node refused the file", "was removed"),
    ],
)  # fmt: skip
def test_upload_failure_says_why_and_what_became_of_the_upload(error, free, cleaned, why, left):
    up = "/tmp/.xcm-up.root.t.tar"
    msg = push.upload_failure(H, up, error, 3_000_000, cleaned=cleaned, free=free)
    if not cleaned:  # the cleanup's own failure says why when the upload's does not
        after = "ssh: connect to host 198.18.254.1 port 22: Connection timed out"
        later = push.upload_failure(H, up, "sftp> put /c/x /tmp/x", 3_000_000, cleaned=False, after=after)
        assert "failed: the connection timed out; the partial upload /tmp/.xcm-up.root.t.tar stays" in later
    assert msg.startswith("vm-001: uploading 3000000 bytes to /tmp/.xcm-up.root.t.tar failed: " + why)
    assert left in msg and error in msg
    assert push.free_kib("x\nfree=512\n" + push.OK_MARK) == 512 and push.free_kib("") is None


@needs_busybox
def test_cleanup_command_removes_the_uploads_and_reports_free_room(tmp_path):
    up = tmp_path / "up"
    up.mkdir()
    (up / ".xcm-up.root.t.tar").write_bytes(b"partial")
    out = node_sh(push.cleanup_command([str(up / ".xcm-up.root.t.tar")], str(up)))
    assert out.returncode == 0 and push.OK_MARK in out.stdout
    assert os.listdir(up) == [] and push.free_kib(out.stdout) > 0
    assert push.command_failure_cause("tar: write error: No space left on device").startswith(
        ": a disk is full"
    )
    assert push.command_failure_cause("mv: bad") == ""


# ---------------------------------------------------------------- finalize, for real


def _apply(tmp_path, files, dirs, batch=True, *, compress=False, break_upload=False, state_dir=None):
    """Read, plan and finalize against a directory with busybox sh; returns (plan, result)."""
    up = tmp_path / "upload"
    up.mkdir(exist_ok=True)
    globs = push.leftover_globs(files, dirs, str(up), "root")
    r = node_sh(push.state_command(files, dirs, globs, state_dir))
    assert r.returncode == 0, r.stderr
    p = push.plan(H, files, dirs, *push.parse_state(H, r.stdout, files, dirs), records=bool(state_dir))
    if not p.changed and not p.record:
        return p, None
    uploads = []
    if len(p.transfer) > 1 and batch:
        parts = push.tar_parts(p.transfer)
        for k, part in enumerate(parts):  # as push_files packs them (the records in the last)
            path = str(up / f".xcm-up.root.t.{k}.tar")
            extra = push.record_members(p, state_dir) if k == len(parts) - 1 else ()
            push.write_tar(path, [p.transfer[i] for i in part], compress=compress, extra=extra, indexes=part)
            uploads.append((path, part))
    else:
        for i, f in enumerate(p.transfer):
            path = str(up / f".xcm-up.root.t.{i}")
            if f.content is not None:
                (up / f".xcm-up.root.t.{i}").write_bytes(f.content)
            else:
                shutil.copy(f.src, path)
            uploads.append((path, i))
    if break_upload:
        for path, _ in uploads:
            os.unlink(path)
    cmd = push.finalize_command(p, uploads, tar_compressed=compress, state_dir=state_dir, records_in_tar=True)
    return p, node_sh(cmd)


@needs_busybox
@pytest.mark.parametrize(("batch", "compress"), [(True, False), (True, True), (False, False)])
def test_finalize_installs_atomically_and_cleans(tmp_path, batch, compress):
    t = tmp_path / "node"
    (t / "bin").mkdir(parents=True)
    (t / "bin" / "keep").write_bytes(b"not ours")
    (t / "bin" / "old").write_bytes(b"old")
    (t / "bin" / ".xcm-tmp.stale").mkdir()
    files, dirs = push.normalize(
        H,
        [
            {"content": "one", "dest": f"{t}/bin/one", "mode": "0755"},
            {"content": "two", "dest": f"{t}/bin/old", "mode": "0700"},
            {"content": "cfg", "dest": f"{t}/etc/sub/cfg", "mode": "0640", "owner": "root", "group": "0"},
            {"dest": f"{t}/bin/gone", "state": "absent"},
        ],
        [{"path": f"{t}/dir", "mode": "0750"}],
    )
    (t / "bin" / "gone").write_bytes(b"bye")
    p, r = _apply(tmp_path, files, dirs, batch, compress=compress)
    assert r.returncode == 0 and push.OK_MARK in r.stdout, r.stderr
    assert (t / "bin" / "one").read_bytes() == b"one" and (t / "bin" / "old").read_bytes() == b"two"
    assert stat.S_IMODE(os.stat(t / "bin" / "old").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(t / "etc" / "sub" / "cfg").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(t / "dir").st_mode) == 0o750
    assert not (t / "bin" / "gone").exists() and (t / "bin" / "keep").read_bytes() == b"not ours"
    assert sorted(os.listdir(t / "bin")) == ["keep", "old", "one"]  # temporaries gone, stale one too
    assert os.listdir(tmp_path / "upload") == []
    assert _apply(tmp_path, files, dirs, batch)[0].changed is False  # idempotent


@needs_busybox
def test_finalize_mode_only_change_keeps_the_inode(tmp_path):
    (tmp_path / "f").write_bytes(b"data")
    ino = os.stat(tmp_path / "f").st_ino
    files, _ = push.normalize(H, [{"content": "data", "dest": f"{tmp_path}/f", "mode": "0751"}])
    p, r = _apply(tmp_path, files, [])
    assert r.returncode == 0 and p.transfer == [] and [f.dest for f in p.attrs] == [f"{tmp_path}/f"]
    st_ = os.stat(tmp_path / "f")
    assert st_.st_ino == ino and stat.S_IMODE(st_.st_mode) == 0o751


@needs_busybox
@pytest.mark.parametrize("batch", [True, False])
def test_finalize_failing_midway_changes_no_final_name(tmp_path, batch):
    (tmp_path / "a").write_bytes(b"old a")
    files, _ = push.normalize(
        H, [{"content": "new a", "dest": f"{tmp_path}/a"}, {"content": "new b", "dest": f"{tmp_path}/b"}]
    )
    _, r = _apply(tmp_path, files, [], batch=batch, break_upload=True)
    assert r.returncode != 0 and push.OK_MARK not in r.stdout
    assert (tmp_path / "a").read_bytes() == b"old a" and not (tmp_path / "b").exists()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".xcm-")]  # trap cleaned


names = st.text(alphabet="abcxyz-_. '", min_size=1, max_size=8).filter(lambda s: s not in (".", ".."))


@needs_busybox
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    first=st.dictionaries(names, st.tuples(st.binary(max_size=64), st.sampled_from(["0644", "0755", "0600"])),
                          min_size=1, max_size=6),
    second=st.dictionaries(names, st.tuples(st.binary(max_size=64), st.sampled_from(["0644", "0755"])),
                           max_size=6),
)  # fmt: skip
def test_property_any_two_pushes_converge(tmp_path_factory, first, second):
    """Whatever was there, after one push a read shows exactly the wanted files: no change."""
    base = tmp_path_factory.mktemp("prop")
    for want in (first, second):
        items = [
            {"content": data.decode("latin-1"), "dest": f"{base}/t/{n.lstrip('.') or 'x'}", "mode": m}
            for n, (data, m) in want.items()
        ]
        seen = set()
        items = [i for i in items if not (i["dest"] in seen or seen.add(i["dest"]))]
        files, _ = push.normalize(H, items)
        p, r = _apply(base, files, [])
        assert r is None or r.returncode == 0, r.stderr
        p2, _ = _apply(base, files, [])
        assert not p2.changed
        for f in files:
            with open(f.dest, "rb") as fh:
                assert fh.read() == f.content


# ---------------------------------------------------------------- records (the record rule)


def _read(tmp_path, files, state_dir):
    """One read of the node: {path: NodeEntry} and the plan, as a rerun would see them."""
    globs = push.leftover_globs(files, [], str(tmp_path / "upload"), "root")
    r = node_sh(push.state_command(files, [], globs, state_dir))
    assert r.returncode == 0, r.stderr
    state, left = push.parse_state(H, r.stdout, files, [])
    return state, push.plan(H, files, [], state, left, records=bool(state_dir))


def _records(rec):
    """{path: text} of every record below rec."""
    return {os.path.join(d, n): pathlib.Path(d, n).read_text() for d, _, ns in os.walk(rec) for n in ns}


def _hashed(state):
    return sorted(p for p, e in state.items() if e.hashed)


def _items(t, big=b"x" * 3000):
    return push.normalize(
        H,
        [
            {"content": big.decode(), "dest": f"{t}/bin/big", "mode": "0755"},
            {"content": "cfg\n", "dest": f"{t}/etc/a b|c.conf"},
            {"content": "TOPSECRET\n", "dest": f"{t}/etc/token", "secret": True},
        ],
    )[0]


@needs_busybox
def test_records_let_a_rerun_skip_hashing_and_keep_no_secret(tmp_path):
    t, rec = tmp_path / "node", tmp_path / "var" / "push"
    files = _items(t)
    p, r = _apply(tmp_path, files, [], state_dir=str(rec))
    assert r.returncode == 0 and push.OK_MARK in r.stdout, r.stderr
    state, p2 = _read(tmp_path, files, str(rec))
    assert _hashed(state) == [f"{t}/etc/token"]  # the secret only: it has no record
    assert not p2.changed and p2.record == []
    assert state[f"{t}/bin/big"].sha256 == sha(b"x" * 3000)  # the record's, which is right
    assert stat.S_IMODE(os.stat(rec).st_mode) == 0o700 and stat.S_IMODE(os.stat(rec.parent).st_mode) == 0o755
    records = _records(rec)
    assert sorted(records) == sorted(
        push.record_path(str(rec), f"{t}/{n}") for n in ("bin/big", "etc/a b|c.conf")
    )
    assert all(stat.S_IMODE(os.stat(n).st_mode) == 0o600 for n in records)
    assert {stat.S_IMODE(os.stat(d).st_mode) for d, _, _ in os.walk(rec)} == {0o700}
    text = "".join(records.values())
    assert f"|{t}/etc/a b|c.conf\n" in text and sha(b"TOPSECRET\n") not in text
    assert not [n for d in ("bin", "etc") for n in os.listdir(t / d) if n.startswith(".xcm-")]  # markers gone


@needs_busybox
def test_record_rule_sees_an_in_place_edit_with_size_and_mtime_restored(tmp_path):
    """ctime: rewritten in place right after the install (often within the same clock tick
    here), same size, mtime put back: the next read hashes it and the push replaces it."""
    t, rec = tmp_path / "node", str(tmp_path / "push")
    big = t / "bin" / "big"
    for i in range(15):
        files = _items(t, big=b"%02d" % i * 1500)  # a new version each round: installed, recorded
        p, r = _apply(tmp_path, files, [], state_dir=rec)
        assert r.returncode == 0 and [f.dest for f in p.transfer][:1] == [str(big)], r.stderr
        st = os.stat(big)
        with open(big, "r+b") as f:  # at once: same size, then the old mtime back
            f.write(b"ZZ")
        os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
        now = os.stat(big)
        assert (now.st_size, now.st_mtime_ns, now.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
        state, p2 = _read(tmp_path, files, rec)
        assert str(big) in _hashed(state), f"round {i}: the edit went unseen"
        assert [f.dest for f in p2.transfer] == [str(big)]
    p, r = _apply(tmp_path, files, [], state_dir=rec)
    assert r.returncode == 0 and big.read_bytes() == b"14" * 1500


FAKE_STAT = r"""#!/bin/sh
# A mock of stat (named so): the first $XCM_TIED calls print one ctime for every path, as
# when a marker and the files beside it fall in the same clock tick; then the real stat.
n=$(cat "$XCM_COUNT" 2>/dev/null || echo 0)
echo $((n + 1)) >"$XCM_COUNT"
if [ "$n" -lt "$XCM_TIED" ]; then
  /usr/bin/stat "$@" | sed 's/|[^|]*|/|2000-01-01 00:00:00.000000000 +0000|/'
else
  exec /usr/bin/stat "$@"
fi
"""


@pytest.mark.parametrize("tied", [3, 1000])
def test_no_record_is_written_while_a_file_shares_the_clock_tick_of_its_marker(tmp_path, tied):
    """A real same-tick case cannot be produced at will on a kernel with fine-grained
    timestamps for inodes whose time was read (this one): a mocked stat ties the ctimes."""
    t, rec = tmp_path / "node", tmp_path / "push"
    files = _items(t)
    _apply(tmp_path, files, [], state_dir=None)  # installed, no records
    state, p = _read(tmp_path, files, str(rec))
    assert len(p.record) == 2
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "stat").write_text(FAKE_STAT)
    os.chmod(fake / "stat", 0o755)
    env = dict(os.environ, PATH=f"{fake}:/usr/bin:/bin", XCM_TIED=str(tied), XCM_COUNT=str(tmp_path / "n"))
    r = subprocess.run(
        ["/bin/sh", "-c", push.finalize_command(p, [], state_dir=str(rec))],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0 and push.OK_MARK in r.stdout, r.stderr
    calls = int((tmp_path / "n").read_text())  # stat runs once per directory (bin, etc) and try
    if tied < 200:
        # bin's waited for the tie to end, then etc's saw the clock moved on at once
        assert calls == tied + 2
        assert len(_records(rec)) == 2 and "2000-01-01" not in "".join(_records(rec).values())
        assert _hashed(_read(tmp_path, files, str(rec))[0]) == [f"{t}/etc/token"]
    else:
        assert calls == 2 * 200 and _records(rec) == {}  # it gave up: no record, hashing next time
    assert not [n for d in ("bin", "etc") for n in os.listdir(t / d) if n.startswith(".xcm-")]


@needs_busybox
def test_touched_or_replaced_files_are_hashed_then_recorded_without_a_change(tmp_path):
    t, rec = tmp_path / "node", str(tmp_path / "push")
    files = _items(t)
    _apply(tmp_path, files, [], state_dir=rec)
    conf = t / "etc" / "a b|c.conf"
    os.utime(conf, ns=(1, 1))  # touched: same content
    big = t / "bin" / "big"
    shutil.copy2(big, t / "big.copy")
    os.replace(t / "big.copy", big)  # the same bytes under a new inode
    state, p = _read(tmp_path, files, rec)
    assert _hashed(state) == sorted([str(big), str(conf), f"{t}/etc/token"])
    assert not p.changed and sorted(f.dest for f in p.record) == sorted([str(big), str(conf)])
    p, r = _apply(tmp_path, files, [], state_dir=rec)  # the records only: no change
    assert r.returncode == 0 and not p.changed and push.report(p)["changed_files"] == []
    state, p = _read(tmp_path, files, rec)
    assert _hashed(state) == [f"{t}/etc/token"] and p.record == []


@needs_busybox
def test_a_record_is_only_trusted_for_its_own_path(tmp_path):
    t, rec = tmp_path / "node", tmp_path / "push"
    a, b = push.normalize(H, [{"content": "same", "dest": f"{t}/a"}, {"content": "same", "dest": f"{t}/b"}])[
        0
    ]
    _apply(tmp_path, [a], [], state_dir=str(rec))
    os.link(t / "a", t / "b")  # b: the same inode, size, times as a's record
    with open(push.record_path(str(rec), b.dest), "w") as f:
        f.write(pathlib.Path(push.record_path(str(rec), a.dest)).read_text())
    state, _ = _read(tmp_path, [a, b], str(rec))
    assert _hashed(state) == [str(t / "a"), str(t / "b")]  # the link changed a's ctime too


@needs_busybox
def test_no_state_dir_or_an_unwritable_one_only_costs_hashing(tmp_path):
    t = tmp_path / "node"
    files = _items(t)
    (tmp_path / "afile").write_bytes(b"")
    for state_dir in (None, str(tmp_path / "afile" / "push")):  # a file in the way: no records
        p, r = _apply(tmp_path, files, [], state_dir=state_dir)
        assert r is None or (r.returncode == 0 and push.OK_MARK in r.stdout), r.stderr
        state, p = _read(tmp_path, files, state_dir)
        assert len(_hashed(state)) == 3 and not p.changed
    assert (t / "bin" / "big").read_bytes() == b"x" * 3000


@needs_busybox
def test_removing_files_drops_their_records_and_the_empty_record_dir(tmp_path):
    t, rec = tmp_path / "node", tmp_path / "var" / "push"
    files = _items(t)
    _apply(tmp_path, files, [], state_dir=str(rec))
    gone = push.normalize(H, [{"dest": f.dest, "state": "absent"} for f in files[:1]])[0]
    p, r = _apply(tmp_path, gone, [], state_dir=str(rec))
    assert r.returncode == 0 and [f.dest for f in p.remove] == [files[0].dest]
    assert list(_records(rec)) == [push.record_path(str(rec), files[1].dest)]
    assert not os.path.exists(push.record_path(str(rec), str(t / "bin")))  # its empty directory too
    gone = push.normalize(H, [{"dest": f.dest, "state": "absent"} for f in files])[0]
    _apply(tmp_path, gone, [], state_dir=str(rec))
    assert not rec.exists() and rec.parent.exists()


@needs_busybox
@pytest.mark.parametrize("compress", [False, True])
def test_controller_files_ride_in_a_tar_of_their_own(tmp_path, monkeypatch, compress):
    """Binaries (files from the controller, the same on every host) and rendered content (per
    host) go in two tars once the binaries reach SPLIT_MIN: the binaries' tar is the same for
    every host (packed once per run); the records ride in the second. One finalize unpacks both."""
    monkeypatch.setattr(push, "SPLIT_MIN", 1000)
    t, src = tmp_path / "node", tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(os.urandom(3000))
    (src / "small").write_bytes(b"tiny")
    files, dirs = push.normalize(
        H,
        [
            {"src": str(src / "big"), "dest": f"{t}/bin/big", "mode": "0755"},
            {"content": "cfg", "dest": f"{t}/bin/cfg"},
            {"src": str(src / "small"), "dest": f"{t}/etc/small"},
            {"content": "index 7", "dest": f"{t}/etc/index"},
        ],
    )
    assert push.tar_parts(files) == [(0, 2), (1, 3)]
    assert push.tar_parts(files[:1] + files[2:3]) == [(0, 1)]  # nothing rendered: one tar
    monkeypatch.setattr(push, "SPLIT_MIN", 10_000)
    assert push.tar_parts(files) == [(0, 1, 2, 3)]  # binaries too small to be worth a tar
    monkeypatch.setattr(push, "SPLIT_MIN", 1000)
    rec = tmp_path / "records"
    p, r = _apply(tmp_path, files, dirs, compress=compress, state_dir=str(rec))
    assert r.returncode == 0 and push.OK_MARK in r.stdout, r.stderr
    assert (t / "bin" / "big").read_bytes() == (src / "big").read_bytes()
    assert (t / "bin" / "cfg").read_bytes() == b"cfg" and (t / "etc" / "index").read_bytes() == b"index 7"
    assert (t / "etc" / "small").read_bytes() == b"tiny"
    assert stat.S_IMODE(os.stat(t / "bin" / "big").st_mode) == 0o755
    assert (rec / str(t / "bin" / "big").lstrip("/")).exists() and (
        rec / str(t / "etc" / "index").lstrip("/")
    ).exists()
    assert not list((tmp_path / "upload").iterdir())  # both uploads removed
    # a second read finds every file as its record says: nothing to do
    p2, r2 = _apply(tmp_path, files, dirs, compress=compress, state_dir=str(rec))
    assert r2 is None and not p2.changed
    # another host's rendered content differs; the binaries' tar is the same file
    cache = tmp_path / "cache"
    cache.mkdir()
    other, _ = push.normalize(
        H,
        [
            dict(f, content="index 8") if "index" in f["dest"] else f
            for f in [
                {"src": str(src / "big"), "dest": f"{t}/bin/big", "mode": "0755"},
                {"content": "cfg", "dest": f"{t}/bin/cfg"},
                {"src": str(src / "small"), "dest": f"{t}/etc/small"},
                {"content": "index 7", "dest": f"{t}/etc/index"},
            ]
        ],
    )
    tars = []
    for fs in (files, other):
        parts = push.tar_parts(fs)
        tars.append([push.shared_tar(str(cache), [fs[i] for i in part], indexes=part)[0] for part in parts])
    assert tars[0][0] == tars[1][0] and tars[0][1] != tars[1][1]


def test_checksums_and_tars_are_shared_between_hosts(tmp_path):
    src = tmp_path / "f"
    src.write_bytes(b"payload")
    cache = tmp_path / "cache"
    cache.mkdir()
    assert push.sha256_file(str(src), str(cache)) == sha(b"payload")
    (entry,) = [p for p in cache.iterdir() if p.name.startswith("xcm-sha-") and not p.name.endswith(".lock")]
    entry.write_text("f" * 64)  # a second host gets the cached value: the file is not read again
    assert push.sha256_file(str(src), str(cache)) == "f" * 64
    src.write_bytes(b"payload, changed")  # a changed file (size, mtime) is a new entry
    assert push.sha256_file(str(src), str(cache)) == sha(b"payload, changed")
    files, _ = push.normalize(H, [{"content": "a", "dest": "/a"}, {"content": "b", "dest": "/b"}])
    p1, n1 = push.shared_tar(str(cache), files)
    os.utime(p1, (1, 1))
    p2, n2 = push.shared_tar(str(cache), files)  # same files: the same tar, not packed again
    assert (p1, n1) == (p2, n2) and os.stat(p2).st_mtime == 1
    assert oct(os.stat(p1).st_mode & 0o777) == "0o600"
    p3, _ = push.shared_tar(str(cache), files[:1])
    assert p3 != p1


def test_forks_at_once_hash_each_file_and_pack_each_tar_once(tmp_path, monkeypatch):
    """The forks serving many hosts start a push at the same moment: one of them hashes a file
    (packs a tar), the others wait for its result instead of doing it too."""
    src = tmp_path / "f"
    src.write_bytes(os.urandom(100_000))
    cache, log = tmp_path / "cache", tmp_path / "log"
    cache.mkdir()
    real_sha, real_tar = artifacts._sha256_of, push.write_tar

    def slow(real, what):
        def run(*a, **kw):
            with open(log, "a") as f:
                f.write(what + "\n")
            time.sleep(0.3)  # the others arrive meanwhile
            return real(*a, **kw)

        return run

    monkeypatch.setattr(artifacts, "_sha256_of", slow(real_sha, "sha"))
    monkeypatch.setattr(push, "write_tar", slow(real_tar, "tar"))

    def fork(i):
        files, _ = push.normalize(H, [{"src": str(src), "dest": "/a"}], cache_dir=str(cache))
        push.shared_tar(str(cache), files)
        (tmp_path / f"sum{i}").write_text(files[0].sha256)

    procs = [multiprocessing.get_context("fork").Process(target=fork, args=(i,)) for i in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0] * 6
    assert {(tmp_path / f"sum{i}").read_text() for i in range(6)} == {sha(src.read_bytes())}
    assert sorted(log.read_text().split()) == ["sha", "tar"]


def test_relative_src_not_found_names_host_and_item():
    def find(src):
        raise push.PushError(f"{src!r} was not found on the controller: searched files/")

    with pytest.raises(push.PushError, match=r"^vm-001: files\[0\].src: .nope. was not found on the contr"):
        push.normalize(H, [{"src": "nope", "dest": "/a"}], find_source=find)


def test_node_shell_lives_in_a_file_shellcheck_reads():
    path = os.path.join(os.path.dirname(push.__file__), "push_record.sh")
    with open(path) as f:
        text = f.read()
    assert text.startswith("# shellcheck shell=sh\n") and "xr() {" in text
    loaded = push.load_sh("push_record.sh")
    assert loaded.startswith("xr() {") and not [
        ln for ln in loaded.splitlines() if ln.lstrip().startswith("#")
    ]
    assert "\n$S\nXCM_EOF\n" in loaded and 'T="$T$f\n"\n' in loaded  # here-documents kept whole
    assert loaded == push._RECORD_FN
    with open(push.__file__) as f:
        assert "xr() {" not in f.read()  # not restated in Python
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", "-s", "sh", path], check=True)


@needs_busybox
def test_another_read_shares_the_state_reads_round_trip(tmp_path):
    """role_install's prechecks and probes ride in the push's read: one command, split at a
    mark line; the first part's output may end without a newline, a tty gives \\r\\n."""
    (tmp_path / "f").write_bytes(b"x")
    files, dirs = push.normalize(H, [{"content": "x", "dest": f"{tmp_path}/f"}])
    state = push.state_command(files, dirs, [])
    mark = "::xcm-state-0123"
    first = "echo probe one; printf 'no newline'; false"  # its status does not stop the read
    cmd = push.read_first(first, state, mark)
    r = node_sh(cmd)
    assert r.returncode == 0, r.stderr
    head, rest = push.split_first(H, r.stdout, mark)
    assert head == "probe one\nno newline\n"
    assert rest == node_sh(state).stdout
    assert push.parse_state(H, rest, files, dirs)[0][f"{tmp_path}/f"].kind == "file"
    assert push.split_first(H, r.stdout.replace("\n", "\r\n"), mark)[0].startswith("probe one\r\nno newline")
    with pytest.raises(
        push.PushError, match=r"^vm-001: the node's answer to the read has no line '::xcm-state-0123'"
    ):
        push.split_first(H, "probe one\n", mark)
    # too long for a node's ssh server together: each read is its own round trip
    assert push.read_first("echo " + "x" * push.COMMAND_LIMIT, state, mark) is None
