"""plugin_utils/gobuild.py without Ansible: the clone stamp, the cache, real go builds of a
tiny clone, and the clear errors (no Go, a failing build with its own output)."""

from __future__ import annotations

import os
import subprocess
import threading

import pytest
from ansible_collections.xcluster.multus.plugins.plugin_utils import gobuild
from gobuild_cases import git, make_tiny_clone


def _loose_objects(repo):
    out = []
    for d, _dirs, files in os.walk(repo / ".git" / "objects"):
        out += [os.path.join(d, f) for f in files]
    return sorted(out)


# ---------------------------------------------------------------- the stamp


def test_git_stamp_is_the_tree_git_would_commit(tiny_clone):
    s = gobuild.clone_stamp(str(tiny_clone))
    assert s["kind"] == "git"
    assert s["tree"] == git(tiny_clone, "rev-parse", "HEAD^{tree}")
    assert s["head"] == git(tiny_clone, "rev-parse", "HEAD")
    assert s["describe"] == "v0.0.1-0-g" + s["head"][:7]


def test_git_stamp_follows_content_not_names(tiny_clone):
    """Editing a file that is already modified changes the stamp (`git status --porcelain`
    would not: the same ` M path` line); undoing the edits gives the first stamp back."""
    main = tiny_clone / "cmd" / "whereabouts" / "main.go"
    orig = main.read_text()
    s0 = gobuild.clone_stamp(str(tiny_clone))
    main.write_text(orig + "\n// one\n")
    s1 = gobuild.clone_stamp(str(tiny_clone))
    porcelain1 = git(tiny_clone, "status", "--porcelain")
    main.write_text(orig + "\n// two\n")
    s2 = gobuild.clone_stamp(str(tiny_clone))
    assert git(tiny_clone, "status", "--porcelain") == porcelain1  # what a porcelain stamp would see
    assert len({s0["tree"], s1["tree"], s2["tree"]}) == 3
    main.write_text(orig)
    assert gobuild.clone_stamp(str(tiny_clone)) == s0


def test_git_stamp_untracked_ignored_excluded_and_modes(tiny_clone):
    s0 = gobuild.clone_stamp(str(tiny_clone), ["out"])
    (tiny_clone / "bin").mkdir()
    (tiny_clone / "bin" / "whereabouts").write_text("ignored by .gitignore")
    (tiny_clone / "build.log").write_text("ignored too")
    (tiny_clone / "out").mkdir()
    (tiny_clone / "out" / "x").write_text("excluded by the caller")
    assert gobuild.clone_stamp(str(tiny_clone), ["out"]) == s0
    new = tiny_clone / "cmd" / "whereabouts" / "extra.go"
    new.write_text("package main\n")  # untracked, not ignored: part of the build
    s1 = gobuild.clone_stamp(str(tiny_clone), ["out"])
    assert s1["tree"] != s0["tree"]
    new.unlink()
    (tiny_clone / "go.mod").chmod(0o755)
    assert gobuild.clone_stamp(str(tiny_clone), ["out"])["tree"] not in (s0["tree"], s1["tree"])


def test_git_stamp_sees_commits_and_tags(tiny_clone):
    """Build scripts put HEAD and `git describe` in the version: both are in the stamp."""
    s0 = gobuild.clone_stamp(str(tiny_clone))
    git(tiny_clone, "commit", "-q", "--allow-empty", "-m", "empty")
    s1 = gobuild.clone_stamp(str(tiny_clone))
    assert s1["tree"] == s0["tree"] and s1["head"] != s0["head"]
    git(tiny_clone, "tag", "v0.0.2")
    s2 = gobuild.clone_stamp(str(tiny_clone))
    assert s2["tree"] == s0["tree"] and s2["head"] == s1["head"]
    assert (s0["describe"][:8], s1["describe"][:8], s2["describe"][:8]) == (
        "v0.0.1-0",
        "v0.0.1-1",
        "v0.0.2-0",
    )


def test_git_stamp_never_writes_the_clone(tiny_clone):
    (tiny_clone / "cmd" / "whereabouts" / "main.go").write_text("package main\nfunc main() {}\n")
    (tiny_clone / "new.go").write_text("package main\n")
    index = tiny_clone / ".git" / "index"
    before = (_loose_objects(tiny_clone), index.read_bytes(), git(tiny_clone, "status", "--porcelain"))
    gobuild.clone_stamp(str(tiny_clone))
    after = (_loose_objects(tiny_clone), index.read_bytes(), git(tiny_clone, "status", "--porcelain"))
    assert after == before


