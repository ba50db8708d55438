# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""plugin_utils/artifacts.py without Ansible, and the update-checksums script (the artifact
action through ansible-playbook: tests/integration/test_artifact_play.py).

Real archives are made in tmp dirs in the upstream layouts (cni-plugins flat with Debian's
real plugin binaries from /usr/lib/cni, multus wrapped in a directory); downloads come from a
real HTTP server on 127.0.0.1 (http.server in a thread) that counts its requests.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import subprocess
import sys
import tarfile

import pytest
import yaml
from ansible_collections.xcluster.multus.plugins.plugin_utils import artifacts as A
from artifact_cases import (
    CNI_NAME,
    MULTUS_NAME,
    make_tar,
    needs_cni,
    put,
    read,
    sha,
    table_for,
)
from hypothesis import given, settings
from hypothesis import strategies as st

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
VENV_BIN = os.path.join(REPO, ".venv", "bin")


@pytest.fixture
def env(tmp_path):
    """A fresh HOME (with Downloads/), $ARCHIVE dir and cache; nothing in them yet."""
    e = {
        "home": str(tmp_path / "home"),
        "archive_env": str(tmp_path / "archive"),
        "cache": str(tmp_path / "cache"),
    }
    for d in (e["home"] + "/Downloads", e["archive_env"]):
        os.makedirs(d)
    return e


# ---------------------------------------------------------------- names, versions, table


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("cni-plugins-linux-amd64-v1.0.1.tgz", ("cni-plugins", "v1.0.1", "amd64")),
        ("cni-plugins-linux-arm64-v1.9.1.tgz", ("cni-plugins", "v1.9.1", "arm64")),
        ("multus-cni_3.8_linux_amd64.tar.gz", ("multus", "v3.8", "amd64")),
        ("multus-cni_4.3.0_linux_arm64.tar.gz", ("multus", "v4.3.0", "arm64")),
        ("whereabouts-amd64", None),
    ],
)
def test_parse_archive_and_back(name, parsed):
    assert A.parse_archive(name) == parsed
    if parsed:
        assert A.archive_name(*parsed) == name


@pytest.mark.parametrize("bad", ["", "a/b.tgz", "..", None])
def test_parse_archive_refuses_paths(bad):
    with pytest.raises(A.ArtifactError, match="archive: .* is not a file name"):
        A.parse_archive(bad)


def test_versions_sort_numerically():
    assert max(["v1.9.1", "v1.10.0", "v1.2.0"], key=A.version_key) == "v1.10.0"
    assert max(["v3.8", "v3.9.3", "v4.0.0-rc1"], key=A.version_key) == "v4.0.0-rc1"
    assert A.version_key("v4.0.0-rc1") < A.version_key("v4.0.0")
    assert A.norm_version("4.3.0") == "v4.3.0"
    with pytest.raises(A.ArtifactError, match=r"version: 'latest' is not a release version"):
        A.norm_version("latest")


def test_pinned_table_is_sane_and_sourced():
    table = A.load_table()
    for artifact, arches in table.items():
        assert artifact in A.ARTIFACTS
        for versions in arches.values():
            for entry in versions.values():
                assert len(entry["source"]) > 20, entry
    cni = table["cni-plugins"]
    assert (
        cni["amd64"]["v1.0.1"]["sha256"] == "5238fbb2767cbf6aae736ad97a7aa29167525dcd405196dfbc064672a730d3cf"
    )
    assert (
        cni["arm64"]["v1.0.1"]["sha256"] == "2d4528c45bdd0a8875f849a75082bc4eafe95cb61f9bcc10a6db38a031f67226"
    )
    assert A.newest_version(table, "cni-plugins", "amd64") == "v1.9.1"
    assert A.newest_version(table, "cni-plugins", "arm64") == "v1.9.1"
    # The file is exactly what dump_table writes (scripts/update-checksums owns its form).
    with open(A.TABLE_PATH) as f:
        text = f.read()
    assert A.dump_table(table, text.split("\n---\n")[0]) == text


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"cni-plugins": {"amd64": {"v1.0.1": {"sha256": "00", "source": "x"}}}}, "is not a sha256"),
        ({"cni-plugins": {"amd64": {"v1.0.1": {"sha256": "0" * 64}}}}, "expected {sha256"),
        ({"cni-plugins": {"amd64": {1.1: {"sha256": "0" * 64, "source": "x"}}}}, "must be a string"),
        ({"cni-plugins": ["v1"]}, "expected a mapping arch"),
    ],
)
def test_bad_table_is_refused(data, match):
    with pytest.raises(A.ArtifactError, match=match):
        A.check_table(data, "t.yml")


