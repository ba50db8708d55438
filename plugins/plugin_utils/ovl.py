# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The xcluster overlay archive: pure logic for the ovl_archive action (playbooks/ovl.yml).

An overlay ("ovl") is a tar that xcluster unpacks onto ``/`` of every VM at first boot
(``tar -C / -x``), before it runs ``/etc/init.d/*.rc``. The archive holds exactly the files
the live push installs: the roles' ``tasks/files.yml`` lists (``xcluster.multus.push_files``
items), read with the same rules as the push (``push.normalize``: a ``src`` directory stands
for every file below it, default modes 0644 / 0600 for secrets / the source file's bits).

- ``collect(host, sources, resolve)`` validates one host's lists and merges them;
- ``check_same(per_host)`` proves every host gets the same archive (one archive serves every
  VM; what differs per node must be computed at boot, by the overlay's .rc);
- ``members(files, dirs)`` gives the tar members: the directories the lists give, then the
  files, sorted, owner root (no other directory: tar makes missing ones, keeps symlinks);
- ``write(fileobj, files, dirs, mtime)`` writes them;
- ``boot_subst(text, index)`` is what the .rc does at boot to a node-dependent file (the
  placeholder rule over the file's text), so the playbook can prove it gives the live file.

Bad input raises OvlError naming the host, the value and what is expected.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import tarfile
from dataclasses import replace

from ansible_collections.xcluster.multus.plugins.plugin_utils import push
from ansible_collections.xcluster.multus.plugins.plugin_utils.nodeindex import PLACEHOLDER_RE

DIR_MODE = 0o755


class OvlError(ValueError):
    """Bad input for the overlay."""


def collect(host, sources, resolve=None):
    """Validate and merge one host's lists.

    sources: a list of {name, files, directories} (name: the role, for messages and for
    ``resolve``). resolve(name, src) gives the controller path of a relative ``src`` (a
    role's files/). Returns (files, dirs): push.FileSpec / push.DirSpec, every state present.
    """
    if not isinstance(sources, list):
        raise OvlError(
            f"{host}: sources: {sources!r} is not a list; expected a list of {{name, files, directories}}"
        )
    files, dirs, owner = [], [], {}
    for i, s in enumerate(sources):
        if not isinstance(s, dict) or not isinstance(s.get("name"), str) or not s["name"]:
            raise OvlError(
                f"{host}: sources[{i}]: {s!r} is not a source; expected {{name, files, directories}}"
            )
        name = s["name"]
        unknown = sorted(set(s) - {"name", "files", "directories"})
        if unknown:
            raise OvlError(
                f"{host}: sources[{i}] ({name}): unknown keys {unknown}; expected name, files, directories"
            )
        find = None
        if resolve is not None:

            def find(src, _name=name):
                return resolve(_name, src)

        try:
            f, d = push.normalize(f"{host} ({name})", s.get("files") or [], s.get("directories") or [], find)
        except push.PushError as e:
            raise OvlError(str(e)) from None
        for x in f:
            if x.state != "present":
                raise OvlError(
                    f"{host} ({name}): {x.dest}: state absent has no place in an overlay; "
                    "expected files to install"
                )
        for x in d:
            if x.state != "present":
                raise OvlError(
                    f"{host} ({name}): {x.path}: state absent has no place in an overlay; "
                    "expected directories to create"
                )
        for path in [x.dest for x in f] + [x.path for x in d]:
            if path in owner:
                raise OvlError(
                    f"{host}: {path} is given by both {owner[path]} and {name}; "
                    "expected each path from one role"
                )
            owner[path] = name
        files += f
        dirs += d
    return files, dirs


def signature(files, dirs):
    """What must be equal for two hosts to get the same archive (no content shown)."""
    return sorted(
        [("f", f.dest, f.mode, f.owner, f.group, f.sha256) for f in files]
        + [("d", d.path, d.mode, d.owner, d.group, None) for d in dirs]
    )


def check_same(per_host):
    """per_host: {host: (files, dirs)}, in inventory order. Raise unless all are equal."""
    hosts = list(per_host)
    if not hosts:
        raise OvlError("no host: expected the hosts the overlay is made for (at least one)")
    first = hosts[0]
    want = {s[1]: s for s in signature(*per_host[first])}
    secret = {f.dest for f in per_host[first][0] if f.secret}
    for h in hosts[1:]:
        got = {s[1]: s for s in signature(*per_host[h])}
        secret |= {f.dest for f in per_host[h][0] if f.secret}
        for path in sorted(set(want) | set(got)):
            if want.get(path) != got.get(path):
                what = (
                    "is only on " + (first if path in want else h)
                    if path not in want or path not in got
                    else "differs (" + _why(want[path], got[path], path in secret) + ")"
                )
                raise OvlError(
                    f"{path} {what} between {first} and {h}: one overlay serves every node, so "
                    "every node must get the same files; expected no per-host values (what must "
                    "differ per node is computed at boot by the overlay's .rc: the node index)"
                )


def _why(a, b, secret):
    names = ("kind", "path", "mode", "owner", "group", "content")
    out = []
    for n, x, y in zip(names, a, b):
        if x != y:
            if n == "content":
                out.append("content" if secret else f"content sha256 {x[:12]} vs {y[:12]}")
            elif n == "mode":
                out.append(f"mode {x:04o} vs {y:04o}")
            else:
                out.append(f"{n} {x} vs {y}")
    return ", ".join(out)


def _ancestors(path):
    out = []
    d = posixpath.dirname(path)
    while d not in ("/", ""):
        out.append(d)
        d = posixpath.dirname(d)
    return out


def _owner(info, owner, group):
    info.uid, info.gid, info.uname, info.gname = 0, 0, "root", "root"
    if owner is not None:
        if owner.isdigit():
            info.uid, info.uname = int(owner), ""
        else:
            info.uname = owner
    if group is not None:
        if group.isdigit():
            info.gid, info.gname = int(group), ""
        else:
            info.gname = group


def members(files, dirs):
    """[(TarInfo, FileSpec or None)]: the directories the lists give (parents before children),
    then the files, sorted, names relative to / (``etc/cni/...``) as xcluster's ovl tars have
    them. Directories on the way are not members: tar creates the missing ones (0755 under
    root's umask, as the push's ``mkdir -p``) and leaves existing ones alone, so a directory
    that is a symlink on the node (/bin -> usr/bin) stays one."""
    given = {d.path: d for d in dirs}
    for f in files:
        if f.dest in given:
            raise OvlError(f"{f.dest} is both a file and a directory; expected one of them")
    on_the_way = set(given)
    for p in [f.dest for f in files] + list(given):
        on_the_way.update(_ancestors(p))
    for f in files:
        if f.dest in on_the_way:
            raise OvlError(f"{f.dest} is a file and the directory of another path; expected one of them")
    out = []
    for path in sorted(given, key=lambda p: (p.count("/"), p)):
        d = given[path]
        info = tarfile.TarInfo(path.lstrip("/"))
        info.type = tarfile.DIRTYPE
        info.mode = d.mode if d.mode is not None else DIR_MODE
        _owner(info, d.owner, d.group)
        out.append((info, None))
    for f in sorted(files, key=lambda x: x.dest):
        info = tarfile.TarInfo(f.dest.lstrip("/"))
        info.size, info.mode = f.size, f.mode
        _owner(info, f.owner, f.group)
        out.append((info, f))
    return out


def write(fileobj, files, dirs, mtime):
    """Write the archive (uncompressed, GNU format) to a binary file object."""
    with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, f in members(files, dirs):
            info.mtime = int(mtime)
            if f is None:
                tar.addfile(info)
                continue
            if f.content is not None:
                tar.addfile(info, io.BytesIO(f.content))
            else:
                with open(f.src, "rb") as fh:
                    tar.addfile(info, fh)


def at_boot(per_host, indexes, drop=(), templates=None):
    """Take out what the .rc computes at boot, per host, and check the .rc gets it right.

    per_host: {host: (files, dirs)} from collect(); indexes: {host: node index}.
    drop: destinations left out of the archive (the .rc writes them, e.g. node-local's .index).
    templates: {dest: text}: the archive holds the text, the .rc runs boot_subst on it; for
    every host it must give that host's live content byte for byte, else OvlError.
    Returns per_host with those changes.
    """
    templates = templates or {}
    drop = set(drop)
    out = {}
    for host, (files, dirs) in per_host.items():
        new = []
        for f in files:
            if f.dest in drop:
                continue
            if f.dest in templates:
                text = templates[f.dest]
                if host not in indexes:
                    raise OvlError(f"{host}: no node index; expected one for {f.dest} (rendered at boot)")
                live = f.content if f.content is not None else _read(f.src)
                if boot_subst(text, indexes[host]).encode() != live:
                    raise OvlError(
                        f"{host}: {f.dest}: the overlay's .rc would render it at boot (node index "
                        f"{indexes[host]}) differently from the live push; expected node placeholders "
                        "only in string values where the role substitutes them"
                    )
                data = text.encode()
                sha = hashlib.sha256(data).hexdigest()
                new.append(replace(f, src=None, content=data, sha256=sha, size=len(data)))
                continue
            new.append(f)
        out[host] = (new, dirs)
    return out


def _read(path):
    with open(path, "rb") as fh:
        return fh.read()


def boot_subst(text, index):
    """The .rc's substitution at boot: every placeholder in the text gets the node index."""
    return PLACEHOLDER_RE.sub(str(index), text)
