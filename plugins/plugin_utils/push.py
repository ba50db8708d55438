# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Python-less delivery of files to a node: pure logic for the push_files action.

The action plugin talks to the node; everything it decides is decided here, with no
Ansible runtime, so that it can be unit-tested directly:

- ``normalize(host, files, directories, ...)`` validates the task's input and gives
  ``FileSpec``/``DirSpec`` items with the desired sha256, mode and owner.
- ``state_command(...)`` is ONE POSIX sh command that reads, on the node, the kind, mode,
  owner and sha256 of every path (busybox ``stat``, ``sha256sum``; sh builtins otherwise),
  and lists temporary leftovers of earlier interrupted runs; ``parse_state`` reads its output.
  A file whose stat still matches the record the last push left for it is not hashed (the
  record rule, below).
- ``plan(...)`` compares and says what to transfer, what only needs mode/owner, what to
  remove, which directories to create or fix, and which leftovers to clean.
- ``finalize_command(...)`` is ONE command that unpacks what was uploaded into a temporary
  directory beside each destination (same filesystem), sets mode/owner there, then renames
  every file into place with ``mv -f`` (never a half-written file under a final name),
  removes what is absent, and always cleans its temporary files (trap on EXIT).
- ``report(...)`` and ``diff(...)`` give the task result; secret items never show content
  or checksums. With ``--diff``, text files (UTF-8, no NUL, at most Ansible's
  MAX_FILE_SIZE_FOR_DIFF) show a unified diff of their content, as ``copy``/``template`` do:
  ``diff_texts`` says which, ``fetch_command``/``parse_fetch`` read the node's old content in
  one command; binaries show size and sha256.
- ``upload_failure(...)`` says why an upload failed (timeout, connection closed, disk full)
  and what became of the partial upload (removed at once, or left for the next run).

The record rule (what lets a rerun skip hashing what it installed): after a push, the node
keeps one small record per installed file in ``state_dir`` (default STATE_DIR, mode 0700):
``<sha256> <ctime>|<size> <inode> <device> <mtime>|<path>`` as the node's ``stat`` printed it
right after the install (times with nanoseconds). The next read hashes a file only when its
stat line differs from the record; otherwise the record's sha256 is the file's. Any write to a
file, and any change of its mode, owner or links, sets its ctime to the current time, and
nothing but setting the clock back gives an older one; so a file changed in place, even with
its size and mtime restored, no longer matches and is hashed. A record is written only once
the clock (the filesystem's own timestamp, read back from a marker written in the same
directory) has moved past the file's ctime, so a write in the same timestamp tick as the
install cannot go unseen. Secret files get no record (always hashed: their checksum is
written nowhere). A file found right by hashing but without a matching record (installed by
an overlay, touched, copied back) gets its record in one more command, reported as no
change. A missing or unwritable ``state_dir`` only costs hashing. Not seen: a write that
lands between push_files' own rename of the file and its stat a few milliseconds later, and
a change that also restores ctime (the clock set back, on purpose).

Bad input raises PushError naming the host, the value and what is expected.
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import re
import shlex
import stat
import tarfile
import time
from dataclasses import dataclass, field

from ansible_collections.xcluster.multus.plugins.plugin_utils.artifacts import locked, sha256_file

TMP_PREFIX = ".xcm-tmp."  # temporary directories (and clock markers) beside destinations
UPLOAD_PREFIX = ".xcm-up."  # uploads in upload_dir: .xcm-up.<login user>.<token>[.tar]
OK_MARK = "::xcm-ok::"
SEP = "::xcm::"
STATE_DIR = "/var/lib/xcluster-multus/push"  # the node's records of what was installed
# One stat line per path: attrs|ctime|size inode device mtime|path. The part after the first
# '|' is what a record holds (after the sha256); busybox and GNU stat print %y/%z alike, with
# nanoseconds where the filesystem keeps them.
STAT_FMT = "%a %u %g %U %G|%z|%s %i %d %y|%n"

_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_MODE_RE = re.compile(r"^0?[0-7]{3,4}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$")
_FILE_KEYS = {"src", "content", "dest", "mode", "owner", "group", "secret", "state"}
_DIR_KEYS = {"path", "mode", "owner", "group", "state"}


class PushError(ValueError):
    """Bad input or an unexpected answer from the node."""


@dataclass(frozen=True)
class FileSpec:
    """One file wanted on (state present) or removed from (state absent) the node."""

    dest: str
    state: str = "present"
    src: str | None = None  # controller path of the content (None: content or absent)
    content: bytes | None = field(default=None, repr=False)
    mode: int | None = None
    owner: str | None = None
    group: str | None = None
    secret: bool = False
    sha256: str | None = None
    size: int = 0

    def __repr__(self):  # never show content, even in a traceback
        return f"FileSpec(dest={self.dest!r}, state={self.state!r}, secret={self.secret})"


@dataclass(frozen=True)
class DirSpec:
    path: str
    state: str = "present"
    mode: int | None = None
    owner: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class NodeEntry:
    """What the node has at a path. kind: file, missing, directory, link, other."""

    kind: str
    mode: int | None = None
    uid: str | None = None
    gid: str | None = None
    user: str | None = None
    group: str | None = None
    sha256: str | None = None
    ident: str | None = None  # ctime|size inode device mtime|path (files), what a record holds
    hashed: bool = False  # sha256 from hashing (False: from a matching record, or no file)


