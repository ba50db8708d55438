# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Release archives on the controller: pure logic for the ``artifact`` action.

No Ansible runtime is needed here (the action plugin is a thin wrapper), so everything is
unit-tested directly:

- ``ARTIFACTS``: the upstream archive names, download URLs and layouts; ``parse_archive``
  reads artifact, version and architecture back from an upstream file name.
- ``load_table``/``dump_table``/``merge_entries``/``parse_checksum_lines``: the pinned
  sha256 table (``checksums.yml`` beside this file; one table, one place) and its update
  from upstream ``.sha256``/``checksums.txt`` files (``scripts/update-checksums``).
- ``resolve(...)``: look the archive up in ``$HOME/Downloads``, ``$ARCHIVE``, configured
  directories and the download cache; else download it once (temporary name, verified,
  renamed); verify its sha256; unpack it once into ``unpacked/<sha256>/`` (temporary
  directory, then rename: safe when processes race); return its member paths.

Bad input and every failure raise ArtifactError naming the value and what is expected (the
action plugin prefixes the host).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass

from . import fastyaml

TABLE_PATH = os.path.join(os.path.dirname(os.path.realpath(__file__)), "checksums.yml")
STALE_SECONDS = 3600  # temporaries older than this were left by killed runs
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_VERSION = re.compile(r"^v?[0-9]+(\.[0-9]+)*([-+][0-9A-Za-z.+-]+)?$")
_ARCH = re.compile(r"^[a-z0-9_]+$")


class ArtifactError(Exception):
    """Bad input or a failed lookup, download, verification or unpack (message says which)."""


@dataclass(frozen=True)
class Artifact:
    archive: str  # file name template: {version} (tag, with v), {bare} (without v), {arch}
    url: str  # download URL template: the same fields and {archive}
    pattern: str  # regex reading a file name back (groups: arch, version or bare)
    wrapped: str | None  # top directory template, None for a flat archive


ARTIFACTS = {
    "cni-plugins": Artifact(
        archive="cni-plugins-linux-{arch}-{version}.tgz",
        url="https://github.com/containernetworking/plugins/releases/download/{version}/{archive}",
        pattern=r"^cni-plugins-linux-(?P<arch>[a-z0-9_]+)-(?P<version>v[0-9][0-9A-Za-z.+-]*)\.tgz$",
        wrapped=None,
    ),
    "multus": Artifact(
        archive="multus-cni_{bare}_linux_{arch}.tar.gz",
        url="https://github.com/k8snetworkplumbingwg/multus-cni/releases/download/{version}/{archive}",
        pattern=r"^multus-cni_(?P<bare>[0-9][0-9A-Za-z.+-]*)_linux_(?P<arch>[a-z0-9_]+)\.tar\.gz$",
        wrapped="multus-cni_{bare}_linux_{arch}",
    ),
}


# ---------------------------------------------------------------- names and versions


def norm_version(version):
    """'1.0.1' or 'v1.0.1' -> 'v1.0.1' (table keys and URLs use the release tag)."""
    if not isinstance(version, str) or not _VERSION.match(version):
        raise ArtifactError(f"version: {version!r} is not a release version; expected e.g. v1.0.1 or 4.3.0")
    return version if version.startswith("v") else "v" + version


def version_key(version):
    """Sort key: numeric parts compare as numbers (v1.10.0 > v1.9.1 > v1.9)."""
    core, _dash, suffix = version.lstrip("v").partition("-")
    nums = tuple(int(p) for p in core.split("+")[0].split("."))
    return (nums, suffix == "", suffix)  # a pre-release sorts before its release


def check_arch(arch):
    if not isinstance(arch, str) or not _ARCH.match(arch):
        raise ArtifactError(f"arch: {arch!r} is not an architecture name; expected e.g. amd64 or arm64")
    return arch


def check_artifact(name):
    if name not in ARTIFACTS:
        raise ArtifactError(
            f"artifact: {name!r} is not known; expected one of {', '.join(sorted(ARTIFACTS))}"
        )
    return ARTIFACTS[name]


def fields(artifact, version, arch, archive=None):
    version = norm_version(version)
    out = {"version": version, "bare": version[1:], "arch": check_arch(arch)}
    out["archive"] = archive or check_artifact(artifact).archive.format(**out)
    return out


def archive_name(artifact, version, arch):
    """Upstream file name, e.g. ('multus', 'v3.8', 'amd64') -> multus-cni_3.8_linux_amd64.tar.gz."""
    return fields(artifact, version, arch)["archive"]