@settings(max_examples=40, deadline=None)
@given(
    source=st.text(
        alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=300
    ).filter(lambda s: s.strip() == s and "  " not in s),
    digest=st.from_regex(r"\A[0-9a-f]{64}\Z"),
)
def test_dump_then_load_gives_the_same_table(source, digest):
    table = table_for(("multus", "arm64", "v4.2.2", digest))
    table["multus"]["arm64"]["v4.2.2"]["source"] = source
    text = A.dump_table(table, "# header")
    assert all(len(line) <= 120 for line in text.splitlines() if " " in line.strip())
    assert A.check_table(yaml.safe_load(text)) == table


def test_merge_adds_skips_same_and_refuses_a_changed_value():
    table = table_for(("cni-plugins", "amd64", "v1.0.1", "a" * 64))
    new, changes, ignored = A.merge_entries(
        table,
        [
            ("cni-plugins-linux-amd64-v1.0.1.tgz", "a" * 64),
            ("cni-plugins-linux-arm64-v1.0.1.tgz", "b" * 64),
            ("cni-plugins-windows-amd64-v1.0.1.tgz", "c" * 64),
        ],
        "src",
    )
    assert changes == [("cni-plugins.arm64.v1.0.1", None, "b" * 64)]
    assert ignored == ["cni-plugins-windows-amd64-v1.0.1.tgz"]
    assert new["cni-plugins"]["arm64"]["v1.0.1"] == {"sha256": "b" * 64, "source": "src"}
    assert "arm64" not in table["cni-plugins"]  # the input table is not modified
    with pytest.raises(
        A.ArtifactError, match=r"cni-plugins.amd64.v1.0.1 .* says d{64}, the table pins a{64}"
    ):
        A.merge_entries(table, [("cni-plugins-linux-amd64-v1.0.1.tgz", "d" * 64)], "src")
    new, changes, _ = A.merge_entries(table, [("cni-plugins-linux-amd64-v1.0.1.tgz", "d" * 64)], "s", True)
    assert changes == [("cni-plugins.amd64.v1.0.1", "a" * 64, "d" * 64)]


def test_checksum_lines():
    text = f"{'A' * 64}  cni-plugins-linux-amd64-v1.9.1.tgz\n\n"
    text += f"{'b' * 64} *dist/multus-cni_4.3.0_linux_arm64.tar.gz\n"
    assert A.parse_checksum_lines(text) == [
        ("cni-plugins-linux-amd64-v1.9.1.tgz", "a" * 64),
        ("multus-cni_4.3.0_linux_arm64.tar.gz", "b" * 64),
    ]
    with pytest.raises(A.ArtifactError, match=r"f.txt: line 1: 'nonsense' is not"):
        A.parse_checksum_lines("nonsense\n", "f.txt")


# ---------------------------------------------------------------- scripts/update-checksums