@dataclass
class Plan:
    transfer: list = field(default_factory=list)  # FileSpec: content differs or missing
    attrs: list = field(default_factory=list)  # FileSpec: only mode/owner differ
    remove: list = field(default_factory=list)  # FileSpec state absent, present on node
    mkdirs: list = field(default_factory=list)  # DirSpec missing on the node
    dir_attrs: list = field(default_factory=list)  # DirSpec existing, mode/owner differ
    rmdirs: list = field(default_factory=list)  # DirSpec state absent, present on node
    cleanup: list = field(default_factory=list)  # leftovers of interrupted runs
    record: list = field(default_factory=list)  # FileSpec: right, but its record is missing/stale
    before: dict = field(default_factory=dict)  # path -> NodeEntry

    @property
    def changed(self):
        return bool(
            self.transfer or self.attrs or self.remove or self.mkdirs or self.dir_attrs or self.rmdirs
        ) or bool(self.cleanup)


# ---------------------------------------------------------------- input


def _err(host, where, value, expected):
    return PushError(f"{host}: {where}: {value!r} {expected}")


def parse_mode(host, where, value):
    """'0755' / '755' / '04755' -> int. Ints are refused (YAML 0755 vs 755 ambiguity)."""
    if isinstance(value, str) and _MODE_RE.match(value):
        return int(value, 8)
    raise _err(host, where, value, "is not a mode; expected a quoted octal string such as '0755'")


def is_plain_abs(value):
    """An absolute path without newline or NUL, not the root directory."""
    return (
        isinstance(value, str)
        and value.startswith("/")
        and "\n" not in value
        and "\0" not in value
        and posixpath.normpath(value) not in ("/", "//")
    )


def _check_abs(host, where, value):
    if not isinstance(value, str) or not value.startswith("/"):
        raise _err(host, where, value, "is not an absolute path; expected a path starting with '/'")
    if "\n" in value or "\0" in value:
        raise _err(host, where, value, "contains a newline or NUL; expected a plain path")
    norm = posixpath.normpath(value)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    if norm == "/":
        raise _err(host, where, value, "is the root directory; expected a path below '/'")
    if posixpath.basename(norm).startswith((TMP_PREFIX, UPLOAD_PREFIX)):
        raise _err(host, where, value, f"uses a reserved name; names starting with {TMP_PREFIX!r} are ours")
    return norm


def _check_name(host, where, value):
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and _NAME_RE.match(value):
        return value
    raise _err(host, where, value, "is not a user/group; expected a name or a numeric id")


def _check_bool(host, where, value):
    if isinstance(value, bool):
        return value
    raise _err(host, where, value, "is not a boolean; expected true or false")


def _check_state(host, where, value):
    if value in ("present", "absent"):
        return value
    raise _err(host, where, value, "is not a state; expected 'present' or 'absent'")


def _source_files(host, where, src):
    """A source: one file, or every regular file below a directory (sorted, links followed)."""
    if os.path.isfile(src):
        return [("", src)]
    if os.path.isdir(src):
        out = []
        for root, dirs, files in os.walk(src, followlinks=True):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                if os.path.isfile(full):
                    out.append((os.path.relpath(full, src), full))
        if not out:
            raise _err(host, where, src, "is an empty directory; expected files to push")
        return sorted(out)
    raise _err(host, where, src, "does not exist on the controller; expected a file or a directory")


