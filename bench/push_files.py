#!/usr/bin/env python3
# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Bench push_files: Debian's CNI plugins (/usr/lib/cni, ~46 MB, 16 files) to 3 Python-less
nodes in parallel.

Nodes: by default a netns lab of its own (tests/lab through tests/helpers/labtarget.py:
dropbear, the host's userland); with --lab-inventory, the nodes of a running lab
(tests/lab/lab up; LAB=vm gives qemu VMs with a real busybox userland).

Compares ssh compression (-C) on/off, one tar vs one put per file, gzip'd tar, an unchanged
rerun and (namespace nodes only) a 100 Mbit/s link. Each run starts from an empty destination
and a new ssh connection. The time is the push task's wall time across all nodes (between two
run_once timestamps), without Ansible's start-up. Appends a markdown section to --out. Needs root.

    .venv/bin/python bench/push_files.py [--reps 3] [--out bench/push_files.md]
    .venv/bin/python bench/push_files.py --lab-inventory /run/xcluster-multus-lab/xcm/inventory.yml
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "helpers"))  # a script, not a test: no pytest pythonpath
from labtarget import Target  # noqa: E402

PAYLOAD = "/usr/lib/cni"
NODES = 3
ROOT = "/tmp/xcm-bench"
DEST = ROOT + "/opt/cni/bin"
STAMP = "{{ now().timestamp() }}"


def run(ctx, args, ssh_c, fresh):
    ctx["n"] += 1
    n, work = ctx["n"], ctx["work"]
    out = os.path.join(work, f"res{n}.json")
    cp = os.path.join(work, "cp", f"{n}-%C")
    ssh_args = "-C" if ssh_c else "-o Compression=no"
    ssh_args += f" -o ControlMaster=auto -o ControlPersist=60s -o ControlPath={cp}"
    tasks = [{"ansible.builtin.raw": f"rm -rf {ROOT}", "changed_when": True}] if fresh else []
    tasks += [
        {"ansible.builtin.set_fact": {"t0": STAMP}, "run_once": True},
        {"xcluster.multus.push_files": args, "register": "r"},
        {"ansible.builtin.set_fact": {"t1": STAMP}, "run_once": True},
        {
            "ansible.builtin.copy": {"content": "{{ {'r': r, 't0': t0, 't1': t1} | to_json }}", "dest": out},
            "delegate_to": "localhost",
            "run_once": True,
        },
    ]
    pb = os.path.join(work, f"play{n}.json")
    with open(pb, "w") as f:
        json.dump([{"hosts": "xcluster", "gather_facts": False, "tasks": tasks}], f)
    env = dict(os.environ)
    env.update(PATH=os.path.join(REPO, ".venv", "bin") + os.pathsep + env["PATH"],
               ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"))  # fmt: skip
    cmd = [os.path.join(REPO, ".venv", "bin", "ansible-playbook"), "-i", ctx["inv"], pb]
    cmd += ["-e", json.dumps({"ansible_ssh_args": ssh_args})]
    p = subprocess.run(ctx["wrap"](cmd), env=env, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        sys.exit(p.stdout + p.stderr)
    with open(out) as f:
        res = json.load(f)
    return float(res["t1"]) - float(res["t0"]), res["r"]


def close_masters(ctx):
    for sock in glob.glob(os.path.join(ctx["work"], "cp", "*")):
        subprocess.run(ctx["wrap"](["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "x"]),
                       capture_output=True, check=False)  # fmt: skip


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--lab-inventory")
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "push_files.md"))
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="xcm-bench-push-")
    os.makedirs(os.path.join(work, "cp"))
    ctx = {"work": work, "n": 0}
    t = None
    rows = []
    try:
        if a.lab_inventory:
            ctx.update(inv=a.lab_inventory, wrap=lambda c: c)
            where = f"the lab's nodes ({a.lab_inventory})"
        else:
            t = Target(os.path.join(work, "target"), nodes=NODES).up()
            ctx.update(inv=t.inventory(os.path.join(work, "inv")), wrap=lambda c: c)
            where = f"{NODES} netns lab nodes (tests/lab: dropbear, the host's userland)"
        plugins = {"src": PAYLOAD + "/", "dest": DEST, "mode": "0755"}
        cases = [
            ("tar, no ssh -C (default)", {}, False, None),
            ("tar, ssh -C", {}, True, None),
            ("one put per file, no ssh -C", {"batch": False}, False, None),
            ("one put per file, ssh -C", {"batch": False}, True, None),
            ("gzip'd tar, no ssh -C", {"compress": True}, False, None),
            ("unchanged rerun (default)", {}, False, "rerun"),
        ]
        if t is not None:
            cases += [
                ("100 Mbit/s link: tar, no ssh -C", {}, False, "100mbit"),
                ("100 Mbit/s link: tar, ssh -C", {}, True, "100mbit"),
                ("100 Mbit/s link: gzip'd tar, no ssh -C", {"compress": True}, False, "100mbit"),
            ]
        for name, opts, ssh_c, special in cases:
            if special == "100mbit":
                for k in range(1, NODES + 1):
                    tbf = ["tc", "qdisc", "replace", "dev", t.port(k), "root", "tbf", "rate", "100mbit",
                           "burst", "64kb", "latency", "200ms"]  # fmt: skip
                    subprocess.run(t.in_fabric(tbf), check=True)
            times, res = [], None
            for _rep in range(a.reps):
                args = {"files": [plugins], **opts}
                if special == "rerun":
                    run(ctx, args, ssh_c, fresh=True)
                took, res = run(ctx, args, ssh_c, fresh=special != "rerun")
                times.append(took)
            sent, trips = res["bytes_transferred"], res["round_trips"]
            rows.append((name, statistics.median(times), min(times), sent, trips))
            print(f"{name}: median {rows[-1][1]:.2f}s", flush=True)
    finally:
        close_masters(ctx)
        if t is not None:
            t.down()
        shutil.rmtree(work, ignore_errors=True)
    size = sum(os.path.getsize(os.path.join(PAYLOAD, n)) for n in os.listdir(PAYLOAD))
    load = os.getloadavg()[0]
    lines = [
        f"### {where}",
        "",
        f"Payload `{PAYLOAD}` (Debian containernetworking-plugins): {len(os.listdir(PAYLOAD))} files, "
        f"{size / 1e6:.1f} MB, to every node in parallel. Time of the push task alone (no Ansible "
        f"start-up), each run on an empty destination over a new ssh connection; median and best of "
        f"{a.reps}. 2-core machine, load average {load:.1f} at the end (other work shares the cores: "
        "compare rows with each other).",
        "",
        "| case | median s | best s | bytes sent per node | round trips |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r[0]} | {r[1]:.2f} | {r[2]:.2f} | {r[3]} | {r[4]} |" for r in rows]
    with open(a.out, "a") as f:
        f.write("\n".join(lines) + "\n\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
