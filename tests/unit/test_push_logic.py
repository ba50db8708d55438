# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""plugin_utils/push.py without Ansible: validation, the node commands (run for real with
busybox sh, as on a node), compare, finalize, report and diff."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "collections"))
from ansible_collections.xcluster.multus.plugins.plugin_utils import push  # noqa: E402

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


def test_parse_state_kinds_stat_and_sums():
    files, dirs = push.normalize(
        H,
        [
            {"content": "a", "dest": "/f"},
            {"content": "b", "dest": "/m"},
            {"dest": "/gone", "state": "absent"},
            {"content": "c", "dest": "/l"},
        ],
        ["/d"],
    )
    out = (
        "F\nM\nF\nL\nD\n::xcm::\n755 0 0 root root\n644 0 0 root root\n755 1 2 bin daemon\n"
        f"::xcm::\n{'a' * 64}  /f\n::xcm::\n/.xcm-tmp.abc\n::xcm-ok::\n"
    )
    state, left = push.parse_state(H, out, files, dirs)
    assert state["/f"] == push.NodeEntry("file", 0o755, "0", "0", "root", "root", "a" * 64)
    assert state["/m"].kind == "missing" and state["/l"].kind == "link"
    assert state["/gone"].sha256 is None and state["/d"].user == "bin"
    assert left == ["/.xcm-tmp.abc"]


@pytest.mark.parametrize(
    "out",
    [
        "",  # nothing at all (no OK mark)
        "F\n::xcm::\n::xcm::\n::xcm::\n::xcm-ok::\n",  # stat line missing
        "X\n::xcm::\n::xcm::\n::xcm::\n::xcm-ok::\n",  # unknown kind
        "F\nF\n::xcm::\n644 0 0 root root\n::xcm-ok::\n",  # too few sections
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
        "after": f"sha256: {sha(b'new')}\nmode: 0755\nowner: root\ngroup: root\n",
    }
    text = repr(d)
    assert "TOPSECRET" not in text and sha(b"TOPSECRET") not in text and sha(b"oldsecret") not in text
    assert "sha256: (secret)" in d[1]["after"]
    assert d[2]["before"].replace("0644", "0600") == d[2]["after"]


# ---------------------------------------------------------------- finalize, for real


def _apply(tmp_path, files, dirs, batch=True, *, compress=False, break_upload=False):
    """Read, plan and finalize against a directory with busybox sh; returns (plan, result)."""
    up = tmp_path / "upload"
    up.mkdir(exist_ok=True)
    globs = push.leftover_globs(files, dirs, str(up), "root")
    r = node_sh(push.state_command(files, dirs, globs))
    assert r.returncode == 0, r.stderr
    p = push.plan(H, files, dirs, *push.parse_state(H, r.stdout, files, dirs))
    if not p.changed:
        return p, None
    uploads = []
    if len(p.transfer) > 1 and batch:
        path = str(up / ".xcm-up.root.t.tar")
        push.write_tar(path, p.transfer, compress=compress)
        uploads.append((path, None))
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
    return p, node_sh(push.finalize_command(p, uploads, tar_compressed=compress))


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


def test_checksums_and_tars_are_shared_between_hosts(tmp_path):
    src = tmp_path / "f"
    src.write_bytes(b"payload")
    cache = tmp_path / "cache"
    cache.mkdir()
    assert push.sha256_file(str(src), str(cache)) == sha(b"payload")
    (entry,) = [p for p in cache.iterdir() if p.name.startswith("xcm-sha-")]
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


def test_relative_src_not_found_names_host_and_item():
    def find(src):
        raise push.PushError(f"{src!r} was not found on the controller: searched files/")

    with pytest.raises(push.PushError, match=r"^vm-001: files\[0\].src: .nope. was not found on the contr"):
        push.normalize(H, [{"src": "nope", "dest": "/a"}], find_source=find)