def normalize(host, files, directories=None, find_source=None, cache_dir=None):
    """Validate the task input; return (list[FileSpec], list[DirSpec]).

    files: list of dicts {src | content, dest, mode, owner, group, secret, state}.
    A src that is a directory stands for every regular file below it, under dest.
    mode, when omitted: the source file's permission bits; 0644 for content (0600 if secret).
    find_source(path) resolves a relative src (the action plugin looks in the role's files/).
    cache_dir: where checksums of src files are shared between hosts (see sha256_file).
    """
    if not isinstance(files, list):
        raise _err(host, "files", files, "is not a list; expected a list of {src|content, dest, mode}")
    directories = directories or []
    if not isinstance(directories, list):
        raise _err(
            host, "directories", directories, "is not a list; expected a list of paths or {path, mode}"
        )
    out = []
    for i, item in enumerate(files):
        where = f"files[{i}]"
        if not isinstance(item, dict):
            raise _err(host, where, item, "is not a mapping; expected {src|content, dest, mode}")
        unknown = sorted(set(item) - _FILE_KEYS)
        if unknown:
            raise _err(host, where, unknown, f"are unknown keys; expected some of {sorted(_FILE_KEYS)}")
        if "dest" not in item:
            raise PushError(f"{host}: {where}: no dest; every file needs an absolute dest")
        state = _check_state(host, f"{where}.state", item.get("state", "present"))
        secret = _check_bool(host, f"{where}.secret", item.get("secret", False))
        owner = _check_name(host, f"{where}.owner", item.get("owner"))
        group = _check_name(host, f"{where}.group", item.get("group"))
        mode = item.get("mode")
        mode = None if mode is None else parse_mode(host, f"{where}.mode", mode)
        has_src, has_content = item.get("src") is not None, item.get("content") is not None
        dest_raw = item["dest"]
        if state == "absent":
            if has_src or has_content:
                raise PushError(f"{host}: {where}: state absent takes no src or content (dest {dest_raw!r})")
            out.append(FileSpec(dest=_check_abs(host, f"{where}.dest", dest_raw), state="absent"))
            continue
        if has_src == has_content:
            raise PushError(f"{host}: {where}: needs exactly one of src or content (dest {dest_raw!r})")
        if has_content:
            content = item["content"]
            if not isinstance(content, (str, bytes)):
                # never echo the value: it may be secret
                raise PushError(f"{host}: {where}.content: is a {type(content).__name__}; expected a string")
            data = content.encode() if isinstance(content, str) else content
            if mode is None:
                mode = 0o600 if secret else 0o644
            dest = _check_abs(host, f"{where}.dest", dest_raw)
            out.append(
                FileSpec(
                    dest=dest,
                    content=data,
                    mode=mode,
                    owner=owner,
                    group=group,
                    secret=secret,
                    sha256=hashlib.sha256(data).hexdigest(),
                    size=len(data),
                )
            )
            continue
        src = item["src"]
        if not isinstance(src, str) or not src:
            raise _err(host, f"{where}.src", src, "is not a path; expected a controller path")
        if find_source is not None and not os.path.isabs(src):
            try:
                src = find_source(src)
            except PushError as e:
                raise PushError(f"{host}: {where}.src: {e}") from None
        for rel, path in _source_files(host, f"{where}.src", src):
            dest = dest_raw if not rel else posixpath.join(dest_raw, rel.replace(os.sep, "/"))
            st = os.stat(path)
            out.append(
                FileSpec(
                    dest=_check_abs(host, f"{where}.dest", dest),
                    src=path,
                    mode=mode if mode is not None else stat.S_IMODE(st.st_mode),
                    owner=owner,
                    group=group,
                    secret=secret,
                    sha256=sha256_file(path, cache_dir),
                    size=st.st_size,
                )
            )
    seen = {}
    for f in out:
        if f.dest in seen:
            raise _err(host, "files", f.dest, "is a dest given twice; expected each dest once")
        seen[f.dest] = f
    dirs = []
    for i, item in enumerate(directories):
        where = f"directories[{i}]"
        if isinstance(item, str):
            item = {"path": item}  # noqa: PLW2901 - a plain path is short for {path}
        if not isinstance(item, dict) or "path" not in item:
            raise _err(host, where, item, "is not a directory; expected a path or {path, mode, owner, group}")
        unknown = sorted(set(item) - _DIR_KEYS)
        if unknown:
            raise _err(host, where, unknown, f"are unknown keys; expected some of {sorted(_DIR_KEYS)}")
        mode = item.get("mode")
        d = DirSpec(
            path=_check_abs(host, f"{where}.path", item["path"]),
            state=_check_state(host, f"{where}.state", item.get("state", "present")),
            mode=None if mode is None else parse_mode(host, f"{where}.mode", mode),
            owner=_check_name(host, f"{where}.owner", item.get("owner")),
            group=_check_name(host, f"{where}.group", item.get("group")),
        )
        if d.path in seen or any(x.path == d.path for x in dirs):
            raise _err(host, where, d.path, "is given twice (as a file or directory); expected it once")
        dirs.append(d)
    return out, dirs


# ---------------------------------------------------------------- reading the node

q = shlex.quote


def leftover_globs(files, dirs, upload_dir, login_user):
    """Where interrupted runs may have left temporaries (shell glob patterns, quoted)."""
    parents = sorted(
        {posixpath.dirname(f.dest) for f in files} | {d.path for d in dirs if d.state == "present"}
    )
    globs = [q(p.rstrip("/") + "/" + TMP_PREFIX) + "*" for p in parents]
    globs.append(q(f"{upload_dir.rstrip('/')}/{UPLOAD_PREFIX}{login_user}.") + "*")
    return globs


def record_path(state_dir, dest):
    """Where the node keeps dest's record: state_dir mirrors the destinations' tree."""
    return state_dir.rstrip("/") + dest


COMMAND_LIMIT = 8000  # bytes; a node's ssh server limits a command's length (dropbear: 9000)


def read_first(first, state_cmd, mark):
    """ONE command for two reads of the same round trip: ``first`` (another read-only command,
    role_install's prechecks and probes), a line ``mark``, then state_command's. None when
    together they pass COMMAND_LIMIT (then each is its own round trip)."""
    cmd = f"{{ {first}\n}}; echo; echo {q(mark)}\n{state_cmd}"  # mark on a line of its own
    return cmd if len(cmd.encode()) <= COMMAND_LIMIT else None


def split_first(host, out, mark):
    """read_first's output -> (the first command's output, the state read's output). A node's
    ssh server with a tty ends lines with \\r\\n."""
    parts = re.split(r"\r?\n" + re.escape(mark) + r"\r?\n", out or "", maxsplit=1)
    if len(parts) != 2:
        raise PushError(f"{host}: the node's answer to the read has no line {mark!r}; expected one")
    return parts[0] + "\n", parts[1]


