# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""What a netns lab node wrote: its overlay upper dirs read from this host, and what changed
between two readings as the node sees it (the integration tests' shared helper)."""

from __future__ import annotations

import hashlib
import os
import stat

# dropbear's login records, written at every ssh login (not by the collection)
LOGIN_RECORDS = {"var/log/wtmp", "var/log/lastlog", "var/log/btmp", "var/run/utmp"}


def snapshot(root):
    """{relative path: (kind, mode, sha256 | link target | rdev)} of the tree under root."""
    out = {}
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(d, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            m = st.st_mode
            if stat.S_ISREG(m):
                with open(p, "rb") as f:
                    out[rel] = ("f", stat.S_IMODE(m), hashlib.sha256(f.read()).hexdigest())
            elif stat.S_ISDIR(m):
                out[rel] = ("d", stat.S_IMODE(m), None)
            elif stat.S_ISLNK(m):
                out[rel] = ("l", None, os.readlink(p))
            else:
                out[rel] = ("o", stat.S_IFMT(m), st.st_rdev)
    return out


def _copied_up(rel, entry):
    """A directory the overlay only copied up (a login record was written in it): the host's
    own, same mode, so the node sees no change. Not for the node's private tmp/."""
    if entry is None or entry[0] != "d" or rel.startswith("tmp/"):
        return False
    try:
        st = os.lstat("/" + rel)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == entry[1]


def delta(before, after):
    """{path: (before, after)} of what changed, as the node sees it."""
    out = {}
    for rel in sorted(set(before) | set(after)):
        a, b = before.get(rel), after.get(rel)
        if a == b or rel in LOGIN_RECORDS:
            continue
        if (a is None and _copied_up(rel, b)) or (b is None and _copied_up(rel, a)):
            continue
        out[rel] = (a, b)
    return out
