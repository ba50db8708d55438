# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Roles as units (issue 15), on one netns lab of this module's own (tests/lab/lab, 1 node):

1. multus-service's configure learns what changed from the contract, whoever pushed: under
   site.yml (one push for every role), a rebuilt clone's multus-proxy is pushed and the RUNNING
   daemon is restarted on the new binary (its /proc/<pid>/exe is the new file); the controller,
   whose binary did not change, is left alone. uninstall.yml stops both (daemon.sh).
2. The list of roles exists once: a copy of the checkout with a throwaway sixth role (one
   directory) and one line in playbooks/vars/xcluster_multus.yml; site.yml pushes its file and
   its summary has its line, ovl.yml puts it in the overlay, uninstall.yml removes it, and the
   node is fresh again.

Needs root, Go, and the archives of tests/artifacts/build-all.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile

import gobuild_cases  # tests/helpers
import labrun  # tests/helpers
import pytest
from nodetree import delta

REPO = labrun.REPO
LAB_VARS = labrun.LAB_VARS


def _gobuild_cases():
    """The tiny multus-service clone of the unit tests (stand-in daemons that keep running)."""
    return gobuild_cases


class Lab(labrun.Lab):
    def ssh(self, cmd):  # the lab's one node
        return super().ssh(1, cmd)

    def play(self, playbook, *args, cwd=REPO, env=None):
        r = super().play(playbook, *args, cwd=cwd, env=env)
        assert r.rc == 0, r.out[-8000:]
        return r.out

    def changes(self):
        return delta(self.fresh, self.upper(1))


@pytest.fixture(scope="module")
def lab():
    labrun.require_lab()
    cases = _gobuild_cases()
    if cases.GO is None:
        pytest.skip("the go command is needed (/usr/local/go/bin/go)")
    lab = Lab(labrun.lab_env(f"xrc{os.getpid() % 100000}", 1, base=dict(os.environ, **cases.go_env())))
    with labrun.running(lab):
        lab.fresh = lab.upper(1)
        yield lab


def _daemon(lab, name):
    """(pid, sha256 of the running process's binary, sha256 of the installed binary)."""
    out = lab.ssh(
        f"pid=$(cat /var/run/{name}.pid); echo $pid; kill -0 $pid && sha256sum /proc/$pid/exe /bin/{name}"
    ).split()
    return int(out[0]), out[1], out[3]


def test_site_restarts_the_daemon_whose_binary_it_replaced(lab, tmp_path):
    clone = _gobuild_cases().make_tiny_clone(tmp_path / "clone")
    env = dict(lab.env, MSERVICE_DIR=str(clone))
    args = ("-e", '{"multus_service_start": true}')
    out = lab.play("site.yml", *args, env=env)
    assert re.search(r"multus_service\s+.*started multus-service-controller; started multus-proxy", out), out[
        -4000:
    ]
    proxy, ctrl = _daemon(lab, "multus-proxy"), _daemon(lab, "multus-service-controller")
    assert proxy[1] == proxy[2] and ctrl[1] == ctrl[2]  # running what is installed

    out = lab.play("site.yml", *args, env=env)  # nothing changed: both left alone
    assert _daemon(lab, "multus-proxy") == proxy and _daemon(lab, "multus-service-controller") == ctrl
    assert re.search(r"^vm-001\s+: .*changed=0 ", out, re.M), out[-3000:]

    # A new multus-proxy (the clone changed, rebuilt): site.yml's one push replaces it, and the
    # running proxy is restarted on the new binary. (The controller's binary changes too when
    # the build stamps the clone's state; it is restarted exactly when it did.)
    main = clone / "cmd" / "multus-proxy" / "main.go"
    main.write_text(main.read_text().replace("Usage of multus-proxy", "Usage of multus-proxy (v2)", 1))
    out = lab.play("site.yml", *args, env=env)
    new = _daemon(lab, "multus-proxy")
    assert new[2] != proxy[2], "the rebuilt binary was not pushed"
    assert new[0] != proxy[0], f"multus-proxy was not restarted: {out[-4000:]}"
    assert new[1] == new[2], "the running multus-proxy is not the new binary"
    assert re.search(r"multus_service\s+.*changed: /bin/[^|]*multus-proxy.*; started multus-proxy", out), out[
        -4000:
    ]
    new_ctrl = _daemon(lab, "multus-service-controller")
    assert new_ctrl[1] == new_ctrl[2], "the running controller is not the installed binary"
    assert (new_ctrl[0] != ctrl[0]) == (new_ctrl[2] != ctrl[2]), (ctrl, new_ctrl)
    out = lab.play("site.yml", *args, env=env)  # and again: left alone
    assert _daemon(lab, "multus-proxy") == new and _daemon(lab, "multus-service-controller") == new_ctrl
    ctrl = new_ctrl

    out = lab.play("playbooks/uninstall.yml", env=env)
    assert f"CHANGED: stopped /bin/multus-proxy ({new[0]})" in out
    assert f"CHANGED: stopped /bin/multus-service-controller ({ctrl[0]})" in out
    assert lab.ssh(
        f"kill -0 {new[0]} 2>/dev/null || echo gone; kill -0 {ctrl[0]} 2>/dev/null || echo gone"
    ).split() == [
        "gone",
        "gone",
    ]
    left = lab.changes()
    logs = {"var/log/multus-proxy.log", "var/log/multus-service-controller.log"}
    assert set(left) == logs, f"uninstall left something (only logs are kept, as it says): {left}"