def state_command(files, dirs, globs, state_dir=None):
    """ONE sh command: kinds, stat, sha256 of every path, then leftovers. Changes nothing.

    A file is hashed unless its stat line matches its record in state_dir (the record rule,
    module doc); with no state_dir every file is. Per file only sh builtins run (read, [ ],
    case); stat and sha256sum run once each. The command stays small (a node's ssh server
    limits its length: dropbear's is 9000 bytes): per file, only its path."""
    paths = " ".join([q(f.dest) for f in files] + [q(d.path) for d in dirs])
    present = [f for f in files if f.state == "present"]
    lines = [
        "set --",
        f"for p in {paths}; do",
        '  if [ -L "$p" ]; then echo L; elif [ -f "$p" ]; then echo F; set -- "$@" "$p";',
        '  elif [ -d "$p" ]; then echo D; set -- "$@" "$p"; elif [ -e "$p" ]; then echo O; else echo M; fi',
        "done",
        f"echo {SEP}",
        "S=",
        f'[ $# -eq 0 ] || S=$(stat -c "{STAT_FMT}" "$@")',
        '[ -z "$S" ] || printf "%s\\n" "$S"',
        f"echo {SEP}",
    ]
    if present:
        # one line per present regular file, in stat's order: "R <sha256>" (its record matches)
        # or "H" (hashed below)
        skip = [f.dest for f in files if f.state == "absent"]
        secret = [f.dest for f in present if f.secret]
        lines += [
            f"R={q(state_dir.rstrip('/'))}" if state_dir else "R=",
            "set --",
            "while IFS= read -r l; do",
            "  r=${l#*|}; p=${r#*|}; p=${p#*|}",
            '  [ -n "$l" ] && [ ! -d "$p" ] || continue',
        ]
        if skip:
            lines.append(f"  case $p in {'|'.join(q(x) for x in skip)}) continue ;; esac")
        lines.append("  c=")
        if state_dir:
            guard = f"case $p in {'|'.join(q(x) for x in secret)}) ;; *) " if secret else ""
            lines.append(
                f'  {guard}[ ! -f "$R$p" ] || IFS= read -r c <"$R$p" || :{" ;; esac" if secret else ""}'
            )
        lines += [
            '  if [ -n "$c" ] && [ "${c#* }" = "$r" ]; then echo "R ${c%% *}";',
            '  else echo H; set -- "$@" "$p"; fi',
            "done <<XCM_EOF",
            "$S",
            "XCM_EOF",
            f"echo {SEP}",
            '[ $# -eq 0 ] || sha256sum "$@"',
        ]
    else:
        lines.append(f"echo {SEP}")
    lines += [
        f"echo {SEP}",
        f'for p in {" ".join(globs)}; do if [ -e "$p" ] || [ -L "$p" ]; then echo "$p"; fi; done',
        f"echo {OK_MARK}",
    ]
    return "\n".join(lines)


def parse_state(host, output, files, dirs):
    """Output of state_command -> ({path: NodeEntry}, [leftover paths])."""
    text = output.replace("\r\n", "\n")
    if OK_MARK not in text:
        raise PushError(f"{host}: reading the node's files failed; output was {text[-500:]!r}")
    parts = text.split(OK_MARK)[0].split(SEP + "\n")
    if len(parts) != 5:
        raise PushError(f"{host}: unexpected answer when reading the node's files: {text[-500:]!r}")
    kinds = parts[0].split()
    stats = [ln.split("|", 3) for ln in parts[1].splitlines() if ln.strip()]
    verdicts = [ln.split() for ln in parts[2].splitlines() if ln.strip()]
    sums = [ln.lstrip("\\").split()[0] for ln in parts[3].splitlines() if ln.strip()]
    leftovers = [ln for ln in parts[4].splitlines() if ln.strip()]
    paths = [f.dest for f in files] + [d.path for d in dirs]
    names = {"L": "link", "F": "file", "D": "directory", "O": "other", "M": "missing"}
    if len(kinds) != len(paths) or any(k not in names for k in kinds):
        raise PushError(f"{host}: unexpected kinds from the node: {kinds!r} for {len(paths)} paths")
    n_stat = sum(k in "FD" for k in kinds)
    present_files = [f for f, k in zip(files, kinds) if f.state == "present" and k == "F"]
    if (
        len(stats) != n_stat
        or any(len(s) != 4 or len(s[0].split()) != 5 for s in stats)
        or len(verdicts) != len(present_files)
        or any(v != ["H"] and not (len(v) == 2 and v[0] == "R" and _SHA_RE.match(v[1])) for v in verdicts)
        or len(sums) != sum(v == ["H"] for v in verdicts)
    ):
        raise PushError(
            f"{host}: the node's stat/sha256sum answer does not match its file list "
            f"(a file changed while being read?): {text[-500:]!r}"
        )
    it_stat, it_sum = iter(stats), iter(sums)
    sum_of = {}
    for f, v in zip(present_files, verdicts):
        sum_of[f.dest] = (next(it_sum), True) if v == ["H"] else (v[1], False)
    state = {}
    for p, k in zip(paths, kinds):
        kind = names[k]
        if k in "FD":
            attrs, ctime, ident, path = next(it_stat)
            mode, uid, gid, user, group = attrs.split()
            sha, hashed = sum_of.get(p, (None, False))
            state[p] = NodeEntry(
                kind, int(mode, 8), uid, gid, user, group, sha, f"{ctime}|{ident}|{path}", hashed
            )
        else:
            state[p] = NodeEntry(kind)
    return state, leftovers


# ---------------------------------------------------------------- comparing


def _owner_differs(want, uid, name):
    if want is None:
        return False
    return want != (uid if want.isdigit() else name)


def attrs_differ(spec, entry):
    return (
        (spec.mode is not None and spec.mode != entry.mode)
        or _owner_differs(spec.owner, entry.uid, entry.user)
        or _owner_differs(spec.group, entry.gid, entry.group)
    )


def plan(host, files, dirs, state, leftovers=(), *, records=True):
    """What to do. records: the node keeps records (state_dir set): a file found right by
    hashing gets its record (p.record), unless it is secret."""
    p = Plan(before=dict(state), cleanup=list(leftovers))
    for f in files:
        e = state[f.dest]
        if f.state == "absent":
            if e.kind == "directory":
                raise _err(host, "dest", f.dest, "is a directory on the node; expected a file to remove")
            if e.kind != "missing":
                p.remove.append(f)
            continue
        if e.kind == "directory":
            raise _err(host, "dest", f.dest, "is a directory on the node; expected a file or nothing there")
        if e.kind != "file" or e.sha256 != f.sha256:
            p.transfer.append(f)
        elif attrs_differ(f, e):
            p.attrs.append(f)
        elif records and e.hashed and not f.secret:
            p.record.append(f)
    for d in dirs:
        e = state[d.path]
        if d.state == "absent":
            if e.kind != "missing":
                p.rmdirs.append(d)
            continue
        if e.kind == "missing":
            p.mkdirs.append(d)
        elif e.kind != "directory":
            raise _err(host, "directories", d.path, f"is a {e.kind} on the node; expected a directory")
        elif attrs_differ(d, e):
            p.dir_attrs.append(d)
    return p


