"""Shared cases for the go_build logic and the whereabouts / multus_service roles tests.

``tiny_clone``: a small Go project in a git repository, shaped like the real clones (a
``hack/build-go.sh`` that writes ``bin/`` as whereabouts' does, commands in ``./cmd/`` for
``go install ./cmd/...`` as multus-service has, CRD files in ``doc/crds``), so the real go
command builds it in seconds. The real clones are built by the molecule scenario
``whereabouts`` on the lab.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

REPO = pathlib.Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"

GO = shutil.which("go") or ("/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else None)
XCM_CACHE = (
    pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "xcluster-multus"
)

# A daemon stand-in: --help prints its flags; otherwise it writes its arguments and sleeps
# (or exits 3 with a message when asked to, like a daemon that finds no API server).
DAEMON = """package main

import (
	"os"
	"strings"
	"time"
)

func main() {
	args := strings.Join(os.Args[1:], " ")
	if args == "--help" {
		os.Stdout.WriteString("Usage of NAME:\\n  --kubeconfig string\\n" +
			"  --container-runtime-endpoint string\\n")
		return
	}
	os.Stdout.WriteString("NAME started: " + args + "\\n")
	if os.Getenv("TINY_EXIT") != "" || strings.Contains(args, "exit-now") {
		os.Stderr.WriteString("NAME: cannot reach the API server\\n")
		os.Exit(3)
	}
	for {
		time.Sleep(time.Hour)
	}
}
"""

WHEREABOUTS = """package main

import "os"

var Version = "unset"

func main() {
	if os.Getenv("CNI_COMMAND") == "VERSION" {
		os.Stdout.WriteString(`{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"],` +
			`"v":"` + Version + `"}`)
		return
	}
	os.Exit(1)
}
"""

BUILD_GO_SH = """#!/usr/bin/env bash
# like whereabouts' hack/build-go.sh: the version from git, binaries into bin/
set -eu
VERSION=$(git describe --tags --always)
echo "VERSION: ${VERSION}"
${GO:-go} build -ldflags "-X main.Version=${VERSION}" -o bin/whereabouts ./cmd/whereabouts
${GO:-go} build -o bin/ip-control-loop ./cmd/multus-proxy
"""

CRD = """apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {name}.whereabouts.cni.cncf.io
"""


def git(repo, *args):
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.invalid",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.invalid",
    )
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false", *args],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout.strip()


def go_env(base=None):
    """The environment of a build: the project's Go caches, no network, the local toolchain."""
    env = dict(os.environ if base is None else base)
    env.update(
        GOCACHE=str(XCM_CACHE / "go" / "build-cache"),
        GOMODCACHE=str(XCM_CACHE / "go" / "modcache"),
        GOFLAGS="-modcacherw",
        GOTOOLCHAIN="local",
        GOPROXY="off",
    )
    if GO:
        env["PATH"] = os.path.dirname(GO) + os.pathsep + env.get("PATH", "")
    return env


def make_tiny_clone(dest, *, crds=("ippools", "overlappingrangeipreservations", "nodeslicepools")):
    dest = pathlib.Path(dest)
    (dest / "hack").mkdir(parents=True)
    (dest / "go.mod").write_text("module example.invalid/tiny\n\ngo 1.21\n")
    for name in ("multus-proxy", "multus-service-controller"):
        (dest / "cmd" / name).mkdir(parents=True)
        (dest / "cmd" / name / "main.go").write_text(DAEMON.replace("NAME", name))
    (dest / "cmd" / "whereabouts").mkdir(parents=True)
    (dest / "cmd" / "whereabouts" / "main.go").write_text(WHEREABOUTS)
    script = dest / "hack" / "build-go.sh"
    script.write_text(BUILD_GO_SH)
    script.chmod(0o755)
    (dest / "doc" / "crds").mkdir(parents=True)
    for name in crds:
        (dest / "doc" / "crds" / f"whereabouts.cni.cncf.io_{name}.yaml").write_text(CRD.format(name=name))
    (dest / "doc" / "crds" / "daemonset-install.yaml").write_text("kind: DaemonSet\n")
    (dest / ".gitignore").write_text("bin/\n*.log\n")
    git(dest, "init", "-q", ".")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "tiny")
    git(dest, "tag", "v0.0.1")
    return dest


def go_install_gopath(clone, gopath):
    """What xcluster's seed does in a multus-service clone: go install ./cmd/... with GOPATH set,
    so the binaries land in $GOPATH/bin (returned)."""
    gopath = pathlib.Path(gopath)
    env = go_env()
    env["GOPATH"] = str(gopath)
    env.pop("GOBIN", None)
    subprocess.run(
        [GO, "install", "./cmd/..."], cwd=clone, env=env, check=True, capture_output=True, timeout=600
    )
    return gopath / "bin"
