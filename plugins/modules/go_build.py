#!/usr/bin/python
# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# Documentation only: the work is done on the controller by plugins/action/go_build.py.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: go_build
short_description: Build Go binaries from a local clone on the controller, once per clone content
version_added: "0.1.0"
description:
  - Runs entirely on the controller and never contacts the host it runs for. Use it with
    C(run_once=true) and C(delegate_to=localhost).
  - "Computes a stamp of the clone O(src): in a git work tree, the tree hash that C(git add -A)
    would stage now (tracked and untracked files that are not ignored: their content and
    modes), with HEAD and C(git describe --tags --always --long) (build scripts put them in
    the binaries' version). The clone's C(.git) is never written: a temporary index and a
    temporary object directory are used. Outside a git work tree, a hash of every file's path,
    executable bit and content. Paths in O(exclude) are left out."
  - "The build's cache directory is
    C(${XDG_CACHE_HOME:-~/.cache}/xcluster-multus/build/<name>/<key>/), where C(key) is the
    sha256 of the stamp, O(recipe), O(arch) and O(env). When it exists nothing is built and
    the task reports C(changed=false). Otherwise the recipe runs (under a lock, so concurrent
    runs build once), the binaries are copied into a temporary directory with C(build.log)
    and C(stamp.json), and it is renamed into place; the task reports C(changed=true)."
  - "Recipes: V(build-go-sh) runs the clone's own C(hack/build-go.sh) in the clone (whereabouts;
    it writes the clone's C(bin/), which is why C(bin) is always excluded from the stamp)
    and takes the binaries it wrote there; V(go-install) runs C(go install ./cmd/...) in the
    clone with C(GOBIN) in the cache, never the user's C(GOPATH/bin)."
  - The build runs with C(GOOS=linux), C(GOARCH=)O(arch), C(CGO_ENABLED=0) (static binaries for
    busybox nodes), C(GO) and the go command's directory first on C(PATH), then O(env).
  - A missing go command fails naming the PATH searched. A failing build fails with the
    build's own output (its last 80 lines; the whole log is kept beside the cache entry as
    C(failed-<key>.log)).
  - The four most recently used entries of a O(name) are kept; older ones are removed after a
    build (a whereabouts build takes about 190 MB).
  - The Go version is not part of the key (a cached build is used without Go on the
    controller); O(force=true) rebuilds.
  - Check mode changes nothing on nodes, so the build runs the same in check mode.
options:
  name:
    description: Cache subdirectory, the project's name (V(whereabouts), V(multus-service)).
    type: str
    required: true
  src:
    description: Absolute path of the clone on the controller.
    type: str
    required: true
  recipe:
    description: How to build (see above).
    type: str
    required: true
    choices: [build-go-sh, go-install]
  go:
    description: The go command, a name looked up on the controller's C(PATH) or a path.
    type: str
    default: go
  arch:
    description: Target architecture (C(GOARCH)).
    type: str
    default: amd64
  env:
    description: More environment variables for the build (part of the cache key).
    type: dict
    default: {}
  exclude:
    description: Paths in the clone left out of the stamp (build outputs).
    type: list
    elements: str
    default: []
  expect:
    description: Binary names the build must have made; fails naming the missing ones.
    type: list
    elements: str
    default: []
  force:
    description: Build even when the cache has a build of this content.
    type: bool
    default: false
  cache_dir:
    description:
      - "The cache directory (C(build/) below it). Default C(${XDG_CACHE_HOME:-~/.cache}/xcluster-multus)."
    type: path
extends_documentation_fragment:
  - xcluster.multus.controller_only
author:
  - xcluster.multus contributors (@xcluster-multus)
"""

EXAMPLES = r"""
- name: Build whereabouts from the user's clone, once per clone content
  xcluster.multus.go_build:
    name: whereabouts
    src: "{{ lookup('ansible.builtin.env', 'WHEREABOUTS_DIR') }}"
    recipe: build-go-sh
    expect: [whereabouts]
  run_once: true
  delegate_to: localhost
  register: _whereabouts_build

- name: Build multus-service's commands into our cache (not GOPATH/bin)
  xcluster.multus.go_build:
    name: multus-service
    src: /home/me/src/multus-service
    recipe: go-install
  run_once: true
  delegate_to: localhost
"""

RETURN = r"""
built:
  description: Whether this run built (false when the cache had this clone's build).
  returned: always
  type: bool
dir:
  description: The cache entry, C(<cache>/build/<name>/<key>).
  returned: always
  type: str
key:
  description: The cache key (sha256 of stamp, recipe, arch and env).
  returned: always
  type: str
stamp:
  description: The clone's stamp (C(kind) git or files, C(tree), C(head), C(describe)).
  returned: always
  type: dict
binaries:
  description: Binary name to its path in the cache entry.
  returned: always
  type: dict
  sample: {whereabouts: /root/.cache/xcluster-multus/build/whereabouts/0a1b.../bin/whereabouts}
names:
  description: The binary names, sorted.
  returned: always
  type: list
  elements: str
log:
  description: The build's log in the cache entry.
  returned: always
  type: str
seconds:
  description: How long the build took (when this entry was built).
  returned: always
  type: float
version:
  description: C(git describe) of the clone, null outside git.
  returned: always
  type: str
"""