# ---------------------------------------------------------------- transferring


def member_name(index):
    return f"m{index}"


SPLIT_MIN = 1 << 20  # bytes of controller files from which a push packs them in a tar of their own


def tar_parts(transfer):
    """How one push packs its transfer: a tuple of member indexes per tar, in upload order.
    The files from the controller (binaries, the same on every host) go in a tar of their own
    when they are at least SPLIT_MIN bytes and content rendered per host (configs, an index)
    is sent too: that tar is the same for every host of the run and packed once (shared_tar);
    the rendered content and the records ride in a small second tar. Otherwise one tar."""
    files = tuple(i for i, f in enumerate(transfer) if f.content is None)
    rest = tuple(i for i, f in enumerate(transfer) if f.content is not None)
    if rest and files and sum(transfer[i].size for i in files) >= SPLIT_MIN:
        return [files, rest]
    return [tuple(range(len(transfer)))]


def shared_tar(cache_dir, items, compress=False, extra=(), indexes=None):
    """The tar of these items, built once per run and shared by every host that needs the
    same files (named by their checksums): with many nodes, the controller packs it once.
    extra: more (member name, bytes) (record_members); indexes: the member index of each item
    (default 0, 1, ...). Returns (path, size). Ansible removes its local temp dir at the end of
    the run."""
    indexes = list(range(len(items))) if indexes is None else list(indexes)
    key = "|".join(f"{i}={f.sha256}:{f.size}" for i, f in zip(indexes, items)) + f"|gz={compress}"
    key += "".join(f"|{name}:{hashlib.sha256(data).hexdigest()}" for name, data in extra)
    path = os.path.join(cache_dir, f"xcm-push-{hashlib.sha256(key.encode()).hexdigest()[:32]}.tar")
    if not os.path.exists(path):
        with locked(path + ".lock"):  # one fork packs it, the others wait for it
            if not os.path.exists(path):
                tmp = f"{path}.{os.getpid()}.tmp"
                write_tar(tmp, items, compress, extra, indexes)
                os.replace(tmp, path)
    return path, os.path.getsize(path)


def write_tar(path, items, compress=False, extra=(), indexes=None):
    """Pack the items to transfer as members m<index> (indexes: default 0, 1, ...) and the extra
    (name, bytes) members (mode 0600, owner root)."""
    indexes = list(range(len(items))) if indexes is None else list(indexes)
    kwargs = {"compresslevel": 1} if compress else {}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # sftp/scp keep this mode
    mode = "w:gz" if compress else "w"
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode=mode, **kwargs) as tar:
        for i, f in zip(indexes, items):
            info = tarfile.TarInfo(member_name(i))
            info.mode, info.uid, info.gid, info.uname, info.gname = 0o600, 0, 0, "root", "root"
            info.size, info.mtime = f.size, int(time.time())
            if f.content is not None:
                tar.addfile(info, io.BytesIO(f.content))
            else:
                with open(f.src, "rb") as fh:
                    tar.addfile(info, fh)
        for name, data in extra:
            info = tarfile.TarInfo(name)
            info.mode, info.uid, info.gid, info.uname, info.gname = 0o600, 0, 0, "root", "root"
            info.size, info.mtime = len(data), int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return os.path.getsize(path)


def _chown_arg(spec):
    if spec.owner is None and spec.group is None:
        return None
    return (spec.owner or "") + (":" + spec.group if spec.group else "")


def _set_attrs(items):
    """chown/chmod lines for (spec, path quoted for sh) pairs, one per (owner, mode) group;
    chown first (it clears set-id bits)."""
    groups = {}
    for spec, path in items:
        groups.setdefault((_chown_arg(spec), spec.mode), []).append(path)
    cmds = []
    for (own, mode), paths in groups.items():
        if own:
            cmds.append(f"chown {q(own)} {' '.join(paths)}")
        if mode is not None:
            cmds.append(f"chmod {mode:o} {' '.join(paths)}")
    return cmds


def load_sh(name):
    """A node-side shell file beside this module (shellcheck reads it: tests/lint.sh), without
    its comments and blank lines (a node's ssh server limits a command's length)."""
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), name)) as f:
        lines = f.read().splitlines()
    keep, heredoc = [], None
    for ln in lines:
        if heredoc is None and (not ln.strip() or ln.lstrip().startswith("#")):
            continue
        keep.append(ln)
        if heredoc is None and "<<XCM_EOF" in ln:
            heredoc = "XCM_EOF"
        elif ln == heredoc:
            heredoc = None
    return "\n".join(keep)


# The record step's sh function xr (push_record.sh): it reads R, SF and XT of the command.
_RECORD_FN = load_sh("push_record.sh")


def _by_dir(specs):
    """{directory: [(index, spec)]}, directories sorted: the order the finalize stages them."""
    out = {}
    for i, f in enumerate(specs):
        out.setdefault(posixpath.dirname(f.dest), []).append((i, f))
    return dict(sorted(out.items()))


def _record_lines(specs):
    return "".join(f"{f.sha256}:{posixpath.basename(f.dest)}\n" for f in specs if not f.secret)


