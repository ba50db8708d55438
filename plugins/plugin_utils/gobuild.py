# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Go builds from a user's clone on the controller: pure logic for the ``go_build`` action.

- ``clone_stamp(src, exclude)``: what the clone's content is. In a git work tree, the tree
  hash git would commit right now (tracked and untracked files that are not ignored, their
  content and modes; ``exclude`` paths such as the build's own output left out), computed
  with a temporary index and a temporary object directory so the clone's ``.git`` is never
  written, plus HEAD and ``git describe`` (build scripts put them in the version). Outside a
  git work tree, a hash of every file's path, mode and content.
- ``build_key(...)``: sha256 of the stamp, the recipe, the target and the build environment:
  the cache directory's name.
- ``build(...)``: if ``<cache>/build/<name>/<key>/`` exists, nothing is built. Otherwise, under
  a lock, runs the recipe (``hack/build-go.sh`` in the clone, or ``go install ./cmd/...``
  with GOBIN in a directory of ours), copies the binaries into a temporary directory beside
  the final one with ``build.log`` and ``stamp.json``, and renames it into place.

Every failure raises BuildError naming the value and what is expected; a failed build's
message carries the build's own output (its last lines; the whole log is kept on disk).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
import time

from ansible_collections.xcluster.multus.plugins.plugin_utils.artifacts import cache_root, locked

RECIPES = ("build-go-sh", "go-install")
OUTPUT_TAIL_LINES = 80
KEEP = 4  # cache entries kept per name, the most recently used (a whereabouts build is ~190 MB)


class BuildError(Exception):
    """Bad input, no Go, or a failed build (the message says which)."""


# ---------------------------------------------------------------- the clone's stamp


def _git(src, *args, env=None):
    """Run git in src; (rc, stdout stripped, stderr)."""
    p = subprocess.run(
        ["git", "-C", src, *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    return p.returncode, p.stdout.strip(), p.stderr.strip()


def _is_git_worktree(src):
    if shutil.which("git") is None:
        return False
    rc, out, _err = _git(src, "rev-parse", "--is-inside-work-tree")
    return rc == 0 and out == "true"


def _git_stamp(src, exclude):
    """Tree hash of the work tree as `git add -A` would stage it, HEAD and describe."""
    rc, git_dir, err = _git(src, "rev-parse", "--absolute-git-dir")
    if rc != 0:
        raise BuildError(f"src: {src}: git rev-parse failed: {err}")
    rc, objects, err = _git(src, "rev-parse", "--git-path", "objects")
    objects = objects if os.path.isabs(objects) else os.path.join(src, objects)
    with tempfile.TemporaryDirectory(prefix="xcm-stamp-") as tmp:
        index = os.path.join(tmp, "index")
        os.mkdir(os.path.join(tmp, "objects"))
        with contextlib.suppress(FileNotFoundError):
            shutil.copyfile(os.path.join(git_dir, "index"), index)  # its stat cache: fast
        env = dict(os.environ)
        env.update(
            GIT_INDEX_FILE=index,
            GIT_OBJECT_DIRECTORY=os.path.join(tmp, "objects"),  # new blobs go here, not the clone
            GIT_ALTERNATE_OBJECT_DIRECTORIES=os.path.realpath(objects),
        )
        rc, _out, err = _git(src, "add", "-A", "--", ".", env=env)
        if rc == 0 and exclude:  # out of the temporary index (a pathspec fails on ignored paths)
            rc, _out, err = _git(
                src, "rm", "-r", "-q", "--cached", "--ignore-unmatch", "--", *exclude, env=env
            )
        if rc != 0:
            raise BuildError(f"src: {src}: cannot hash the work tree (git add): {err}")
        rc, tree, err = _git(src, "write-tree", env=env)
        if rc != 0:
            raise BuildError(f"src: {src}: cannot hash the work tree (git write-tree): {err}")
    _rc, head, _err = _git(src, "rev-parse", "--verify", "-q", "HEAD")
    _rc, describe, _err = _git(src, "describe", "--tags", "--always", "--long")
    return {"kind": "git", "tree": tree, "head": head or None, "describe": describe or None}


def _files_stamp(src, exclude):
    """sha256 over every file's relative path, kind, exec bit and content (no git)."""
    h = hashlib.sha256()
    skip = {os.path.normpath(e) for e in exclude} | {".git"}
    for dirpath, dirs, files in os.walk(src):
        rel_dir = os.path.relpath(dirpath, src)
        dirs[:] = sorted(d for d in dirs if os.path.normpath(os.path.join(rel_dir, d)) not in skip)
        for name in sorted(files):
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if rel in skip:
                continue
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                h.update(f"L {rel}\0{os.readlink(path)}\0".encode())
            elif stat.S_ISREG(st.st_mode):
                h.update(f"F {rel}\0{int(bool(st.st_mode & 0o111))}\0".encode())
                with open(path, "rb") as f:
                    for block in iter(lambda f=f: f.read(1 << 20), b""):
                        h.update(block)
                h.update(b"\0")
    return {"kind": "files", "tree": h.hexdigest(), "head": None, "describe": None}


def check_src(src):
    if not isinstance(src, str) or not src:
        raise BuildError(f"src: {src!r} is not a directory; expected the path of your clone")
    if not os.path.isabs(src):
        raise BuildError(f"src: {src!r} is not an absolute path; expected the path of your clone")
    if not os.path.isdir(src):
        raise BuildError(f"src: {src} does not exist or is not a directory; expected the path of your clone")
    return os.path.realpath(src)


def clone_stamp(src, exclude=()):
    """What the clone's content is right now (see the module doc)."""
    src = check_src(src)
    for e in exclude:
        if not isinstance(e, str) or not e or os.path.isabs(e) or ".." in e.split("/"):
            raise BuildError(f"exclude: {e!r} is not a path inside the clone")
    return _git_stamp(src, exclude) if _is_git_worktree(src) else _files_stamp(src, exclude)


def build_key(stamp, recipe, arch, env):
    """The cache directory name: sha256 of what decides the build's output."""
    doc = {"stamp": stamp, "recipe": recipe, "arch": arch, "env": dict(sorted(env.items()))}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


# ---------------------------------------------------------------- the go command


def find_go(go, path):
    """Absolute path of the go command (a name searched in path, or a path)."""
    if not isinstance(go, str) or not go:
        raise BuildError(f"go: {go!r} is not a command; expected 'go' or the path of the go binary")
    if "/" in go:
        if os.path.isfile(go) and os.access(go, os.X_OK):
            return os.path.abspath(go)
        raise BuildError(f"go: {go} is not an executable file; expected the path of the go binary")
    found = shutil.which(go, path=path)
    if found is None:
        raise BuildError(
            f"go: the go command {go!r} was not found on the controller's PATH ({path}); "
            "the build needs Go: install it (https://go.dev/doc/install) or give the path of the go binary"
        )
    return found


# ---------------------------------------------------------------- building


def _recipe_argv(recipe, src, go, gobin):
    if recipe == "build-go-sh":
        script = os.path.join(src, "hack", "build-go.sh")
        if not os.path.isfile(script):
            raise BuildError(
                f"src: {src} has no hack/build-go.sh; expected a clone of whereabouts "
                "(git clone https://github.com/k8snetworkplumbingwg/whereabouts.git)"
            )
        return ["bash", script] if not os.access(script, os.X_OK) else [script]
    if not os.path.isdir(os.path.join(src, "cmd")):
        raise BuildError(f"src: {src} has no cmd/ directory; expected a Go project with commands in ./cmd/")
    return [go, "install", "./cmd/..."]


def _tail(text, n=OUTPUT_TAIL_LINES):
    lines = text.rstrip("\n").splitlines()
    if len(lines) <= n:
        return "\n".join(lines)
    return "\n".join([f"... ({len(lines) - n} earlier lines in the log)", *lines[-n:]])


def _collect(directory, since=None):
    """{name: path} of the executable regular files in directory (modified at or after since)."""
    out = {}
    with contextlib.suppress(FileNotFoundError):
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111 and (since is None or st.st_mtime >= since):
                out[entry.name] = entry.path
    return out


def _result(final, built, seconds):
    with open(os.path.join(final, "stamp.json"), encoding="utf-8") as f:
        info = json.load(f)
    bins = _collect(os.path.join(final, "bin"))
    return {
        "built": built,
        "dir": final,
        "key": os.path.basename(final),
        "stamp": info["stamp"],
        "binaries": bins,
        "names": sorted(bins),
        "log": os.path.join(final, "build.log"),
        "seconds": seconds if built else info.get("seconds"),
        "version": info["stamp"].get("describe"),
    }


def build(
    *,
    name,
    src,
    recipe,
    go="go",
    arch="amd64",
    env=None,
    exclude=(),
    expect=(),
    force=False,
    cache=None,
    base_env=None,
):
    """Build once per clone content; see the module doc. Returns the result mapping."""
    if recipe not in RECIPES:
        raise BuildError(f"recipe: {recipe!r} is not known; expected one of {', '.join(RECIPES)}")
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
        raise BuildError(f"name: {name!r} is not a plain name; expected e.g. whereabouts")
    env = dict(env or {})
    bad = [k for k, v in env.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise BuildError(f"env: {bad!r}: expected string names with string values")
    src = check_src(src)
    base_env = dict(os.environ if base_env is None else base_env)
    cache = cache or cache_root(base_env)
    exclude = list(exclude)
    if recipe == "build-go-sh" and "bin" not in exclude:
        exclude.append("bin")  # the script's own output directory
    stamp = clone_stamp(src, exclude)
    key = build_key(stamp, recipe, arch, env)
    top = os.path.join(cache, "build", name)
    final = os.path.join(top, key)
    os.makedirs(top, exist_ok=True)
    with locked(os.path.join(top, ".lock")):
        if os.path.isdir(final) and not force:
            os.utime(os.path.join(final, "stamp.json"))  # used now: pruned last
            result = _result(final, False, None)
        else:
            result = _build_now(
                name=name,
                src=src,
                recipe=recipe,
                go=go,
                arch=arch,
                env=env,
                stamp=stamp,
                top=top,
                final=final,
                base_env=base_env,
            )
        prune(top, keep=KEEP)
    missing = [e for e in expect if e not in result["binaries"]]
    if missing:
        raise BuildError(
            f"the build of {src} made {', '.join(result['names']) or 'no binaries'}; "
            f"expected also {', '.join(missing)} (not built by this version?)"
        )
    return result


def prune(top, keep=KEEP):
    """Remove all but the keep most recently used entries of top (under the caller's lock)."""
    entries = []
    for entry in os.scandir(top):
        stamp_file = os.path.join(entry.path, "stamp.json")
        if (
            entry.is_dir(follow_symlinks=False)
            and not entry.name.startswith(".")
            and os.path.isfile(stamp_file)
        ):
            entries.append((os.stat(stamp_file).st_mtime, entry.path))
    for _mtime, path in sorted(entries, reverse=True)[keep:]:
        shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(top, f"failed-{os.path.basename(path)}.log"))


def _build_now(*, name, src, recipe, go, arch, env, stamp, top, final, base_env):
    run_env = dict(base_env)
    go_path = find_go(go, run_env.get("PATH", os.defpath))
    # build-go.sh calls `go env` by name: the chosen go must come first on PATH.
    run_env["PATH"] = os.path.dirname(go_path) + os.pathsep + run_env.get("PATH", os.defpath)
    run_env.update(GO=go_path, GOOS="linux", GOARCH=arch, CGO_ENABLED="0")
    run_env.update(env)
    tmp = tempfile.mkdtemp(prefix=f".tmp-{final[-12:]}-", dir=top)
    try:
        gobin = os.path.join(tmp, "bin")
        os.makedirs(gobin)
        if recipe == "go-install":
            run_env["GOBIN"] = gobin
        argv = _recipe_argv(recipe, src, go_path, gobin)
        t0 = time.time()
        since = t0 - 1  # mtime granularity
        p = subprocess.run(
            argv,
            cwd=src,
            env=run_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            check=False,
        )
        seconds = round(time.time() - t0, 1)
        log = f"$ cd {src} && {' '.join(argv)}\n{p.stdout}\nexit status {p.returncode}, {seconds} s\n"
        if p.returncode != 0:
            failed = os.path.join(top, f"failed-{os.path.basename(final)}.log")
            with open(failed, "w", encoding="utf-8") as f:
                f.write(log)
            raise BuildError(
                f"the build of {name} failed in {src} ({' '.join(argv)}, exit status {p.returncode}); "
                f"its output (whole log: {failed}):\n{_tail(p.stdout)}"
            )
        if recipe == "build-go-sh":
            for bname, path in _collect(os.path.join(src, "bin"), since).items():
                shutil.copy2(path, os.path.join(gobin, bname))
        if not _collect(gobin):
            raise BuildError(
                f"the build of {name} in {src} succeeded but made no binaries; its output:\n{_tail(log)}"
            )
        with open(os.path.join(tmp, "build.log"), "w", encoding="utf-8") as f:
            f.write(log)
        info = {"name": name, "src": src, "recipe": recipe, "arch": arch, "env": env, "stamp": stamp}
        info.update(go=go_path, seconds=seconds, finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        with open(os.path.join(tmp, "stamp.json"), "w", encoding="utf-8") as f:
            json.dump(info, f, indent=1, sort_keys=True)
        os.chmod(tmp, 0o755)
        if os.path.isdir(final):  # force: replace the old build
            shutil.rmtree(final)
        os.rename(tmp, final)
        return _result(final, True, seconds)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