def run_update(*args):
    cmd = [sys.executable, os.path.join(REPO, "scripts", "update-checksums"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)


def test_update_checksums_from_a_directory_and_a_url(tmp_path, server):
    table = tmp_path / "checksums.yml"
    sums = tmp_path / "sums"
    sums.mkdir()
    a1, a2, m1 = "1" * 64, "2" * 64, "3" * 64
    (sums / "cni-plugins-linux-amd64-v1.9.1.tgz.sha256").write_text(
        f"{a1}  cni-plugins-linux-amd64-v1.9.1.tgz\n"
    )
    (sums / "cni-plugins-linux-arm64-v1.9.1.tgz.sha256").write_text(
        f"{a2}  cni-plugins-linux-arm64-v1.9.1.tgz\n"
    )
    with open(os.path.join(server.dir, "checksums.txt"), "w") as f:
        f.write(
            f"{m1}  multus-cni_4.3.0_linux_amd64.tar.gz\n{'4' * 64}  multus-cni_4.3.0_darwin_amd64.tar.gz\n"
        )

    p = run_update("--table", str(table), str(sums))
    assert p.returncode == 0, p.stderr
    p = run_update(
        "--table", str(table), "--source", "upstream v4.3.0 checksums.txt", f"{server.url}/checksums.txt"
    )
    assert p.returncode == 0, p.stderr
    assert "ignored (not an archive the collection knows): multus-cni_4.3.0_darwin_amd64.tar.gz" in p.stderr
    t = A.load_table(str(table))
    assert t["cni-plugins"]["amd64"]["v1.9.1"] == {
        "sha256": a1,
        "source": str(sums / "cni-plugins-linux-amd64-v1.9.1.tgz.sha256"),
    }
    assert t["cni-plugins"]["arm64"]["v1.9.1"]["sha256"] == a2
    assert t["multus"]["amd64"]["v4.3.0"] == {"sha256": m1, "source": "upstream v4.3.0 checksums.txt"}

    before = table.read_text()
    assert "unchanged" in run_update("--table", str(table), str(sums)).stderr
    (sums / "bad.sha256").write_text(f"{'9' * 64}  cni-plugins-linux-amd64-v1.9.1.tgz\n")
    p = run_update("--table", str(table), str(sums))
    assert p.returncode == 1 and "the table pins 1111" in p.stderr
    assert table.read_text() == before  # refused: nothing written
    p = run_update("--table", str(table), "--dry-run", "--replace", str(sums / "bad.sha256"))
    assert p.returncode == 0 and "9" * 64 in p.stdout and table.read_text() == before


# ---------------------------------------------------------------- resolve: lookup and verification


@needs_cni
def test_found_in_downloads_first_flat_layout_real_plugins_run(archives, env):
    path, digest = archives[CNI_NAME]
    put(archives, CNI_NAME, env["home"] + "/Downloads")
    other = os.path.join(env["archive_env"], CNI_NAME)
    with open(other, "wb") as f:
        f.write(b"not the one: Downloads comes first")
    table = table_for(("cni-plugins", "amd64", "v1.0.1", digest))
    r = A.resolve(archive=CNI_NAME, table=table, **env)
    assert r["found_in"] == "$HOME/Downloads" and r["sha256"] == digest and not r["downloaded"]
    assert r["checksum_origin"] == "pinned table; source: test"
    assert r["layout"] == "flat" and r["files"] == ["host-local", "static"] == r["members"]
    assert r["unpacked"] == r["root"] == os.path.join(env["cache"], "unpacked", digest)
    out = subprocess.run(
        [os.path.join(r["root"], "host-local")],
        env={"CNI_COMMAND": "VERSION"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "supportedVersions" in out.stdout  # the real plugin, exec bit kept
    assert r["unpacked_now"] and not A.resolve(archive=CNI_NAME, table=table, **env)["unpacked_now"]


def test_found_in_archive_env_wrapped_layout(archives, env):
    _, digest = archives[MULTUS_NAME]
    put(archives, MULTUS_NAME, env["archive_env"])
    r = A.resolve(artifact="multus", version="3.8", checksum="sha256:" + digest.upper(), table={}, **env)
    assert r["archive"] == MULTUS_NAME and r["found_in"] == "$ARCHIVE" and r["version"] == "v3.8"
    assert r["layout"] == "wrapped"
    assert r["members"] == ["multus-cni_3.8_linux_amd64/LICENSE", "multus-cni_3.8_linux_amd64/multus-cni"]
    assert r["files"] == ["LICENSE", "multus-cni"]
    assert r["root"] == os.path.join(r["unpacked"], "multus-cni_3.8_linux_amd64")
    assert os.access(os.path.join(r["root"], "multus-cni"), os.X_OK)
    assert r["checksum_origin"] == "checksum given by the user"


def test_found_in_configured_dir_with_a_checksum_file(archives, env, tmp_path):
    _, digest = archives[MULTUS_NAME]
    d = tmp_path / "srv"
    d.mkdir()
    put(archives, MULTUS_NAME, str(d))
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(f"{'0' * 64}  other.tgz\n{digest}  {MULTUS_NAME}\n")
    r = A.resolve(archive=MULTUS_NAME, dirs=[str(d)], checksum=str(sums), table={}, unpack_ok=False, **env)
    assert r["found_in"] == "dirs" and r["checksum_origin"] == f"checksum file {sums}" and "unpacked" not in r


def test_local_archive_without_known_checksum_is_used_with_a_warning(archives, env):
    put(archives, MULTUS_NAME, env["archive_env"])
    r = A.resolve(archive=MULTUS_NAME, table={}, unpack_ok=False, **env)
    assert r["checksum_origin"] is None
    assert r["warnings"] == [
        f"{r['path']}: no sha256 is pinned for {MULTUS_NAME} and none was given; using it as it is"
    ]


def test_missing_archive_lists_every_path_and_the_url(env, tmp_path):
    env["archive_env"] = None
    with pytest.raises(A.ArtifactError) as e:
        A.resolve(archive=CNI_NAME, dirs=[str(tmp_path / "a"), "~/b"], download_ok=False, table={}, **env)
    msg = str(e.value)
    assert msg.startswith(f"archive {CNI_NAME} not found. Searched:\n")
    for p in (
        f"{env['home']}/Downloads/{CNI_NAME}",
        "($ARCHIVE is not set)",
        f"{tmp_path}/a/{CNI_NAME}",
        os.path.expanduser(f"~/b/{CNI_NAME}"),
        f"{env['cache']}/downloads/{CNI_NAME}",
    ):
        assert f"\n  {p}\n" in msg
    assert msg.endswith(
        "It can be downloaded from "
        f"https://github.com/containernetworking/plugins/releases/download/v1.0.1/{CNI_NAME}"
    )


def test_tampered_local_archive_fails_naming_file_expected_actual(archives, env):
    _, digest = archives[MULTUS_NAME]
    path = put(archives, MULTUS_NAME, env["archive_env"])
    with open(path, "ab") as f:
        f.write(b"tampered")
    actual = sha(read(path))
    table = table_for(("multus", "amd64", "v3.8", digest))
    with pytest.raises(A.ArtifactError) as e:
        A.resolve(archive=MULTUS_NAME, table=table, **env)
    assert (
        str(e.value)
        == f"sha256 mismatch for {path}: expected {digest} (pinned table; source: test), actual {actual}"
    )
    assert not os.path.exists(os.path.join(env["cache"], "unpacked"))  # nothing unpacked


def test_user_checksum_replaces_the_pinned_one(archives, env):
    _, digest = archives[MULTUS_NAME]
    put(archives, MULTUS_NAME, env["archive_env"])
    table = table_for(("multus", "amd64", "v3.8", "f" * 64))  # e.g. upstream's, for a self-built archive
    with pytest.raises(A.ArtifactError, match="sha256 mismatch"):
        A.resolve(archive=MULTUS_NAME, table=table, unpack_ok=False, **env)
    assert (
        A.resolve(archive=MULTUS_NAME, table=table, checksum=digest, unpack_ok=False, **env)["sha256"]
        == digest
    )


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"archive": CNI_NAME, "version": "v1.9.1"}, r"version: 'v1.9.1' disagrees with archive"),
        ({"archive": CNI_NAME, "arch": "arm64"}, r"arch: 'arm64' disagrees"),
        (
            {"artifact": "cni-plugins", "arch": "s390x"},
            "no cni-plugins version for s390x in the pinned table",
        ),
        (
            {"artifact": "cni", "version": "v1"},
            r"artifact: 'cni' is not known; expected one of cni-plugins, multus",
        ),
        ({"archive": CNI_NAME, "checksum": "md5:abc"}, r"checksum: 'md5:abc' is not a sha256"),
        ({"archive": CNI_NAME, "url": "https://x/{nope}"}, r"url: .* has an unknown field"),
        ({"archive": CNI_NAME, "dirs": "/srv"}, r"dirs: '/srv' is not a list"),
        ({}, "give archive"),
    ],
)
def test_bad_input_is_refused_clearly(env, kw, match):
    with pytest.raises(A.ArtifactError, match=match):
        A.resolve(table=table_for(("cni-plugins", "amd64", "v1.0.1", "0" * 64)), **kw, **env)