def record_members(p, state_dir):
    """The record lines of the files the plan transfers, one tar member per directory (r0,
    r1, ... in the finalize's order), so that the finalize command need not carry them."""
    if not state_dir:
        return []
    out = []
    for n, (_d, items) in enumerate(_by_dir(p.transfer).items()):
        lines = _record_lines(f for _i, f in items)
        if lines:
            out.append((f"r{n}", lines.encode()))
    return out


def record_commands(p, state_dir, uploaded=()):
    """sh lines that write the records of what the plan leaves right on the node (the record
    rule, module doc), and drop the records of removed files. uploaded: {directory: staged
    path of its record lines} (record_members, unpacked beside the directory's files); the
    other files' lines are in the command. They never fail the command: a record not written
    only costs hashing at the next read."""
    if not state_dir:
        return []
    uploaded = dict(uploaded)
    inline = [f for f in p.transfer if posixpath.dirname(f.dest) not in uploaded] + p.attrs + p.record
    inline = [f for f in inline if not f.secret]
    if not (uploaded or inline or p.remove):
        return []
    out = ["set +e", f"R={q(state_dir.rstrip('/'))}"]  # from here on nothing fails the push
    if p.remove:
        out.append("rm -f " + " ".join(f'"$R"{q(f.dest)}' for f in p.remove))
        # the record directories on the way, deepest first, up to and with state_dir itself
        chain = set()
        for f in p.remove:
            d = posixpath.dirname(f.dest)
            while d not in ("/", ""):
                chain.add(d)
                d = posixpath.dirname(d)
        dirs = sorted(chain, key=lambda d: (-d.count("/"), d))
        out.append("rmdir " + " ".join(f'"$R"{q(d)}' for d in dirs) + ' "$R" 2>/dev/null')
    if uploaded or inline:
        parent = posixpath.dirname(state_dir.rstrip("/")) or "/"
        out += [
            "umask 022",
            f'[ -d "$R" ] || {{ mkdir -p {q(parent)} && mkdir -m 700 "$R"; }}',
            "umask 077",
            f"SF={q(STAT_FMT)}",
            _RECORD_FN,
        ]
        out += [f"xr {q(d)} <{path}" for d, path in sorted(uploaded.items())]
        for d, items in _by_dir(inline).items():
            out.append(f"xr {q(d)} <<'XCM_EOF'\n{_record_lines(f for _i, f in items)}XCM_EOF")
    return out


def finalize_command(
    p, uploads, tar_compressed=False, extra_cleanup=(), *, state_dir=None, records_in_tar=False
):
    """ONE sh command that applies the plan.

    uploads: for tars: [(remote tar path, member indexes)] one per tar (tar_parts), the records
    in the last; for single files: [(remote path, index)] one per
    transferred file. Each destination directory gets its
    own temporary directory (mktemp -d <dir>/.xcm-tmp.XXXXXX, same filesystem), files are
    staged and given their mode/owner there, then renamed into place with mv -f.
    extra_cleanup: more paths the EXIT trap removes (the private upload directory).
    state_dir: where the node keeps its records (record_commands), None for none;
    records_in_tar: the tar holds record_members(p, state_dir).
    The command stays small (dropbear limits a command to 9000 bytes): per file transferred, a
    tar member name and a "member:name" token.
    """
    lines = ["set -e", "umask 022"]
    upl = " ".join([q(u[0]) for u in uploads] + [q(x) for x in extra_cleanup])
    lines.append(f"trap {q(('cd /; rm -rf $XT ' + upl).strip())} EXIT")
    lines.append("XT=")
    if p.cleanup:
        lines.append("rm -rf " + " ".join(q(c) for c in p.cleanup))
    if p.rmdirs:
        lines.append("rm -rf " + " ".join(q(d.path) for d in p.rmdirs))
    if p.remove:
        lines.append("rm -f " + " ".join(q(f.dest) for f in p.remove))
    mk = [d.path for d in p.mkdirs]
    parents = sorted({posixpath.dirname(f.dest) for f in p.transfer} - set(mk))
    if mk or parents:
        lines.append("mkdir -p " + " ".join(q(x) for x in mk + parents))
    lines += _set_attrs([(d, q(d.path)) for d in p.mkdirs + p.dir_attrs])
    lines.append("umask 077")
    tars = [(u, set(m)) for u, m in uploads if not isinstance(m, int)]
    single = {idx: u for u, idx in uploads if isinstance(idx, int)}
    members = dict(record_members(p, state_dir)) if tars and records_in_tar else {}
    moves, uploaded = [], {}
    for n, (d, items) in enumerate(_by_dir(p.transfer).items()):
        idxs = [i for i, _f in items]
        var = f"t{n}"
        lines.append(f'{var}=$(mktemp -d {q(d.rstrip("/") + "/" + TMP_PREFIX + "XXXXXX")}); XT="$XT ${var}"')
        lines.append(f'cd "${var}"')
        if tars:
            z = "z" if tar_compressed else ""
            for k, (tar_path, inside) in enumerate(tars):
                names = [member_name(i) for i in idxs if i in inside]
                rec = [f"r{n}"] if f"r{n}" in members and k == len(tars) - 1 else []
                if names or rec:
                    lines.append(f"tar -x{z}mo -f {q(tar_path)} {' '.join(names + rec)}")
                if rec:
                    uploaded[d] = f'"${var}/r{n}"'
        else:
            # cat, not mv: the new file belongs to whoever runs this (root with become),
            # never to the login user who uploaded it.
            lines += [f"cat {q(single[i])} >{member_name(i)}" for i in idxs]
        lines += _set_attrs([(p.transfer[i], member_name(i)) for i in idxs])
        tokens = " ".join(q(f"{member_name(i)}:{posixpath.basename(p.transfer[i].dest)}") for i in idxs)
        moves += [
            f'cd "${var}"; d={q(d)}',
            f'for f in {tokens}; do mv -f "${{f%%:*}}" "$d/${{f#*:}}"; done',
        ]
    lines += moves
    lines.append("cd /")
    lines += _set_attrs([(f, q(f.dest)) for f in p.attrs])
    lines += record_commands(p, state_dir, uploaded)
    lines.append(f"echo {OK_MARK}")
    return "\n".join(lines)


