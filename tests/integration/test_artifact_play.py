# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The artifact action through ansible-playbook: controller-side only, in a play and in check
mode (plugin_utils/artifacts.py itself: tests/unit/plugins/plugin_utils/test_artifacts.py)."""

from __future__ import annotations

import json
import os
import subprocess

import yaml
from artifact_cases import CNI_NAME, MULTUS_NAME, put

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
VENV_BIN = os.path.join(REPO, ".venv", "bin")


def test_action_in_a_play_and_in_check_mode_never_contacts_the_node(archives, tmp_path, server):
    """A host whose ssh would fail (127.0.0.1 port 1): the action must not need it."""
    _, digest = archives[MULTUS_NAME]
    put(archives, MULTUS_NAME, server.dir)
    home = tmp_path / "home"
    (home / "Downloads").mkdir(parents=True)
    inv = tmp_path / "inv.yml"
    inv.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "hosts": {
                        "vm-001": {
                            "ansible_connection": "ssh",
                            "ansible_host": "127.0.0.1",
                            "ansible_port": 1,
                        }
                    }
                }
            }
        )
    )
    out = tmp_path / "r.json"
    play = [
        {
            "hosts": "vm-001",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "artifact",
                    "xcluster.multus.artifact": {
                        "archive": MULTUS_NAME,
                        "url": server.url + "/{archive}",
                        "checksum": digest,
                    },
                    "register": "r",
                },
                {
                    "name": "missing",
                    "xcluster.multus.artifact": {"archive": CNI_NAME, "download": False},
                    "register": "m",
                    "ignore_errors": True,
                },
                {
                    "name": "bad argument",
                    "xcluster.multus.artifact": {"artifact": "cni-plugins", "bogus": 1},
                    "register": "b",
                    "ignore_errors": True,
                },
                {
                    "name": "save",
                    "ansible.builtin.copy": {"content": "{{ [r, m, b] | to_json }}", "dest": str(out)},
                    "delegate_to": "localhost",
                    "check_mode": False,
                    "vars": {"ansible_connection": "local"},
                },
            ],
        }
    ]
    pb = tmp_path / "play.yml"
    pb.write_text(json.dumps(play))
    env = dict(
        os.environ,
        HOME=str(home),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "atmp"),
        PATH=VENV_BIN + os.pathsep + os.environ["PATH"],
    )
    env.pop("ARCHIVE", None)
    for check in ([], ["--check"]):
        p = subprocess.run(
            [os.path.join(VENV_BIN, "ansible-playbook"), "-i", str(inv), str(pb), *check],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            cwd=REPO,
        )
        assert p.returncode == 0, p.stdout + p.stderr
        r, m, b = json.loads(out.read_text())
        assert r["changed"] is False and r["sha256"] == digest and r["files"] == ["LICENSE", "multus-cni"]
        assert r["found_in"] == ("download" if not check else "download cache")
        assert m["failed"] and m["msg"].startswith(f"vm-001: archive {CNI_NAME} not found. Searched:\n")
        assert (
            "($ARCHIVE is not set)" in m["msg"] and "It can be downloaded from https://github.com" in m["msg"]
        )
        assert b["failed"] and "bogus" in b["msg"]
    assert len(server.requests) == 1