def parse_archive(name):
    """(artifact, version, arch) of an upstream file name, or None for another name."""
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise ArtifactError(
            f"archive: {name!r} is not a file name; expected e.g. cni-plugins-linux-amd64-v1.0.1.tgz"
        )
    for artifact, spec in ARTIFACTS.items():
        m = re.match(spec.pattern, name)
        if m:
            d = m.groupdict()
            return artifact, norm_version(d.get("version") or d["bare"]), d["arch"]
    return None


def format_url(template, artifact, version, arch, archive):
    """A URL template (default upstream's) with {version} {bare} {arch} {archive} filled in
    ({archive} only, for a name that is not an upstream one)."""
    known = fields(artifact, version, arch, archive) if artifact else {"archive": archive}
    try:
        return template.format(**known)
    except (KeyError, IndexError, ValueError) as e:
        raise ArtifactError(
            f"url: {template!r} has an unknown field ({e}); expected only "
            + " ".join(f"{{{k}}}" for k in sorted(known))
        ) from None


# ---------------------------------------------------------------- the pinned table


def parse_sha256(value, what="checksum"):
    """'sha256:<hex>' or '<hex>' (64 hex digits) -> lower-case hex."""
    if isinstance(value, str):
        v = value.strip().lower()
        v = v[len("sha256:") :] if v.startswith("sha256:") else v
        if _HEX64.match(v):
            return v
    raise ArtifactError(
        f"{what}: {value!r} is not a sha256; expected 64 hex digits, optionally after 'sha256:'"
    )


def load_table(path=TABLE_PATH):
    """{artifact: {arch: {version: {'sha256': hex, 'source': text}}}} from the YAML table."""
    try:
        with open(path, encoding="utf-8") as f:
            data = fastyaml.load(f) or {}
    except OSError as e:
        raise ArtifactError(f"checksum table {path}: cannot read it ({e.strerror})") from None
    return check_table(data, path)


def check_table(data, path="checksum table"):
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: expected a mapping artifact -> arch -> version")
    table = {}
    for artifact, arches in data.items():
        if not isinstance(arches, dict):
            raise ArtifactError(f"{path}: {artifact}: expected a mapping arch -> version")
        for arch, versions in arches.items():
            if not isinstance(versions, dict):
                raise ArtifactError(f"{path}: {artifact}.{arch}: expected a mapping version -> entry")
            for version, entry in versions.items():
                where = f"{path}: {artifact}.{arch}.{version}"
                if not isinstance(version, str):
                    raise ArtifactError(f"{where}: the version key must be a string (quote it, e.g. 'v1.10')")
                if (
                    not isinstance(entry, dict)
                    or not isinstance(entry.get("source"), str)
                    or not entry["source"]
                ):
                    raise ArtifactError(f"{where}: expected {{sha256: <hex>, source: <where it came from>}}")
                sha = parse_sha256(entry.get("sha256"), where)
                key = norm_version(version)
                table.setdefault(artifact, {}).setdefault(check_arch(arch), {})[key] = {
                    "sha256": sha,
                    "source": entry["source"],
                }
    return table


def pinned(table, artifact, version, arch):
    """The table's entry for (artifact, version, arch), or None."""
    return table.get(artifact, {}).get(arch, {}).get(version)


def newest_version(table, artifact, arch):
    """The default version: the newest key in the table for (artifact, arch), or None."""
    versions = table.get(artifact, {}).get(arch, {})
    return max(versions, key=version_key) if versions else None


def _quoted(key, text, indent, width=100):
    """key: "text" as YAML, folded at spaces onto continuation lines (read back as one line)."""
    words = text.replace("\\", "\\\\").replace('"', '\\"').split(" ")
    lines, line = [], f'{" " * indent}{key}: "{words[0]}'
    for word in words[1:]:
        if len(line) + 1 + len(word) > width:
            lines.append(line)
            line = " " * (indent + 2) + word
        else:
            line += " " + word
    return lines + [line + '"']


def dump_table(table, header=""):
    """The table as YAML (stable order: artifact, arch, newest version first)."""
    lines = [header.rstrip("\n")] if header else []
    lines.append("---")
    for artifact in sorted(table):
        lines.append(f"{artifact}:")
        for arch in sorted(table[artifact]):
            lines.append(f"  {arch}:")
            for version in sorted(table[artifact][arch], key=version_key, reverse=True):
                entry = table[artifact][arch][version]
                lines += [f"    {version}:", f'      sha256: "{entry["sha256"]}"']
                lines += _quoted("source", entry["source"], 6)
    return "\n".join(lines) + "\n"


