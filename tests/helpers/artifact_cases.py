# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Shared cases of the artifact tests (plugin_utils/artifacts.py and the artifact action):
real archives in upstream layouts, a real HTTP server on 127.0.0.1 that counts its requests.
The fixtures ``archives`` and ``server`` over these are in tests/conftest.py."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import shutil
import tarfile
import threading

import pytest

CNI_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins: real binaries to pack
CNI_NAME = "cni-plugins-linux-amd64-v1.0.1.tgz"
MULTUS_NAME = "multus-cni_3.8_linux_amd64.tar.gz"
needs_cni = pytest.mark.skipif(
    not os.access(os.path.join(CNI_DIR, "host-local"), os.X_OK), reason="apt containernetworking-plugins"
)


def sha(data):
    return hashlib.sha256(data).hexdigest()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def make_tar(path, files, top=None, dot=False):
    """A gzipped tar of {name: (bytes, mode)}: under top/ (wrapped), or './name' (dot, flat)."""
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        if dot:
            d = tarfile.TarInfo("./")
            d.type, d.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(d)
        for name, (data, mode) in sorted(files.items()):
            info = tarfile.TarInfo(f"{top}/{name}" if top else (f"./{name}" if dot else name))
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return sha(read(path))


def put(archives, name, directory):
    shutil.copy(archives[name][0], os.path.join(directory, name))
    return os.path.join(directory, name)


def table_for(*entries):
    """A pinned table of (artifact, arch, version, sha256)."""
    t = {}
    for artifact, arch, version, digest in entries:
        t.setdefault(artifact, {}).setdefault(arch, {})[version] = {"sha256": digest, "source": "test"}
    return t


class Server:
    """http.server on 127.0.0.1 in a thread, serving a directory and counting GETs."""

    def __init__(self, directory):
        self.requests = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=directory, **kw)

            def do_GET(self):
                outer.requests.append(self.path)
                super().do_GET()

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def make_archives(d):
    """Real archives in upstream layouts in directory d; returns {name: (path, sha256)}."""
    out = {}
    if os.path.isdir(CNI_DIR):
        plugins = {n: (read(os.path.join(CNI_DIR, n)), 0o755) for n in ("host-local", "static")}
        out[CNI_NAME] = (str(d / CNI_NAME), make_tar(d / CNI_NAME, plugins, dot=True))
    multus = {
        "multus-cni": (b"#!/bin/sh\necho multus-cni version:v3.8\n", 0o755),
        "LICENSE": (b"Apache", 0o644),
    }
    top = "multus-cni_3.8_linux_amd64"
    out[MULTUS_NAME] = (str(d / MULTUS_NAME), make_tar(d / MULTUS_NAME, multus, top=top))
    return out