# ---------------------------------------------------------------- reporting


def entry_size(entry):
    """The size of a file on the node, from its stat line (None: not a file, or unknown)."""
    if entry is None or entry.kind != "file" or not entry.ident:
        return None
    try:
        return int(entry.ident.split("|")[1].split()[0])
    except (IndexError, ValueError):
        return None


def _describe(entry, secret, size=None):
    if entry is None or entry.kind == "missing":
        return "absent\n"
    if entry.kind not in ("file", "directory"):
        return f"{entry.kind}\n"
    lines = []
    if entry.kind == "file":
        lines.append("sha256: " + ("(secret)" if secret else str(entry.sha256)))
        size = entry_size(entry) if size is None else size
        if size is not None and not secret:
            lines.append(f"size: {size}")
    else:
        lines.append("directory")
    if entry.mode is not None:
        lines.append(f"mode: {entry.mode:04o}")
    if entry.user is not None:
        lines.append(f"owner: {entry.user}")
        lines.append(f"group: {entry.group}")
    return "\n".join(lines) + "\n"


def _after(spec, before):
    """The NodeEntry the node will have after the plan (owner unmanaged: kept as it was)."""
    b = before if before is not None and before.kind in ("file", "directory") else NodeEntry("missing")
    kind = "directory" if isinstance(spec, DirSpec) else "file"
    return NodeEntry(
        kind,
        mode=spec.mode if spec.mode is not None else b.mode,
        user=spec.owner if spec.owner is not None else b.user,
        group=spec.group if spec.group is not None else b.group,
        sha256=getattr(spec, "sha256", None),
    )


def _attrs(entry):
    lines = [f"mode: {entry.mode:04o}"] if entry.mode is not None else []
    if entry.user is not None:
        lines += [f"owner: {entry.user}", f"group: {entry.group}"]
    return "\n".join(lines) + "\n"


def _entry(path, before, after):
    return {"before_header": path, "after_header": path, "before": before, "after": after}