SIXTH = {
    "meta/argument_specs.yml": """---
argument_specs:
  main:
    short_description: A throwaway role (tests/integration/test_roles_contract.py)
    options: &options
      sixth_text:
        type: str
        default: sixth
        description: The file's text.
  preflight: {short_description: Preflight, options: *options}
  files: {short_description: Files, options: *options}
  install: {short_description: Install, options: *options}
  configure: {short_description: Configure, options: *options}
  uninstall: {short_description: Uninstall, options: *options}
""",
    "defaults/main.yml": "---\nsixth_text: sixth\n",
    "tasks/main.yml": "---\n- name: Preflight\n  ansible.builtin.import_tasks: preflight.yml\n",
    "tasks/preflight.yml": "---\n- name: Files\n  ansible.builtin.import_tasks: files.yml\n",
    "tasks/files.yml": """---
- name: The sixth role's entry in the contract
  ansible.builtin.set_fact:
    xcluster_multus_plan: >-
      {{ xcluster_multus_plan | default({}) | combine({'sixth': {
           'files': [{'content': sixth_text, 'mode': '0644',
                      'dest': '/etc/xcluster-sixth/sixth.txt'}],
           'secrets': [], 'directories': [{'path': '/etc/xcluster-sixth', 'mode': '0755'}],
           'report': 'the sixth role'}}) }}
""",
    "tasks/install.yml": "---\n[]\n",
    "tasks/configure.yml": "---\n[]\n",
    "tasks/uninstall.yml": "---\n[]\n",
}


def test_a_sixth_role_is_one_directory_and_one_line(lab, tmp_path):
    co = tmp_path / "checkout"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.split(
        b"\0"
    )
    for rel in filter(None, (f.decode() for f in files)):
        src = os.path.join(REPO, rel)
        if os.path.lexists(src):
            os.makedirs(co / os.path.dirname(rel), exist_ok=True)
            shutil.copy2(src, co / rel, follow_symlinks=False)
    os.symlink(os.path.join(REPO, ".venv"), co / ".venv")
    # one directory ...
    for rel, text in SIXTH.items():
        (co / "roles" / "sixth" / rel).parent.mkdir(parents=True, exist_ok=True)
        (co / "roles" / "sixth" / rel).write_text(text)
    # ... and one line
    vars_file = co / "playbooks" / "vars" / "xcluster_multus.yml"
    text = vars_file.read_text()
    assert text.count("  - name: whereabouts\n") == 1  # after multus (and its item's other keys)
    vars_file.write_text(text.replace("  - name: whereabouts\n", "  - name: sixth\n  - name: whereabouts\n"))
    env = dict(lab.env, ANSIBLE_CONFIG=str(co / "ansible.cfg"))
    before = lab.changes()  # what the test before left (the daemons' logs)

    out = lab.play("site.yml", cwd=co, env=env)
    assert re.search(r"\s+sixth\s+the sixth role \| changed: /etc/xcluster-sixth/sixth.txt", out), out[-4000:]
    assert "vm-001:\\n  cni_plugins " in out  # the summary: one line per role (json-escaped newlines)
    assert lab.ssh("cat /etc/xcluster-sixth/sixth.txt") == "sixth"

    dest = tmp_path / "ovl.tar"
    lab.play("playbooks/ovl.yml", "-e", f"ovl_dest={dest}", cwd=co, env=env)
    with tarfile.open(dest) as t:
        names = t.getnames()
        assert "etc/xcluster-sixth/sixth.txt" in names, names
        assert t.extractfile("etc/xcluster-sixth/sixth.txt").read() == b"sixth"

    out = lab.play("playbooks/uninstall.yml", cwd=co, env=env)
    assert "CHANGED: removed /etc/xcluster-sixth" in out
    assert lab.ssh("ls /etc/xcluster-sixth 2>&1 || true").strip().endswith("No such file or directory")
    assert lab.changes() == before, "uninstall left something"


def test_site_and_ovl_take_prebuilt_binaries_from_gopath_bin(lab, tmp_path):
    """xcluster's way: go install ./cmd/... in the multus-service clone, no clone given to us:
    site.yml pushes $GOPATH/bin's binaries and says so; ovl/tar ships the same bytes."""
    clone = _gobuild_cases().make_tiny_clone(tmp_path / "clone")
    gobin = _gobuild_cases().go_install_gopath(clone, tmp_path / "gopath")
    env = dict(lab.env, GOPATH=str(tmp_path / "gopath"))
    want = {
        n: hashlib.sha256((gobin / n).read_bytes()).hexdigest()
        for n in ("multus-proxy", "multus-service-controller")
    }
    out = lab.play("site.yml", env=env)
    assert re.search(rf"multus_service\s+prebuilt from {re.escape(str(gobin))} \| changed: /bin/", out), out[
        -4000:
    ]
    got = lab.ssh("sha256sum /bin/multus-proxy /bin/multus-service-controller").split()
    assert {os.path.basename(got[1]): got[0], os.path.basename(got[3]): got[2]} == want
    dest = tmp_path / "multus.tar"
    p = subprocess.run(
        [os.path.join(REPO, "ovl", "tar"), str(dest)],
        env=dict(env, OVL_INVENTORY=lab.inventory, OVL_VARS=LAB_VARS),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert p.returncode == 0, p.stderr[-4000:]
    with tarfile.open(dest) as t:
        for name, sha in want.items():
            assert hashlib.sha256(t.extractfile(f"bin/{name}").read()).hexdigest() == sha
    out = lab.play("playbooks/uninstall.yml", env=env)
    assert (
        lab.ssh("ls /bin/multus-proxy /bin/multus-service-controller 2>&1 || true").count("No such file") == 2
    )