def test_default_version_is_the_newest_pinned(archives, env):
    _, digest = archives[MULTUS_NAME]
    put(archives, MULTUS_NAME, env["archive_env"])
    table = table_for(("multus", "amd64", "v3.8", digest), ("multus", "amd64", "v3.7.2", "0" * 64))
    assert A.resolve(artifact="multus", table=table, unpack_ok=False, **env)["version"] == "v3.8"


def test_unsafe_members_are_refused(env, tmp_path):
    bad = tmp_path / "multus-cni_9.9_linux_amd64.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        info = tarfile.TarInfo("../escape")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(A.ArtifactError, match=r"member '../escape' would be written outside"):
        A.resolve(archive=bad.name, dirs=[str(tmp_path)], table={}, **env)
    assert os.listdir(os.path.join(env["cache"], "unpacked")) == []  # no temporary left


# ---------------------------------------------------------------- resolve: downloads


def test_download_once_then_the_cache(archives, env, server):
    _, digest = archives[MULTUS_NAME]
    put(archives, MULTUS_NAME, server.dir)
    url = server.url + "/{archive}"
    table = table_for(("multus", "amd64", "v3.8", digest))
    r = A.resolve(archive=MULTUS_NAME, url=url, table=table, **env)
    assert r["downloaded"] and r["found_in"] == "download" and server.requests == [f"/{MULTUS_NAME}"]
    assert r["url"] == f"{server.url}/{MULTUS_NAME}" and r["sha256"] == digest
    cached = os.path.join(env["cache"], "downloads", MULTUS_NAME)
    assert r["path"] == cached and oct(os.stat(cached).st_mode & 0o777) == "0o644"
    r2 = A.resolve(archive=MULTUS_NAME, url=url, table=table, **env)
    assert not r2["downloaded"] and r2["found_in"] == "download cache" and len(server.requests) == 1
    assert r2["unpacked"] == r["unpacked"] and not r2["unpacked_now"]
    assert sorted(os.listdir(os.path.dirname(cached))) == [f".lock.{MULTUS_NAME}", MULTUS_NAME]