def as_text(data):
    """data (bytes or str) as text when it is text (UTF-8, no NUL), else None (a binary)."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if "\0" in data or any("\udc80" <= c <= "\udcff" for c in data):  # NUL, undecodable bytes
        return None
    return data


def _read_head(path, n):
    with open(path, "rb") as f:
        return f.read(n)


def diff_texts(p, max_size, read=_read_head):
    """Which transferred files get a content diff: ({dest: new text}, [dests whose old content
    the node must send]). Only files that are not secret, whose new content is text of at most
    max_size bytes, and whose old content (if any) is at most max_size bytes; the old content
    may still turn out binary (parse_fetch)."""
    after, fetch = {}, []
    for f in p.transfer:
        if f.secret or f.size > max_size:
            continue
        text = as_text(f.content if f.content is not None else read(f.src, max_size + 1))
        if text is None:
            continue
        e = p.before.get(f.dest)
        if e is not None and e.kind == "file":
            size = entry_size(e)
            if size is None or size > max_size:
                continue
            fetch.append(f.dest)
        elif e is not None and e.kind != "missing":
            continue
        after[f.dest] = text
    return after, fetch


def fetch_command(paths, token):
    """ONE sh command that prints the content of each path between lines of the token (a
    random string of the run's, so no content can fake one). Changes nothing."""
    lines = [f"for p in {' '.join(q(x) for x in paths)}; do"]
    lines.append(
        f'  printf "%s\\n" {q(token + ":")}; cat "$p" 2>/dev/null; printf "\\n%s\\n" {q(token + ".")}'
    )
    lines += ["done", f"echo {OK_MARK}"]
    return "\n".join(lines)


def parse_fetch(host, output, paths, token):
    """Output of fetch_command -> {path: text, or None when the node's content is binary}."""
    if OK_MARK not in output:
        raise PushError(f"{host}: reading the node's files for --diff failed; output was {output[-500:]!r}")
    if token + ":\r\n" in output:  # a terminal between (ssh -tt): every \n came as \r\n
        output = output.replace("\r\n", "\n")
    parts = output.rsplit(OK_MARK, 1)[0].split(token + ":\n")[1:]
    if len(parts) != len(paths) or any(not x.rstrip("\n").endswith(token + ".") for x in parts):
        raise PushError(
            f"{host}: unexpected answer when reading the node's files for --diff: {output[-300:]!r}"
        )
    out = {}
    for path, part in zip(paths, parts):
        body = part.rsplit("\n" + token + ".", 1)[0]
        out[path] = as_text(body)
    return out


def diff(p, texts=None, sources=None):
    """Ansible diff entries, one per changed path, never secret content or checksums.

    texts: {dest: (old text, or None when binary; new text)} (diff_texts, parse_fetch): these
    files show a unified diff of their content, headers the destination and the source (as
    copy/template do), and a second entry when mode or owner change too. The others show
    sha256, size, mode and owner before and after. sources: {dest: header of the new content}."""
    texts, sources = texts or {}, sources or {}
    out = []
    for f in p.transfer + p.attrs:
        b = p.before.get(f.dest)
        old, new = texts.get(f.dest, (None, None))
        if new is not None and (old is not None or b is None or b.kind == "missing"):
            out.append(
                {
                    "before_header": f.dest,
                    "after_header": sources.get(f.dest, f.src or f.dest),
                    "before": old or "",
                    "after": new,
                }
            )
            a = _after(f, b)
            if b is not None and b.kind == "file" and (a.mode, a.user, a.group) != (b.mode, b.user, b.group):
                out.append(_entry(f.dest, _attrs(b), _attrs(a)))
            continue
        out.append(_entry(f.dest, _describe(b, f.secret), _describe(_after(f, b), f.secret, f.size)))
    for f in p.remove:
        out.append(_entry(f.dest, _describe(p.before.get(f.dest), f.secret), "absent\n"))
    for d in p.mkdirs + p.dir_attrs:
        b = p.before.get(d.path)
        out.append(_entry(d.path, _describe(b, False), _describe(_after(d, b), False)))
    for d in p.rmdirs:
        out.append(_entry(d.path, "directory\n", "absent\n"))
    return out


# ---------------------------------------------------------------- failures

_TIMEOUT_RE = re.compile(r"time(d)? ?out|not responding", re.I)
_CLOSED_RE = re.compile(
    r"connection (closed|reset|lost)|closed by remote|broken pipe|lost connection|connection to .* closed"
    r"|kex_exchange|\beof\b|killed by signal|connection refused|failed to connect",
    re.I,
)
_REFUSED_RE = re.compile(r"permission denied|no such file|not a directory|read-only file system", re.I)
_FULL_RE = re.compile(r"no space left|disk full|quota exceeded|ENOSPC", re.I)


def cleanup_command(paths, upload_dir):
    """Remove a failed run's partial uploads, then say how much room upload_dir has (KiB)."""
    return (
        f"rm -rf {' '.join(q(x) for x in paths)}; "
        f"df -Pk {q(upload_dir)} | awk 'NR == 2 {{print \"free=\" $4}}'; echo {OK_MARK}"
    )


def free_kib(output):
    m = re.search(r"^free=(\d+)$", output or "", re.M)
    return int(m.group(1)) if m else None


def upload_failure(host, remote, error, needed, *, cleaned, free=None, after=""):
    """The message of a failed upload: why (the node's upload_dir full, the connection timed
    out, the connection closed), and what became of the partial upload. error: the
    connection's error text; needed: bytes to upload; cleaned: the cleanup command ran (the
    partial upload is gone); free: KiB free in upload_dir after the cleanup (None: unknown);
    after: the error of the cleanup command when it failed too (ssh often says why only then:
    sftp prints no reason, and a server-alive timeout is logged below LogLevel ERROR)."""
    upload_dir = posixpath.dirname(remote)
    error = " ".join(str(error).split())
    after = " ".join(str(after or "").split())
    words = re.sub(r"\S*/\S*", " ", error)  # paths say nothing of the cause (a dir named timeout)
    if not any(r.search(words) for r in (_FULL_RE, _TIMEOUT_RE, _CLOSED_RE, _REFUSED_RE)) and after:
        words = re.sub(r"\S*/\S*", " ", after)  # the node did not answer the cleanup either: why
        error = f"{error} / then: {after}"
    if _FULL_RE.search(words) or (free is not None and free * 1024 < needed):
        why = f"the node's {upload_dir} is full" + (
            f" ({free} KiB free, the upload needs {-(-needed // 1024)} KiB)" if free is not None else ""
        )
        fix = "free some room there or set upload_dir to a bigger directory"
    elif _TIMEOUT_RE.search(words):
        why, fix = "the connection timed out", "check the node's network and load, then rerun"
    elif _CLOSED_RE.search(words):
        why, fix = (
            "the connection was closed",
            "check that the node's ssh server and sftp/scp work, then rerun",
        )
    elif _REFUSED_RE.search(words):
        why, fix = "the node refused the file", f"check that the login user can write {upload_dir}"
    elif cleaned and free is not None:
        # no reason given, yet the node answers and has room: the transfer's own channel ended
        # (sftp prints nothing when its server dies)
        why = "the connection was closed (the node's end of the transfer stopped; the node still answers)"
        fix = "check that the node's sftp/scp server works, then rerun"
    else:
        why, fix = "the upload failed", "see the connection's error below"
    left = (
        "the partial upload was removed"
        if cleaned
        else f"the partial upload {remote} stays in the node's {upload_dir}; the next run removes it"
    )
    return f"{host}: uploading {needed} bytes to {remote} failed: {why}; {left}; {fix}. ({error[-1500:]})"


def command_failure_cause(detail):
    """What a node command's error output says, in a few words (or '')."""
    if _FULL_RE.search(detail):
        return ": a disk is full (no space left on the device)"
    if _TIMEOUT_RE.search(detail):
        return ": it timed out"
    return ""


def report(p, bytes_transferred=0, round_trips=0, transport=None):
    """The task result (without diff)."""
    return {
        "changed": p.changed,
        "changed_files": sorted({f.dest for f in p.transfer + p.attrs + p.remove}),
        "transferred": [f.dest for f in p.transfer],
        "attributes_fixed": [f.dest for f in p.attrs],
        "removed": [f.dest for f in p.remove],
        "directories": sorted({d.path for d in p.mkdirs + p.dir_attrs + p.rmdirs}),
        "cleaned": list(p.cleanup),
        "hashed": sorted(path for path, e in p.before.items() if e.hashed),
        "bytes_transferred": bytes_transferred,
        "round_trips": round_trips,
        "transport": transport,
    }