def test_files_stamp_outside_git(tmp_path):
    src = tmp_path / "plain"
    (src / "cmd").mkdir(parents=True)
    (src / "cmd" / "a.go").write_text("package main\n")
    (src / "bin").mkdir()
    s0 = gobuild.clone_stamp(str(src), ["bin"])
    assert s0["kind"] == "files" and s0["head"] is None
    (src / "bin" / "out").write_text("excluded")
    assert gobuild.clone_stamp(str(src), ["bin"]) == s0
    (src / "cmd" / "a.go").write_text("package main\n// changed\n")
    s1 = gobuild.clone_stamp(str(src), ["bin"])
    assert s1 != s0
    (src / "cmd" / "a.go").chmod(0o755)
    assert gobuild.clone_stamp(str(src), ["bin"]) != s1


@pytest.mark.parametrize(
    ("src", "match"),
    [
        ("", "not a directory"),
        ("relative/path", "not an absolute path"),
        ("/nonexistent/xcm-clone", "does not exist"),
    ],
)
def test_bad_src(src, match):
    with pytest.raises(gobuild.BuildError, match=match):
        gobuild.clone_stamp(src)


def test_bad_exclude(tiny_clone):
    with pytest.raises(gobuild.BuildError, match="not a path inside the clone"):
        gobuild.clone_stamp(str(tiny_clone), ["../x"])


def test_key_depends_on_recipe_arch_env():
    st = {"kind": "git", "tree": "t", "head": "h", "describe": None}
    keys = {
        gobuild.build_key(st, "go-install", "amd64", {}),
        gobuild.build_key(st, "build-go-sh", "amd64", {}),
        gobuild.build_key(st, "go-install", "arm64", {}),
        gobuild.build_key(st, "go-install", "amd64", {"GOFLAGS": "-tags=x"}),
        gobuild.build_key(dict(st, tree="u"), "go-install", "amd64", {}),
    }
    assert len(keys) == 5
    assert gobuild.build_key(st, "go-install", "amd64", {"A": "1", "B": "2"}) == gobuild.build_key(
        st, "go-install", "amd64", {"B": "2", "A": "1"}
    )


# ---------------------------------------------------------------- real builds


def _build(clone, cache, base_env, **kw):
    kw.setdefault("name", "tiny")
    kw.setdefault("recipe", "go-install")
    return gobuild.build(src=str(clone), cache=str(cache), base_env=base_env, **kw)


def test_go_install_builds_once_into_the_cache(tiny_clone, tmp_path, build_env):
    cache = tmp_path / "cache"
    r1 = _build(tiny_clone, cache, build_env, expect=["multus-proxy", "multus-service-controller"])
    assert r1["built"] is True
    assert r1["names"] == ["multus-proxy", "multus-service-controller", "whereabouts"]
    assert r1["dir"] == str(cache / "build" / "tiny" / r1["key"])
    proxy = r1["binaries"]["multus-proxy"]
    out = subprocess.run([proxy, "--help"], capture_output=True, text=True, check=True).stdout
    assert "--container-runtime-endpoint" in out
    assert not (tiny_clone / "bin").exists()  # GOBIN is ours, not the clone's nor GOPATH/bin
    mtime = os.stat(proxy).st_mtime_ns
    r2 = _build(tiny_clone, cache, build_env)
    assert r2["built"] is False and r2["dir"] == r1["dir"]
    assert os.stat(proxy).st_mtime_ns == mtime
    assert "exit status 0" in (cache / "build" / "tiny" / r1["key"] / "build.log").read_text()
    # A change of content: a new build in a new entry; the old one stays.
    (tiny_clone / "cmd" / "multus-proxy" / "main.go").write_text(
        (tiny_clone / "cmd" / "multus-proxy" / "main.go").read_text() + "\n// changed\n"
    )
    r3 = _build(tiny_clone, cache, build_env)
    assert r3["built"] is True and r3["key"] != r1["key"] and os.path.isdir(r1["dir"])
    r4 = _build(tiny_clone, cache, build_env, force=True)
    assert r4["built"] is True and r4["key"] == r3["key"]


def test_prune_keeps_the_most_recently_used(tmp_path):
    top = tmp_path / "build" / "x"
    for i, name in enumerate(["a", "b", "c", "d", "e", "f"]):
        (top / name / "bin").mkdir(parents=True)
        (top / name / "stamp.json").write_text("{}")
        os.utime(top / name / "stamp.json", (1000 + i, 1000 + i))
    (top / "failed-a.log").write_text("x")
    (top / ".tmp-zzz").mkdir()  # a build in progress is not an entry
    os.utime(top / "b" / "stamp.json", (2000, 2000))  # used recently
    gobuild.prune(str(top), keep=3)
    assert sorted(os.listdir(top)) == [".tmp-zzz", "b", "e", "f"]