def test_another_archive_name_downloads_with_url_and_checksum(env, server):
    name = "tools.tar.gz"
    digest = make_tar(os.path.join(server.dir, name), {"bin/tool": (b"x", 0o755), "README": (b"r", 0o644)})
    r = A.resolve(archive=name, url=server.url + "/{archive}", checksum=digest, table={}, **env)
    assert r["artifact"] is None and r["downloaded"] and r["layout"] == "flat"
    assert r["files"] == ["README", "bin/tool"]
    with pytest.raises(
        A.ArtifactError, match=r"url: .* has an unknown field \('version'\); expected only \{archive\}"
    ):
        A.resolve(archive=name, url=server.url + "/{version}/{archive}", checksum=digest, table={}, **env)


def test_url_download_with_no_known_checksum_asks_for_one(archives, env, server):
    put(archives, MULTUS_NAME, server.dir)
    with pytest.raises(A.ArtifactError) as e:
        A.resolve(archive=MULTUS_NAME, url=server.url + "/{archive}", table={}, **env)
    assert "but no sha256 is pinned for it: give checksum (its sha256) to download it" in str(e.value)
    assert f"It can be downloaded from {server.url}/{MULTUS_NAME}" in str(e.value)
    assert server.requests == []


def test_download_with_a_wrong_checksum_keeps_nothing(archives, env, server):
    _, digest = archives[MULTUS_NAME]
    put(archives, MULTUS_NAME, server.dir)
    with pytest.raises(A.ArtifactError) as e:
        A.resolve(archive=MULTUS_NAME, url=server.url + "/{archive}", checksum="e" * 64, table={}, **env)
    assert (
        f"sha256 mismatch for {server.url}/{MULTUS_NAME} (downloaded, not kept): expected {'e' * 64}, "
        f"actual {digest}" in str(e.value)
    )
    assert os.listdir(os.path.join(env["cache"], "downloads")) == [f".lock.{MULTUS_NAME}"]


