#!/usr/bin/env python3
# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Bench push_files: Debian's CNI plugins (/usr/lib/cni, ~44 MB, 16 files) to 3 Python-less
nodes (dropbear + busybox in network namespaces, tests/unit/netns_target.py), in parallel.

Compares ssh compression (-C) on/off, one tar vs one put per file, gzip'd tar, and a slow
(tbf-limited) link. Every run starts from an empty destination and a new ssh connection.
Writes a markdown table to bench/push_files.md (or the path given). Needs root.

    .venv/bin/python bench/push_files.py [--reps 3] [--out bench/push_files.md]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "unit"))
from netns_target import Target  # noqa: E402

PAYLOAD = "/usr/lib/cni"
NODES = 3
DEST = "/tmp/bench/opt/cni/bin"
HOST = "{{ inventory_hostname }}"
BASE_SSH = "-o ControlMaster=auto -o ControlPersist=60s"


def payload_size():
    return sum(os.path.getsize(os.path.join(PAYLOAD, n)) for n in os.listdir(PAYLOAD))


def run(t, work, args, ssh_c, n):
    pb = os.path.join(work, f"play{n}.json")
    out = os.path.join(work, f"res{n}")
    play = [
        {
            "hosts": "xcluster",
            "gather_facts": False,
            "tasks": [
                {"xcluster.multus.push_files": args, "register": "r"},
                {
                    "ansible.builtin.copy": {"content": "{{ r | to_json }}", "dest": f"{out}-{HOST}"},
                    "delegate_to": "localhost",
                },
            ],
        }
    ]
    with open(pb, "w") as f:
        json.dump(play, f)
    env = dict(os.environ)
    env.update(
        PATH=os.path.join(REPO, ".venv", "bin") + os.pathsep + env["PATH"],
        ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
        ANSIBLE_SSH_ARGS=("-C " if ssh_c else "") + BASE_SSH,
        ANSIBLE_SSH_CONTROL_PATH_DIR=os.path.join(work, f"cp{n}"),  # a new connection each run
    )
    playbook = os.path.join(REPO, ".venv", "bin", "ansible-playbook")
    cmd = t.wrap([playbook, "-i", os.path.join(work, "inv"), pb])
    start = time.monotonic()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    took = time.monotonic() - start
    if p.returncode != 0:
        sys.exit(p.stdout + p.stderr)
    with open(f"{out}-vm-001") as f:
        res = json.load(f)
    return took, res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "push_files.md"))
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="xcm-bench-push-")
    t = Target(os.path.join(work, "target"), nodes=NODES).up()
    n = 0
    rows = []
    try:
        t.inventory(os.path.join(work, "inv"))
        plugins = {"src": PAYLOAD + "/", "dest": DEST, "mode": "0755"}
        cases = [
            ("tar, no ssh -C (default)", {"batch": True}, False, None),
            ("tar, ssh -C", {"batch": True}, True, None),
            ("one put per file, no ssh -C", {"batch": False}, False, None),
            ("one put per file, ssh -C", {"batch": False}, True, None),
            ("gzip'd tar, no ssh -C", {"batch": True, "compress": True}, False, None),
            ("unchanged rerun (default)", {"batch": True}, False, "rerun"),
            ("100 Mbit/s link: tar, no ssh -C", {"batch": True}, False, "100mbit"),
            ("100 Mbit/s link: tar, ssh -C", {"batch": True}, True, "100mbit"),
            ("100 Mbit/s link: gzip'd tar, no ssh -C", {"batch": True, "compress": True}, False, "100mbit"),
        ]
        for name, opts, ssh_c, special in cases:
            if special == "100mbit":
                for k in range(1, NODES + 1):
                    tbf = ["tc", "qdisc", "replace", "dev", f"v{k}", "root", "tbf", "rate", "100mbit",
                           "burst", "64kb", "latency", "200ms"]  # fmt: skip
                    subprocess.run(t.wrap(tbf), check=True)
            times, res = [], None
            for _ in range(a.reps):
                if special != "rerun":
                    for k in range(1, NODES + 1):
                        shutil.rmtree(t.node_path(k, "/tmp/bench"), ignore_errors=True)
                else:
                    n += 1
                    run(t, work, {"files": [plugins], **opts}, ssh_c, n)
                n += 1
                took, res = run(t, work, {"files": [plugins], **opts}, ssh_c, n)
                times.append(took)
            sent, trips = res["bytes_transferred"], res["round_trips"]
            rows.append((name, statistics.median(times), min(times), sent, trips))
            print(f"{name}: median {rows[-1][1]:.2f}s", flush=True)
        for k in range(1, NODES + 1):
            subprocess.run(t.wrap(["tc", "qdisc", "del", "dev", f"v{k}", "root"]), check=False)
    finally:
        t.down()
        shutil.rmtree(work, ignore_errors=True)
    size = payload_size()
    load = os.getloadavg()[0]
    lines = [
        "# push_files bench",
        "",
        f"Payload: `{PAYLOAD}` (Debian containernetworking-plugins), {len(os.listdir(PAYLOAD))} files, "
        f"{size / 1e6:.1f} MB, to {NODES} Python-less nodes in parallel (dropbear + busybox in network",
        "namespaces on one host: a veth LAN, no real wire). Wall time of `ansible-playbook` (about",
        "1.5 s of it is Ansible starting up), each run from an empty destination and a new ssh",
        f"connection; median and best of {a.reps}. Produced by `bench/push_files.py` on a 2-core machine",
        f"(load average {load:.1f} at the end of the run: other work shares the cores, so compare rows",
        "with each other, not with other machines).",
        "",
        "| case | median s | best s | bytes sent per node | round trips |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r[0]} | {r[1]:.2f} | {r[2]:.2f} | {r[3]} | {r[4]} |" for r in rows]
    with open(a.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
