"""Shared cases for the node index / node-local tests: templates, paths, script runner.

Importing this module puts the checkout's collections/ on sys.path, so that
``ansible_collections.xcluster.multus`` imports the plugins from this checkout.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess

REPO = pathlib.Path(__file__).resolve().parents[2]
COLLECTIONS = REPO / "collections"

SCRIPT = REPO / "roles" / "node_local" / "files" / "node-local"
HOST_LOCAL = pathlib.Path("/usr/lib/cni/host-local")  # Debian's containernetworking-plugins
CNI_DIR = HOST_LOCAL.parent
VENV_BIN = REPO / ".venv" / "bin"
# Absolute paths, so that a test may run the script with an empty PATH.
SHELLS = {
    "busybox": [shutil.which("busybox") or "/bin/busybox", "sh"],
    "dash": [shutil.which("dash") or "/bin/dash"],
}

# xcluster's real node-local files (ovl/multus/default/etc/cni/node-local/*, '%' form).
XCLUSTER_DEFAULT = {
    "cniVersion": "0.4.0",
    "name": "default",
    "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "11.0.%.0/24"}], [{"subnet": "1100::11.0.%.0/120"}]],
    },
}
XCLUSTER_MACVLAN = {
    "cniVersion": "0.4.0",
    "name": "macvlan",
    "ipam": {
        "type": "host-local",
        "ranges": [
            [{"subnet": "15.0.0.0/16", "rangeStart": "15.0.%.0", "gateway": "15.0.0.0"}],
            [{"subnet": "4000::15.0.0.0/112", "rangeStart": "4000::15.0.%.0", "gateway": "4000::15.0.0.0"}],
        ],
    },
}
XCLUSTER_IPVLAN = json.loads(
    json.dumps(XCLUSTER_MACVLAN).replace("15.0", "16.0").replace("macvlan", "ipvlan")
)
# The seed README's default ('.x' form).
SEED_DEFAULT = {
    "cniVersion": "0.3.1",
    "name": "default",
    "ipam": {"type": "host-local", "ranges": [[{"subnet": "11.0.x.0/24", "gateway": "11.0.x.1"}]]},
}
# The lab's overrides (docs/DEVELOPMENT.md, address plan): 198.18.0.0/15 and 2001:db8::/32 only.
LAB_DEFAULT = {
    "cniVersion": "1.0.0",
    "name": "default",
    "ipam": {
        "type": "host-local",
        "ranges": [
            [{"subnet": "198.19.x.128/25", "gateway": "198.19.x.129"}],
            [{"subnet": "2001:db8:11::198.19.x.0/120"}],
        ],
    },
}
LAB_MACVLAN = {
    "cniVersion": "1.0.0",
    "name": "macvlan",
    "ipam": {
        "type": "host-local",
        "ranges": [
            [{"subnet": "198.18.0.0/16", "rangeStart": "198.18.x.0", "rangeEnd": "198.18.x.255"}],
            [
                {
                    "subnet": "2001:db8:15::198.18.0.0/112",
                    "rangeStart": "2001:db8:15::198.18.x.0",
                    "rangeEnd": "2001:db8:15::198.18.x.255",
                }
            ],
        ],
    },
}
LAB_IPVLAN = {
    "cniVersion": "1.0.0",
    "name": "ipvlan",
    "ipam": {
        "type": "host-local",
        "ranges": [
            [{"subnet": "198.19.0.0/17", "rangeStart": "198.19.x.0", "rangeEnd": "198.19.x.127"}],
            [
                {
                    "subnet": "2001:db8:16::198.19.0.0/112",
                    "rangeStart": "2001:db8:16::198.19.x.0",
                    "rangeEnd": "2001:db8:16::198.19.x.255",
                }
            ],
        ],
    },
}
# One line, several placeholders on it (xcluster's sed without 'g' replaced only the first).
ONE_LINE_TEXT = (
    '{"cniVersion":"1.0.0","name":"one-line","ipam":{"type":"host-local","ranges":'
    '[[{"subnet":"198.19.%.0/24","rangeStart":"198.19.%.10","rangeEnd":"198.19.x.20","gateway":"198.19.x.1"}],'
    '[{"subnet":"2001:db8:1:%::/64","rangeStart":"2001:db8:1:%::10","gateway":"2001:db8:1:%::1"}]],'
    '"routes":[{"dst":"198.18.x.0/24","gw":"198.19.%.1"}]},"note":"a.x.%.x.xy.x_.X%% 1:x::"}'
)
ONE_LINE = json.loads(ONE_LINE_TEXT)

# Strings at the edges of the placeholder rule.
TRICKY = [
    ".x", "..x", ".xx", ".x_", ".x9", ".xZ", ".X", "x.x", ".x%", "%%", "%.x", ".xé", "é.x€", "1100::x:0",
    ".x-", ".x.", "a.x.x.x", ".x\n.x", '".x"', "\\.x", "\x00.x%", "", "no placeholder", "x", "%",
]  # fmt: skip

# name -> template
TEMPLATES = {
    "xcluster-default": XCLUSTER_DEFAULT,
    "xcluster-macvlan": XCLUSTER_MACVLAN,
    "xcluster-ipvlan": XCLUSTER_IPVLAN,
    "seed-default": SEED_DEFAULT,
    "lab-default": LAB_DEFAULT,
    "lab-macvlan": LAB_MACVLAN,
    "lab-ipvlan": LAB_IPVLAN,
    "one-line": ONE_LINE,
}


def file_text(name):
    """The text of a template's node-local file: pretty JSON with tabs, or the one line."""
    if name == "one-line":
        return ONE_LINE_TEXT + "\n"
    return json.dumps(TEMPLATES[name], indent="\t") + "\n"


def plugin_config(cfg, version="1.0.0", name="net2", **extra):
    """A calling plugin's network config that uses node-local with ``cfg`` (None: no cfg)."""
    conf = {
        "cniVersion": version,
        "name": name,
        "type": "macvlan",
        "master": "eth3",
        "ipam": {"type": "node-local"} if cfg is None else {"type": "node-local", "cfg": cfg},
    }
    conf.update(extra)
    return conf


def run_script(stdin, env=None, shell="busybox", *, script=SCRIPT, prefix=(), timeout=60):
    """Run the node-local script; return CompletedProcess (text)."""
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    full_env.update(env or {})
    if not isinstance(stdin, str):
        stdin = json.dumps(stdin)
    return subprocess.run(
        [*prefix, *SHELLS[shell], str(script)],
        input=stdin,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )


def have(*tools):
    return all(shutil.which(t) for t in tools)