def test_download_error_names_the_url_and_paths(env, server):
    with pytest.raises(A.ArtifactError) as e:
        A.resolve(archive=MULTUS_NAME, url=server.url + "/x/{archive}", checksum="e" * 64, table={}, **env)
    msg = str(e.value)
    assert f"downloading {server.url}/x/{MULTUS_NAME} failed: File not found" in msg
    assert f"\n  {env['archive_env']}/{MULTUS_NAME}\n" in msg


def _race(fn, n=6):
    """Run fn(i) in n forked processes released together; return their results."""
    ctx = multiprocessing.get_context("fork")
    barrier, queue = ctx.Barrier(n), ctx.Queue()

    def worker(i):
        barrier.wait()
        try:
            queue.put((i, fn(i)))
        except BaseException as e:  # noqa: BLE001  (reported to the parent)
            queue.put((i, repr(e)))

    procs = [ctx.Process(target=worker, args=(i,)) for i in range(n)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    return [results[i] for i in range(n)]


def test_racing_unpacks_give_one_complete_directory(archives, env):
    path, digest = archives[MULTUS_NAME]
    root = os.path.join(env["cache"], "unpacked")
    results = _race(lambda i: A.unpack(path, digest, root))
    assert {r[0] for r in results} == {os.path.join(root, digest)}, results
    assert sum(1 for r in results if r[1]) == 1  # exactly one process's copy was kept
    assert os.listdir(root) == [digest]  # no temporaries left
    assert A.list_members(os.path.join(root, digest)) == [
        "multus-cni_3.8_linux_amd64/LICENSE",
        "multus-cni_3.8_linux_amd64/multus-cni",
    ]


def test_racing_downloads_fetch_once(archives, env, server):
    _, digest = archives[MULTUS_NAME]
    put(archives, MULTUS_NAME, server.dir)

    def one(_i):
        r = A.resolve(archive=MULTUS_NAME, url=server.url + "/{archive}", checksum=digest, table={}, **env)
        return r["sha256"], r["unpacked"]

    results = _race(one)
    assert len(set(results)) == 1 and results[0][0] == digest, results
    assert server.requests == [f"/{MULTUS_NAME}"]  # the lock: one download for six processes


def test_stale_temporaries_of_killed_runs_are_cleaned(archives, env):
    path, digest = archives[MULTUS_NAME]
    root = os.path.join(env["cache"], "unpacked")
    stale, fresh = os.path.join(root, ".tmp-old"), os.path.join(root, ".tmp-new")
    os.makedirs(stale)
    os.makedirs(fresh)
    os.utime(stale, (1, 1))
    A.unpack(path, digest, root)
    assert sorted(os.listdir(root)) == [".tmp-new", digest]
