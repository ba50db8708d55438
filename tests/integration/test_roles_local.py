"""The whereabouts and multus_service roles through ansible-playbook, on one host with the
local connection (every node path in a temporary root): real go builds of the tiny clone,
the rendered config and manifests, modes, the secret kubeconfig never printed, idempotence,
the binary / release-asset sources, the clear errors, and the daemons' start path with
stand-in daemons (the tiny clone's commands; the real ones need an API server and cri-o,
see the molecule scenario for them on the lab)."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import signal
import subprocess
import threading
import time

import gobuild_cases
import pytest
import yaml
from gobuild_cases import REPO, VENV_BIN, go_env, make_tiny_clone

PLAYBOOK = REPO / "tests" / "integration" / "roles_local"
TOKEN = "tok-3f1d9a7c-never-printed"


def _kubeconfig(server="https://127.0.0.1:1"):
    # 127.0.0.1:1: loopback, nothing listens; kubectl (when installed) gets "connection refused".
    return (
        "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: "
        f"{server}\n    insecure-skip-tls-verify: true\nusers:\n- name: t\n  user:\n    token: {TOKEN}\n"
        "contexts:\n- name: t\n  context: {cluster: t, user: t}\ncurrent-context: t\n"
    )


class Run:
    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.root = tmp_path / "root"
        self.root.mkdir(exist_ok=True)
        self.out = tmp_path / "out.json"
        self.env = go_env()
        self.env.update(
            PATH=f"{VENV_BIN}{os.pathsep}{self.env['PATH']}",
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_NOCOLOR="1",
            XDG_CACHE_HOME=str(tmp_path / "cache"),  # our build and download caches
        )
        self.env.pop("WHEREABOUTS_DIR", None)
        self.env.pop("MSERVICE_DIR", None)
        self.env["GOPATH"] = str(
            tmp_path / "gopath"
        )  # no prebuilt multus-service unless a test puts it there

    def node_vars(self):
        r = self.root
        return {
            "whereabouts_bin_dir": f"{r}/opt/cni/bin",
            "whereabouts_conf_dir": f"{r}/etc/cni/net.d/whereabouts.d",
            "whereabouts_manifest_dir": f"{r}/etc/kubernetes/whereabouts",
            "whereabouts_kubeconfig": f"{r}/etc/cni/net.d/whereabouts.d/whereabouts.kubeconfig",
            "whereabouts_kubectl_kubeconfig": f"{r}/etc/cni/net.d/whereabouts.d/whereabouts.kubeconfig",
            "whereabouts_kubectl_timeout": 2,
            "whereabouts_log_file": f"{r}/var/log/whereabouts.log",
            "multus_service_bin_dir": f"{r}/bin",
            "multus_service_manifest_dir": f"{r}/etc/kubernetes/multus-service",
            "multus_service_log_dir": f"{r}/var/log",
            "multus_service_run_dir": f"{r}/var/run",
            "multus_service_kubeconfig": f"{r}/etc/kubernetes/kubeconfig.token",
            "multus_service_controller_host": "vm-001",
            # push_files' records of what it installed: under the temporary root too
            "xcluster_multus_push_state_dir": f"{r}/var/lib/xcluster-multus/push",
        }

    def __call__(self, roles, extra, *, verbosity=0, env=None, args=(), inventory=None):
        evars = dict(self.node_vars(), test_roles=roles, test_out=str(self.out), **extra)
        path = self.tmp / "vars.json"
        path.write_text(json.dumps(evars))
        inventory = inventory or PLAYBOOK / "inventory.yml"
        argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), "-e", f"@{path}", *args]
        argv += ["-" + "v" * verbosity] if verbosity else []
        p = subprocess.run(
            [*argv, str(PLAYBOOK / "roles.yml")],
            cwd=REPO,
            env=dict(self.env, **(env or {})),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        p.text = p.stdout + p.stderr
        p.recap = re.search(
            r"vm-001\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", p.stdout
        )
        p.data = json.loads(self.out.read_text()) if p.returncode == 0 else None
        return p


@pytest.fixture
def run(tmp_path):
    if not (VENV_BIN / "ansible-playbook").exists():
        pytest.skip("ansible-playbook missing: make venv")
    return Run(tmp_path)


def _mode(path):
    return oct(os.stat(path).st_mode & 0o7777)


def _ok(p):
    assert p.returncode == 0, p.text[-6000:]
    return p


# ---------------------------------------------------------------- whereabouts


def test_whereabouts_built_installed_configured_idempotent(run, tiny_clone):
    extra = {
        "whereabouts_src_dir": str(tiny_clone),
        "whereabouts_extra_binaries": ["ip-control-loop"],
        "whereabouts_kubeconfig_content": _kubeconfig(),
        "whereabouts_log_level": "verbose",
    }
    p1 = _ok(run(["whereabouts"], extra, verbosity=3))
    r = run.root
    assert TOKEN not in p1.text  # -vvv, and the kubeconfig was transferred: never printed
    assert p1.data["whereabouts_build"]["built"] is True
    wa = r / "opt/cni/bin/whereabouts"
    out = subprocess.run(
        [str(wa)], env={"CNI_COMMAND": "VERSION"}, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout)["v"] == "v0.0.1"
    assert _mode(wa) == "0o755" and _mode(r / "opt/cni/bin/ip-control-loop") == "0o755"
    conf = r / "etc/cni/net.d/whereabouts.d/whereabouts.conf"
    assert json.loads(conf.read_text()) == {
        "datastore": "kubernetes",
        "kubernetes": {"kubeconfig": f"{r}/etc/cni/net.d/whereabouts.d/whereabouts.kubeconfig"},
        "log_file": f"{r}/var/log/whereabouts.log",
        "log_level": "verbose",
    }
    assert conf.read_text().endswith("}\n")
    kc = r / "etc/cni/net.d/whereabouts.d/whereabouts.kubeconfig"
    assert kc.read_text() == _kubeconfig()
    assert (_mode(conf), _mode(kc)) == ("0o600", "0o600")
    crds = sorted(os.listdir(r / "etc/kubernetes/whereabouts"))
    assert crds == [
        f"whereabouts.cni.cncf.io_{n}.yaml"
        for n in ("ippools", "nodeslicepools", "overlappingrangeipreservations")
    ]
    for c in crds:
        assert (r / "etc/kubernetes/whereabouts" / c).read_bytes() == (
            tiny_clone / "doc/crds" / c
        ).read_bytes()
    # vm-001 is the control plane: the apply step ran and said why it skipped.
    assert re.search(
        r"whereabouts CRDs not applied on vm-001: (kubectl is not installed|no API server answered)", p1.text
    )
    summary = p1.data["summary_whereabouts"]
    assert summary["version"] == p1.data["whereabouts_build"]["version"]
    assert str(wa) in summary["changed"]

    mtime = os.stat(p1.data["whereabouts_build"]["binaries"]["whereabouts"]).st_mtime_ns
    p2 = _ok(run(["whereabouts"], extra))
    assert p2.recap.group(2) == "0", p2.stdout  # idempotent: changed=0
    assert p2.data["whereabouts_build"]["built"] is False
    assert p2.data["whereabouts_build"]["key"] == p1.data["whereabouts_build"]["key"]
    assert os.stat(p2.data["whereabouts_build"]["binaries"]["whereabouts"]).st_mtime_ns == mtime
    assert TOKEN not in p2.text


def test_check_mode_builds_but_changes_no_node(run, tiny_clone):
    """Check mode: the build runs on the controller (later tasks need its output); nothing is
    written under the node root."""
    extra = {"whereabouts_src_dir": str(tiny_clone), "multus_service_src_dir": str(tiny_clone)}
    p = _ok(run(["whereabouts", "multus_service"], extra, args=["--check"]))
    assert p.data["whereabouts_build"]["built"] is True
    assert p.data["multus_service_build"]["built"] is True
    assert list(run.root.iterdir()) == []


def test_every_host_must_ask_for_the_same_source(run, tiny_clone, tmp_path):
    inv = tmp_path / "inventory.yml"
    inv.write_text(
        yaml.safe_dump(
            {
                "xcluster": {
                    "hosts": {
                        "vm-001": {"ansible_connection": "local", "whereabouts_src_dir": str(tiny_clone)},
                        "vm-002": {"ansible_connection": "local", "whereabouts_src_dir": "/elsewhere"},
                    }
                },
                "xcluster_control_plane": {"hosts": {"vm-001": None}},
            }
        )
    )
    p = run(["whereabouts"], {}, inventory=inv)  # (extra vars would win over host vars)
    assert p.returncode != 0
    assert "the hosts of this play ask for different whereabouts sources" in p.text
    assert "/elsewhere" in p.text


def test_whereabouts_prebuilt_binary_and_crds_dir(run, tiny_clone, tmp_path):
    prebuilt = tmp_path / "prebuilt-whereabouts"
    prebuilt.write_bytes(b"#!/bin/sh\necho prebuilt\n")
    prebuilt.chmod(0o755)
    crds = tmp_path / "crds"
    crds.mkdir()
    for n in ("ippools", "overlappingrangeipreservations"):  # an older version: no nodeslicepools
        (crds / f"whereabouts.cni.cncf.io_{n}.yaml").write_text(f"kind: CustomResourceDefinition # {n}\n")
    p = _ok(run(["whereabouts"], {"whereabouts_binary": str(prebuilt), "whereabouts_crds_dir": str(crds)}))
    assert (run.root / "opt/cni/bin/whereabouts").read_bytes() == prebuilt.read_bytes()
    assert p.data["whereabouts_build"]["skipped"] is True  # no build with a prebuilt binary
    assert p.data["whereabouts_crds"] == [
        "whereabouts.cni.cncf.io_ippools.yaml",
        "whereabouts.cni.cncf.io_overlappingrangeipreservations.yaml",
    ]
    assert not (run.root / "etc/cni/net.d/whereabouts.d/whereabouts.kubeconfig").exists()  # no content given
    p = _ok(run(["whereabouts"], {"whereabouts_binary": str(prebuilt)}))
    assert p.data["whereabouts_crds"] == []
    assert "no CRDs are shipped or applied" in p.text


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


def test_whereabouts_release_asset_url(run, tmp_path):
    asset_dir = tmp_path / "srv" / "v9.9.9"
    asset_dir.mkdir(parents=True)
    asset = asset_dir / "whereabouts-amd64"
    asset.write_bytes(b"#!/bin/sh\necho asset\n")
    sha = hashlib.sha256(asset.read_bytes()).hexdigest()
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(tmp_path / "srv"), **kw)

        def log_message(self, *a):
            requests.append(self.path)

    srv = _Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/v9.9.9/whereabouts-amd64"
        extra = {"whereabouts_url": url, "whereabouts_url_sha256": sha}
        p = _ok(run(["whereabouts"], extra))
        installed = run.root / "opt/cni/bin/whereabouts"
        assert installed.read_bytes() == asset.read_bytes() and _mode(installed) == "0o755"
        cached = tmp_path / "cache" / "xcluster-multus" / "downloads" / f"{sha[:12]}-whereabouts-amd64"
        assert p.data["whereabouts_binaries"] == {"whereabouts": str(cached)}
        p = _ok(run(["whereabouts"], extra))
        assert p.recap.group(2) == "0" and len(requests) == 1  # downloaded once
        p = run(["whereabouts"], dict(extra, whereabouts_url_sha256="0" * 64))
        assert p.returncode != 0 and "sha256 mismatch" in p.text
    finally:
        srv.shutdown()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({}, r"vm-001: whereabouts has no source: .*expected the path of\s+your whereabouts clone"),
        (
            {"whereabouts_url": "http://127.0.0.1:1/whereabouts-amd64", "whereabouts_url_sha256": "abc"},
            r'vm-001: whereabouts_url_sha256 "abc" is not\s+a sha256',
        ),
        (
            {"whereabouts_binary": "/nonexistent/whereabouts"},
            r"vm-001: whereabouts_binary /nonexistent/whereabouts is not an executable\s+file",
        ),
        ({"whereabouts_log_level": "loud"}, r"whereabouts_log_level.*loud"),
        ({"whereabouts_extra_binaries": ["ip-reconciler"], "CLONE": 1}, r"expected also ip-reconciler"),
        (
            {"whereabouts_extra_binaries": ["ip-control-loop"], "whereabouts_binary": "/bin/true"},
            r"whereabouts_extra_binaries \[\"ip-control-loop\"\]\s+needs a build of your clone",
        ),
        (
            {"whereabouts_go": "nogo-xcm", "CLONE": 1},
            r"vm-001: go: the go command 'nogo-xcm' was not found on the controller's PATH",
        ),
        (
            {"BROKEN": 1, "CLONE": 1},
            r"(?s)vm-001: the build of whereabouts failed in .*undefined: undefinedThing",
        ),
        (
            {"NOCRD": 1, "CLONE": 1},
            r"vm-001: \S+/doc/crds has no whereabouts.cni.cncf.io_ippools.yaml, \S+;"
            r" expected whereabouts' CRD files",
        ),
    ],
)
def test_whereabouts_clear_errors(run, tmp_path, extra, message):
    extra = dict(extra)
    if extra.pop("CLONE", None):
        clone = make_tiny_clone(
            tmp_path / "clone",
            crds=() if extra.pop("NOCRD", None) else ("ippools", "overlappingrangeipreservations"),
        )
        if extra.pop("BROKEN", None):
            (clone / "cmd" / "whereabouts" / "broken.go").write_text(
                "package main\nfunc b() { undefinedThing() }\n"
            )
        extra["whereabouts_src_dir"] = str(clone)
    p = run(["whereabouts"], extra)
    assert p.returncode != 0
    assert re.search(message, p.text), p.text[-4000:]
    assert not (run.root / "opt").exists()  # preflight failed before any node change


# ---------------------------------------------------------------- multus_service


def _pids(root):
    out = {}
    for name in ("multus-proxy", "multus-service-controller"):
        f = root / "var/run" / f"{name}.pid"
        if f.exists():
            out[name] = int(f.read_text())
    return out


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def _stop(root):
    for pid in _pids(root).values():
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)


def test_multus_service_built_installed_manifests(run, tiny_clone):
    extra = {
        "multus_service_src_dir": str(tiny_clone),
        "multus_service_network": "ipvlan-lab",
        "multus_service_port": 6001,
        "multus_service_replicas": 2,
        "multus_service_client_replicas": 0,
        "multus_service_ip_families": ["IPv4", "IPv6"],
        "multus_service_server_image": "registry.example.invalid/alpine:3",
    }
    p1 = _ok(run(["multus_service"], extra))
    r = run.root
    assert p1.data["multus_service_build"]["built"] is True
    for name in ("multus-proxy", "multus-service-controller"):
        assert _mode(r / "bin" / name) == "0o755"
        assert (
            "--kubeconfig"
            in subprocess.run(
                [str(r / "bin" / name), "--help"], capture_output=True, text=True, check=True
            ).stdout
        )
    svc = yaml.safe_load((r / "etc/kubernetes/multus-service/svc.yaml").read_text())
    assert svc["metadata"] == {
        "name": "multus-service",
        "labels": {"service.kubernetes.io/service-proxy-name": "multus-proxy"},
        "annotations": {"k8s.v1.cni.cncf.io/service-network": "ipvlan-lab"},
    }
    assert svc["spec"] == {
        "ipFamilyPolicy": "PreferDualStack",
        "ipFamilies": ["IPv4", "IPv6"],
        "selector": {"app": "multus-server"},
        "ports": [{"port": 6001}],
    }
    docs = list(yaml.safe_load_all((r / "etc/kubernetes/multus-service/deployment.yaml").read_text()))
    assert [d["metadata"]["name"] for d in docs] == ["multus-server"]  # no clients with 0 replicas
    spec = docs[0]["spec"]
    assert spec["replicas"] == 2
    assert spec["template"]["metadata"]["annotations"] == {"k8s.v1.cni.cncf.io/networks": "ipvlan-lab"}
    c = spec["template"]["spec"]["containers"][0]
    assert c["image"] == "registry.example.invalid/alpine:3"
    assert c["command"] == ["sh", "-c", "nc -lk -p 6001 -e hostname"]
    assert c["ports"] == [{"name": "hostname", "containerPort": 6001}]
    assert _pids(r) == {}  # multus_service_start is off by default
    p2 = _ok(run(["multus_service"], extra))
    assert p2.recap.group(2) == "0" and p2.data["multus_service_build"]["built"] is False


def test_multus_service_defaults_are_xclusters(run, tiny_clone):
    _ok(run(["multus_service"], {"multus_service_src_dir": str(tiny_clone)}))
    svc = yaml.safe_load((run.root / "etc/kubernetes/multus-service/svc.yaml").read_text())
    assert svc["metadata"]["annotations"] == {"k8s.v1.cni.cncf.io/service-network": "ipvlan2"}
    assert svc["spec"]["ipFamilyPolicy"] == "SingleStack" and svc["spec"]["ports"] == [{"port": 5001}]
    docs = list(yaml.safe_load_all((run.root / "etc/kubernetes/multus-service/deployment.yaml").read_text()))
    assert [(d["metadata"]["name"], d["spec"]["replicas"]) for d in docs] == [
        ("multus-server", 4),
        ("multus-client", 4),
    ]
    assert docs[1]["spec"]["template"]["spec"]["containers"][0]["image"] == "docker.io/library/alpine:latest"


def test_multus_service_start_is_idempotent_and_restarts(run, tiny_clone):
    extra = {"multus_service_src_dir": str(tiny_clone), "multus_service_start": True}
    r = run.root
    try:
        p1 = _ok(run(["multus_service"], extra))
        pids = _pids(r)
        assert set(pids) == {"multus-proxy", "multus-service-controller"}
        assert all(_alive(pid) for pid in pids.values())
        assert p1.data["summary_multus_service"]["changed"][-2:] == [
            "started multus-service-controller",
            "started multus-proxy",
        ]
        log = (r / "var/log/multus-proxy.log").read_text()
        # xcluster's unix:///var/run/crio/crio.sock without unix:// (multus-proxy prepends it)
        assert (
            f"--kubeconfig {r}/etc/kubernetes/kubeconfig.token "
            "--container-runtime-endpoint /var/run/crio/crio.sock\n"
        ) in log
        p2 = _ok(run(["multus_service"], extra))
        assert p2.recap.group(2) == "0" and _pids(r) == pids  # running: left alone
        os.kill(pids["multus-proxy"], signal.SIGTERM)
        time.sleep(0.5)
        p3 = _ok(run(["multus_service"], extra))
        new = _pids(r)
        assert new["multus-service-controller"] == pids["multus-service-controller"]
        assert new["multus-proxy"] != pids["multus-proxy"] and _alive(new["multus-proxy"])
        assert p3.recap.group(2) == "1"
        # A new build of the proxy (the clone changed): the running proxy is restarted.
        main = tiny_clone / "cmd" / "multus-proxy" / "main.go"
        main.write_text(main.read_text() + "\n// v2\n")
        p4 = _ok(run(["multus_service"], extra))
        assert p4.data["multus_service_build"]["built"] is True
        newer = _pids(r)
        assert newer["multus-proxy"] != new["multus-proxy"] and _alive(newer["multus-proxy"])
        assert not _alive(new["multus-proxy"])
    finally:
        _stop(r)


def test_multus_service_start_reports_a_daemon_that_exits(run, tiny_clone):
    extra = {
        "multus_service_src_dir": str(tiny_clone),
        "multus_service_start": True,
        "multus_service_kubeconfig": "exit-now",
    }
    try:
        p = _ok(run(["multus_service"], extra))
        assert re.search(
            r"(?s)multus-proxy on vm-001 exited right after its start; the end of its log:"
            r".*multus-proxy: cannot reach the API server",
            p.text,
        )
        assert all(not _alive(pid) for pid in _pids(run.root).values())
    finally:
        _stop(run.root)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {},
            r"vm-001: no multus-service source: "
            r"multus_service_src_dir is empty \(and \$MSERVICE_DIR is unset\)",
        ),
        (
            {"multus_service_source": "prebuilt", "PREBUILT": "multus-proxy"},
            r"vm-001: multus_service_source is prebuilt, "
            r"multus_service_prebuilt_dir is \"[^\"]*/gopath/bin\": "
            r"\S*/multus-proxy ok, \S*/multus-service-controller missing; expected both binaries",
        ),
        (
            {"multus_service_source": "clone", "PREBUILT": "multus-proxy multus-service-controller"},
            r"vm-001: multus_service_source is clone but multus_service_src_dir is empty",
        ),
        (
            {"multus_service_prebuilt_dir": "go/bin"},
            r"vm-001: multus_service_prebuilt_dir is \"go/bin\"; expected an absolute",
        ),
        ({"multus_service_src_dir": "/nonexistent/ms"}, r"vm-001: src: /nonexistent/ms does not exist"),
        ({"multus_service_port": 70000, "CLONE": 1}, r"vm-001: multus_service_port 70000"),
        (
            {"multus_service_start": True, "multus_service_controller_host": "vm-009", "CLONE": 1},
            r"vm-001: multus_service_controller_host \"vm-009\"",
        ),
        ({"multus_service_ip_families": ["IPv5"], "CLONE": 1}, r"multus_service_ip_families.*IPv5"),
    ],
)
def test_multus_service_clear_errors(run, tmp_path, extra, message):
    extra = dict(extra)
    if extra.pop("CLONE", None):
        extra["multus_service_src_dir"] = str(make_tiny_clone(tmp_path / "clone"))
    for name in extra.pop("PREBUILT", "").split():
        gobin = tmp_path / "gopath" / "bin"
        gobin.mkdir(parents=True, exist_ok=True)
        (gobin / name).write_text("#!/bin/sh\n")
        (gobin / name).chmod(0o755)
    p = run(["multus_service"], extra)
    assert p.returncode != 0
    assert re.search(message, p.text), p.text[-4000:]
    assert not (run.root / "bin").exists()


def test_multus_service_prebuilt_from_gopath_bin(run, tiny_clone, tmp_path):
    """xcluster's way: go install ./cmd/... in the clone puts both binaries in $GOPATH/bin; with
    no clone given, the role takes them from there (auto), and says so."""
    gobin = gobuild_cases.go_install_gopath(tiny_clone, tmp_path / "gopath")
    p1 = _ok(run(["multus_service"], {}))
    assert p1.data["multus_service_build"]["skipped"] is True  # nothing built
    assert p1.data["summary_multus_service"]["version"] == f"prebuilt from {gobin}"
    for name in ("multus-proxy", "multus-service-controller"):
        assert (run.root / "bin" / name).read_bytes() == (gobin / name).read_bytes()
        assert _mode(run.root / "bin" / name) == "0o755"
    assert (run.root / "etc/kubernetes/multus-service/svc.yaml").exists()
    p2 = _ok(run(["multus_service"], {}))
    assert p2.recap.group(2) == "0"
    # a clone given wins (auto): built from it, and said so
    p3 = _ok(run(["multus_service"], {"multus_service_src_dir": str(tiny_clone)}))
    assert p3.data["multus_service_build"]["built"] is True
    assert p3.data["summary_multus_service"]["version"].endswith(f", built from the clone {tiny_clone}")
    # one of them not executable: auto finds no source, and says what it found
    (gobin / "multus-proxy").chmod(0o644)
    p4 = run(["multus_service"], {})
    assert p4.returncode != 0
    assert re.search(rf"vm-001: no multus-service source: .*{gobin}/multus-proxy not executable", p4.text), (
        p4.text[-3000:]
    )