def parse_checksum_lines(text, what="checksum file"):
    """[(file name, hex)] from sha256sum output ('<hex>  <name>' or '<hex> *<name>')."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = re.match(r"^([0-9A-Fa-f]{64})\s+\*?(\S.*?)\s*$", line)
        if not m:
            raise ArtifactError(f"{what}: line {n}: {line.strip()!r} is not '<sha256>  <file name>'")
        out.append((os.path.basename(m.group(2)), m.group(1).lower()))
    return out


def merge_entries(table, entries, source, replace=False):
    """Add (file name, hex) pairs of known artifacts to a copy of the table.

    Returns (new table, [(key, old, new)] changes, [names ignored]). A value that differs
    from the pinned one is refused unless replace=True: a changed upstream checksum is a
    reason to stop and look, not to overwrite.
    """
    new = {a: {r: dict(v) for r, v in arches.items()} for a, arches in table.items()}
    changes, ignored = [], []
    for name, sha in entries:
        parsed = parse_archive(name)
        if parsed is None:
            ignored.append(name)
            continue
        artifact, version, arch = parsed
        key = f"{artifact}.{arch}.{version}"
        old = new.get(artifact, {}).get(arch, {}).get(version)
        if old and old["sha256"] == sha:
            continue
        if old and not replace:
            raise ArtifactError(
                f"{key} ({name}): {source} says {sha}, the table pins {old['sha256']} "
                f"(source: {old['source']}); use --replace if upstream really changed it"
            )
        new.setdefault(artifact, {}).setdefault(arch, {})[version] = {"sha256": sha, "source": source}
        changes.append((key, old["sha256"] if old else None, sha))
    return new, changes, ignored


# ---------------------------------------------------------------- files


def cache_root(env=None):
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "xcluster-multus")


def _sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_cached(entry):
    try:
        with open(entry) as f:
            cached = f.read()
    except OSError:
        return None
    return cached if len(cached) == 64 else None


def sha256_file(path, cache_dir=None):
    """sha256 of a controller file. With cache_dir (shared by the forks that serve every host,
    and by later runs: sha256_dir()), each file is read
    once, not once per host and run: the entry is keyed by the file's identity (device, inode,
    size, mtime and ctime with nanoseconds: any write to the file or change of its inode moves
    its ctime, as for the node's records), and while one fork computes it the others wait for
    it instead of reading the file too."""
    if not cache_dir:
        return _sha256_of(path)
    st = os.stat(path)
    ident = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
    entry = os.path.join(cache_dir, "xcm-sha-" + hashlib.sha256(ident.encode()).hexdigest()[:32])
    cached = _read_cached(entry)
    if cached:
        return cached
    with locked(entry + ".lock"):  # the forks that serve the hosts take turns
        cached = _read_cached(entry)
        if cached:
            return cached
        digest = _sha256_of(path)
        _atomic_write(entry, digest.encode())
    return digest


def _atomic_write(path, data):
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def sha256_dir(cache=None):
    """Where the sha256 of controller files is kept across runs (sha256_file): <cache>/sha256;
    None when it cannot be created (then each file is read every time)."""
    path = os.path.join(cache or cache_root(), "sha256")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None
    return path


def search_paths(name, home, archive_env, dirs, cache):
    """[(label, path or None)] in lookup order; None when $ARCHIVE is not set."""
    out = [("$HOME/Downloads", os.path.join(home, "Downloads", name))]
    out.append(("$ARCHIVE", os.path.join(archive_env, name) if archive_env else None))
    out += [("dirs", os.path.join(os.path.expanduser(d), name)) for d in dirs]
    out.append(("download cache", os.path.join(cache, "downloads", name)))
    return out


def describe_searched(searched):
    return "\n".join(f"  {p}" if p else f"  ({label} is not set)" for label, p in searched)


@contextlib.contextmanager
def locked(path):
    """An exclusive flock on path (created), released on exit."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def clean_stale(directory, prefix, now=None):
    """Remove temporaries (prefix*) older than STALE_SECONDS left by killed runs."""
    now = time.time() if now is None else now
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            if entry.name.startswith(prefix):
                with contextlib.suppress(OSError):
                    if now - entry.stat(follow_symlinks=False).st_mtime > STALE_SECONDS:
                        if entry.is_dir(follow_symlinks=False):
                            shutil.rmtree(entry.path, ignore_errors=True)
                        else:
                            os.unlink(entry.path)