def test_build_go_sh_recipe_takes_what_the_script_wrote(tiny_clone, tmp_path, build_env):
    cache = tmp_path / "cache"
    r1 = _build(
        tiny_clone, cache, build_env, name="whereabouts", recipe="build-go-sh", expect=["whereabouts"]
    )
    assert r1["built"] is True
    assert r1["names"] == ["ip-control-loop", "whereabouts"]
    assert (tiny_clone / "bin" / "whereabouts").is_file()  # the script's own output, as for a user
    out = subprocess.run(
        [r1["binaries"]["whereabouts"]],
        env={"CNI_COMMAND": "VERSION"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert '"v":"v0.0.1"' in out  # the script's version from git describe
    assert r1["version"] == "v0.0.1-0-g" + r1["stamp"]["head"][:7]
    # bin/ is the script's output: writing it does not change the stamp, so no rebuild.
    r2 = _build(tiny_clone, cache, build_env, name="whereabouts", recipe="build-go-sh")
    assert r2["built"] is False and r2["key"] == r1["key"]


def test_expect_names_what_is_missing(tiny_clone, tmp_path, build_env):
    with pytest.raises(
        gobuild.BuildError, match=r"made ip-control-loop, whereabouts; expected also ip-reconciler"
    ):
        _build(
            tiny_clone,
            tmp_path / "c",
            build_env,
            recipe="build-go-sh",
            expect=["whereabouts", "ip-reconciler"],
        )


def test_no_go_on_path_is_a_clear_error(tiny_clone, tmp_path, build_env):
    env = dict(build_env, PATH="/usr/bin:/bin")
    if gobuild.shutil.which("go", path=env["PATH"]):
        pytest.skip("a go command is in /usr/bin or /bin")
    with pytest.raises(
        gobuild.BuildError, match=r"go command 'go' was not found on the controller's PATH \(/usr/bin:/bin\)"
    ):
        _build(tiny_clone, tmp_path / "c", env)
    with pytest.raises(gobuild.BuildError, match=r"go: /nonexistent/go is not an executable file"):
        _build(tiny_clone, tmp_path / "c", env, go="/nonexistent/go")
    # A build already in the cache needs no Go.
    _build(tiny_clone, tmp_path / "c", build_env)
    assert _build(tiny_clone, tmp_path / "c", env)["built"] is False


def test_failing_build_shows_its_own_output(tiny_clone, tmp_path, build_env):
    (tiny_clone / "cmd" / "multus-proxy" / "broken.go").write_text(
        "package main\nfunc broken() { undefinedThing() }\n"
    )
    cache = tmp_path / "cache"
    with pytest.raises(gobuild.BuildError) as e:
        _build(tiny_clone, cache, build_env)
    msg = str(e.value)
    assert "the build of tiny failed in" in msg and "go install ./cmd/..." in msg
    assert "undefined: undefinedThing" in msg  # the compiler's own words
    failed = [p for p in os.listdir(cache / "build" / "tiny") if p.startswith("failed-")]
    assert len(failed) == 1
    assert not [p for p in os.listdir(cache / "build" / "tiny") if not p.startswith(("failed-", "."))]


def test_failing_script_shows_its_own_output(tiny_clone, tmp_path, build_env):
    script = tiny_clone / "hack" / "build-go.sh"
    script.write_text("#!/bin/sh\necho 'checking something'\necho 'script says: no way' >&2\nexit 7\n")
    with pytest.raises(
        gobuild.BuildError, match=r"(?s)exit status 7.*checking something\nscript says: no way"
    ):
        _build(tiny_clone, tmp_path / "c", build_env, recipe="build-go-sh")


def test_not_a_whereabouts_clone(tmp_path, build_env):
    src = make_tiny_clone(tmp_path / "c1")
    (src / "hack" / "build-go.sh").unlink()
    with pytest.raises(gobuild.BuildError, match="has no hack/build-go.sh; expected a clone of whereabouts"):
        _build(src, tmp_path / "cache", build_env, recipe="build-go-sh")


def test_concurrent_builds_build_once(tiny_clone, tmp_path, build_env):
    results = []

    def run():
        results.append(_build(tiny_clone, tmp_path / "cache", build_env))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r["built"] for r in results) == [False, False, True]
    assert len({r["dir"] for r in results}) == 1


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"recipe": "make"}, "recipe: 'make' is not known"),
        ({"name": "a/b"}, "name: 'a/b' is not a plain name"),
        ({"env": {"GOFLAGS": 1}}, "env: .*expected string names with string values"),
    ],
)
def test_bad_arguments(tiny_clone, tmp_path, build_env, kw, match):
    with pytest.raises(gobuild.BuildError, match=match):
        _build(tiny_clone, tmp_path / "c", build_env, **kw)
