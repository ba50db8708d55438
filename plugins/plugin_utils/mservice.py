# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Where the multus-service binaries come from, without Ansible.

xcluster's ovl/multus takes multus-proxy and multus-service-controller from ``$GOPATH/bin``
(after the seed's ``go install ./cmd/...`` in the clone). The multus_service role builds them
from a clone (``multus_service_src_dir`` / ``$MSERVICE_DIR``) or takes them prebuilt from a
directory (``multus_service_prebuilt_dir``, default ``$GOPATH/bin`` as xcluster's).

``multus_service_source``:
    auto      the clone's build when a clone is given; else the prebuilt binaries when BOTH are
              in the directory and executable; else none (the role is off under the switch auto)
    clone     the clone's build (a clone must be given)
    prebuilt  the binaries of the directory (both must be there and executable)

``select`` is pure (``states`` says what the directory holds); ``probe`` reads the directory.
"""

from __future__ import annotations

import json
import os
import stat

BINARIES = ("multus-proxy", "multus-service-controller")
SOURCES = ("auto", "clone", "prebuilt")
OK = "ok"


class MserviceError(ValueError):
    """Bad input: the message names the host, the value and what is expected."""


def default_prebuilt_dir(gopath, home):
    """``$GOPATH/bin`` as xcluster's tar reads it; go's own default GOPATH ``$HOME/go`` when
    GOPATH is unset; of a list (``a:b``), the first entry (where ``go install`` writes)."""
    first = (gopath or "").split(os.pathsep)[0]
    if not first:
        first = os.path.join(home, "go") if home else ""
    return os.path.join(first, "bin") if first else ""


def probe(directory):
    """{binary: state} of the directory: ``ok`` (a regular file, executable by this user),
    ``missing``, ``not a regular file``, ``not executable``."""
    out = {}
    for name in BINARIES:
        path = os.path.join(directory, name) if directory else name
        try:
            st = os.stat(path)
        except OSError:
            out[name] = "missing"
            continue
        if not stat.S_ISREG(st.st_mode):
            out[name] = "not a regular file"
        elif not os.access(path, os.X_OK):
            out[name] = "not executable"
        else:
            out[name] = OK
    return out


def _what(directory, states):
    return ", ".join(f"{os.path.join(directory, n)} {states.get(n, 'missing')}" for n in BINARIES)


def select(source, src_dir, prebuilt_dir, states, host="this host"):
    """The source of the binaries::

        {source: clone | prebuilt | none, dir: the clone or the directory, binaries: {name:
         path} (prebuilt only), report: one line for the summary, problem: why it cannot be
         used (None when it can)}

    Raises MserviceError on a value of the wrong kind (source, directories)."""
    if source not in SOURCES:
        raise MserviceError(
            f"host {host}: multus_service_source is {json.dumps(source)};"
            f" expected one of {', '.join(SOURCES)}"
        )
    for name, value in (("multus_service_src_dir", src_dir), ("multus_service_prebuilt_dir", prebuilt_dir)):
        if not isinstance(value, str):
            raise MserviceError(f"host {host}: {name} is {json.dumps(value)}; expected a path (a string)")
    if prebuilt_dir and not prebuilt_dir.startswith("/"):
        raise MserviceError(
            f"host {host}: multus_service_prebuilt_dir is {json.dumps(prebuilt_dir)}; expected an absolute"
            " path on the controller (default $GOPATH/bin, as xcluster's)"
        )
    if source == "clone" or (source == "auto" and src_dir):
        problem = None
        if not src_dir:
            problem = (
                f"host {host}: multus_service_source is clone but multus_service_src_dir is empty (and"
                " $MSERVICE_DIR is unset); expected the path of your multus-service clone (git clone"
                " https://github.com/k8snetworkplumbingwg/multus-service.git; archived upstream, 2024)"
            )
        return {
            "source": "clone",
            "dir": src_dir,
            "binaries": {},
            "report": f"built from the clone {src_dir}",
            "problem": problem,
        }
    ready = all(states.get(n) == OK for n in BINARIES)
    if source == "prebuilt" or ready:
        problem = None
        if not prebuilt_dir:
            problem = (
                f"host {host}: multus_service_source is prebuilt but multus_service_prebuilt_dir is empty and"
                " neither $GOPATH nor $HOME is set; expected the directory that holds multus-proxy and"
                " multus-service-controller"
            )
        elif not ready:
            problem = (
                f"host {host}: multus_service_source is prebuilt, multus_service_prebuilt_dir is"
                f" {json.dumps(prebuilt_dir)}: {_what(prebuilt_dir, states)}; expected both binaries there"
                " and executable (go install ./cmd/... in your multus-service clone puts them in $GOPATH/bin)"
            )
        return {
            "source": "prebuilt",
            "dir": prebuilt_dir,
            "binaries": {n: os.path.join(prebuilt_dir, n) for n in BINARIES},
            "report": f"prebuilt from {prebuilt_dir}",
            "problem": problem,
        }
    where = (
        _what(prebuilt_dir, states) if prebuilt_dir else "multus_service_prebuilt_dir empty, no $GOPATH/$HOME"
    )
    return {
        "source": "none",
        "dir": "",
        "binaries": {},
        "report": "not installed: no clone (multus_service_src_dir / $MSERVICE_DIR) and no prebuilt binaries",
        "problem": (
            f"host {host}: no multus-service source: multus_service_src_dir is empty (and $MSERVICE_DIR is"
            f" unset), and multus_service_prebuilt_dir {json.dumps(prebuilt_dir)} does not hold both"
            f" binaries ({where}); expected a clone (git clone"
            " https://github.com/k8snetworkplumbingwg/multus-service.git; archived upstream, 2024) or"
            " multus-proxy and multus-service-controller in $GOPATH/bin (go install ./cmd/... in the clone)"
        ),
    }


def choose(source, src_dir, prebuilt_dir, gopath, home, *, required=False, host="this host"):
    """select() over the controller's directory (probe), prebuilt_dir empty meaning the default
    (default_prebuilt_dir); with ``required``, a problem raises."""
    if isinstance(prebuilt_dir, str) and not prebuilt_dir:
        prebuilt_dir = default_prebuilt_dir(gopath, home)
    states = probe(prebuilt_dir) if isinstance(prebuilt_dir, str) and prebuilt_dir.startswith("/") else {}
    out = select(source, src_dir, prebuilt_dir, states, host)
    if required and out["problem"]:
        raise MserviceError(out["problem"])
    return out