def download(url, dest, expected, timeout=60):
    """Fetch url into dest (a temporary name beside it first), verified, then renamed."""
    import http.client  # noqa: PLC0415 (only a download needs it and urls, and they cost)

    from ansible.module_utils import urls  # noqa: PLC0415 (~40 ms in every worker that imports us)

    directory = os.path.dirname(dest)
    os.makedirs(directory, exist_ok=True)
    clean_stale(directory, ".part.")
    fd, tmp = tempfile.mkstemp(prefix=".part.", dir=directory)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urls.open_url(url, timeout=timeout) as resp:
            for block in iter(lambda: resp.read(1 << 20), b""):
                h.update(block)
                out.write(block)
        actual = h.hexdigest()
        if actual != expected:
            raise ArtifactError(
                f"sha256 mismatch for {url} (downloaded, not kept): expected {expected}, actual {actual}"
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except (OSError, urls.ConnectionError, http.client.HTTPException) as e:  # HTTPError is an OSError
        raise ArtifactError(f"downloading {url} failed: {getattr(e, 'reason', None) or e}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


# ---------------------------------------------------------------- unpacking


def _safe_members(tar, archive):
    """The archive's members, refused if any could write outside the unpack directory."""
    members = tar.getmembers()
    for m in members:
        parts = m.name.split("/")
        if m.name.startswith("/") or ".." in parts:
            raise ArtifactError(f"{archive}: member {m.name!r} would be written outside the unpack directory")
        if not (m.isfile() or m.isdir() or m.issym()):
            raise ArtifactError(f"{archive}: member {m.name!r} is not a file, directory or symlink")
        if m.issym() and (m.linkname.startswith("/") or ".." in m.linkname.split("/")):
            raise ArtifactError(f"{archive}: symlink {m.name!r} -> {m.linkname!r} points outside the archive")
    return members


def list_members(root):
    """Sorted paths of the regular files and symlinks under root, relative to it."""
    out = []
    for dirpath, _dirs, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        out += [f if rel == "." else os.path.join(rel, f) for f in files]
    return sorted(out)


def layout(members):
    """('flat', '') when files sit at the top; ('wrapped', top) when all are under one directory."""
    tops = {m.split("/", 1)[0] for m in members}
    if members and len(tops) == 1 and all("/" in m for m in members):
        return "wrapped", tops.pop()
    return "flat", ""


def unpack(archive, sha, unpacked_root):
    """Unpack once into unpacked_root/<sha>/ (returns (dir, unpacked now?)).

    Unpacks into a temporary directory beside it, then renames: the final directory is
    complete or absent. When processes race, the first rename wins and the others discard
    their copy.
    """
    final = os.path.join(unpacked_root, sha)
    if os.path.isdir(final):
        return final, False
    os.makedirs(unpacked_root, exist_ok=True)
    clean_stale(unpacked_root, ".tmp-")
    tmp = tempfile.mkdtemp(prefix=f".tmp-{sha[:12]}-", dir=unpacked_root)
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = _safe_members(tar, archive)
                kw = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(tmp, members=members, **kw)  # noqa: S202  (members checked above)
        except (tarfile.TarError, EOFError, OSError) as e:
            raise ArtifactError(f"{archive}: cannot unpack it ({e})") from None
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, final)
        except OSError:
            if not os.path.isdir(final):
                raise
            return final, False  # another process won the race
        return final, True
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- the whole lookup


def expected_sha256(table, checksum, artifact, version, arch, *, archive):
    """(hex or None, origin): a user checksum wins over the table; origin says which."""
    if checksum is not None and checksum != "":
        if isinstance(checksum, str) and (checksum.startswith(("/", "file://"))):
            path = checksum[len("file://") :] if checksum.startswith("file://") else checksum
            try:
                with open(path, encoding="utf-8") as f:
                    pairs = dict(parse_checksum_lines(f.read(), f"checksum file {path}"))
            except OSError as e:
                raise ArtifactError(f"checksum: cannot read {path} ({e.strerror})") from None
            if archive not in pairs:
                raise ArtifactError(f"checksum: {path} has no line for {archive}")
            return pairs[archive], f"checksum file {path}"
        return parse_sha256(checksum), "checksum given by the user"
    entry = pinned(table, artifact, version, arch) if artifact else None
    if entry:
        return entry["sha256"], f"pinned table; source: {entry['source']}"
    return None, None


def resolve(
    *,
    archive=None,
    artifact=None,
    version=None,
    arch=None,
    checksum=None,
    url=None,
    dirs=(),
    download_ok=True,
    unpack_ok=True,
    home,
    archive_env=None,
    cache=None,
    table=None,
    timeout=60,
):
    """Find (or download), verify and unpack one archive. Returns the result mapping."""
    table = load_table() if table is None else table
    cache = cache or cache_root()
    if isinstance(dirs, str) or not all(isinstance(d, str) and d for d in dirs):
        raise ArtifactError(f"dirs: {dirs!r} is not a list of directories")
    if archive is None:
        if artifact is None:
            raise ArtifactError("give archive (an upstream file name) or artifact (+ version, arch)")
        check_artifact(artifact)
        arch = check_arch(arch or "amd64")
        if version is None:
            version = newest_version(table, artifact, arch)
            if version is None:
                raise ArtifactError(
                    f"version: no {artifact} version for {arch} in the pinned table; give version"
                )
        archive = archive_name(artifact, version, arch)
    parsed = parse_archive(archive)
    if parsed:
        for what, given, got in zip(("artifact", "version", "arch"), (artifact, version, arch), parsed):
            if given is not None and (norm_version(given) if what == "version" else given) != got:
                raise ArtifactError(f"{what}: {given!r} disagrees with archive {archive!r} ({what} {got})")
        artifact, version, arch = parsed
    elif artifact or version:
        raise ArtifactError(
            f"archive: {archive!r} is not an upstream name of {artifact or 'a known artifact'}"
        )

    expected, origin = expected_sha256(table, checksum, artifact, version, arch, archive=archive)
    if url is None and artifact:
        url = ARTIFACTS[artifact].url
    if url is not None:
        if not isinstance(url, str) or not url:
            raise ArtifactError(f"url: {url!r} is not a URL")
        url = format_url(url, artifact, version, arch, archive)

    searched = search_paths(archive, home, archive_env, list(dirs), cache)
    found = next(((label, p) for label, p in searched if p and os.path.isfile(p)), None)
    downloaded = False
    warnings = []
    if found is None:
        where = describe_searched(searched)
        fetch = f"It can be downloaded from {url}" if url else "No URL is known for it: give url"
        if not download_ok or url is None:
            raise ArtifactError(f"archive {archive} not found. Searched:\n{where}\n{fetch}")
        if expected is None:
            raise ArtifactError(
                f"archive {archive} not found. Searched:\n{where}\n{fetch}, but no sha256 is pinned for "
                f"it: give checksum (its sha256) to download it"
            )
        dest = searched[-1][1]
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with locked(os.path.join(os.path.dirname(dest), f".lock.{archive}")):
            if not os.path.isfile(dest):  # another process may have fetched it meanwhile
                try:
                    download(url, dest, expected, timeout=timeout)
                except ArtifactError as e:
                    raise ArtifactError(f"archive {archive} not found. Searched:\n{where}\n{e}") from None
                downloaded = True
        found = searched[-1]
    label, path = found
    actual = sha256_file(path, sha256_dir(cache))
    if expected is None:
        warnings.append(f"{path}: no sha256 is pinned for {archive} and none was given; using it as it is")
    elif actual != expected:
        raise ArtifactError(f"sha256 mismatch for {path}: expected {expected} ({origin}), actual {actual}")

    result = {
        "archive": archive,
        "artifact": artifact,
        "version": version,
        "arch": arch,
        "path": path,
        "found_in": "download" if downloaded else label,
        "sha256": actual,
        "checksum_origin": origin,
        "url": url,
        "searched": [p for _label, p in searched if p],
        "downloaded": downloaded,
        "warnings": warnings,
    }
    if unpack_ok:
        directory, fresh = unpack(path, actual, os.path.join(cache, "unpacked"))
        members = list_members(directory)
        kind, top = layout(members)
        result.update(
            unpacked=directory,
            unpacked_now=fresh,
            members=members,
            layout=kind,
            root=os.path.join(directory, top) if top else directory,
            files=[m[len(top) + 1 :] if top else m for m in members],
        )
    return result
