#!/usr/bin/python
# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# Documentation only: the work is done on the controller by plugins/action/ovl_archive.py.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ovl_archive
short_description: Write an xcluster overlay tar holding the files the live push installs
version_added: "0.1.0"
description:
  - Runs on the controller only and never contacts a node. Used by C(playbooks/ovl.yml) with
    C(run_once=true) and C(delegate_to=localhost).
  - Takes, for every host, the M(xcluster.multus.push_files) lists the roles compute in their
    C(tasks/files.yml), reads them with the same rules as the push (a C(src)
    directory stands for every file below it; default modes 0644, 0600 for secrets, the source
    file's bits for a C(src)), and writes one uncompressed tar with them,
    member names relative to C(/) (C(etc/cni/...)), owner root, as C(xc mkcdrom) and
    C(tar -C / -x) expect. Directories are members only when the lists give them (with their
    mode); tar makes the other missing ones (0755, as the push's C(mkdir -p)) and leaves existing
    ones alone, so a directory that is a symlink on the node (C(/bin -> usr/bin)) stays one.
  - One overlay serves every node, so every host must get the same files; a difference fails
    naming the path and the hosts. What differs per node is computed at boot by the overlay's
    init.d .rc instead - O(drop) leaves such files out, O(templates) puts a template in whose
    node placeholders the .rc replaces; for each host with an index the .rc's rendering must
    equal the live push's content byte for byte, or the task fails.
  - The archive is written to a temporary name beside O(dest), mode 0600 (it may hold
    kubeconfigs), then renamed.
options:
  dest:
    description: Where to write the tar on the controller.
    type: path
    required: true
  hosts:
    description:
      - A dict host name -> C({sources, index}). C(sources) is a list of C({name, files,
        directories}), C(name) the role (a relative C(src) is that role's C(files/)),
        C(files) and C(directories) as for M(xcluster.multus.push_files), all with state present.
        C(index) is the host's node index (needed for O(templates)).
      - The first host's files go into the archive; every other host's must be the same.
    type: dict
    required: true
  drop:
    description: Destinations left out of the archive (the .rc writes them at boot).
    type: list
    elements: str
    default: []
  templates:
    description:
      - A dict destination -> template text. The archive holds the text; at boot the .rc replaces
        every node placeholder in it (C(%) anywhere, C(x) right after a C(.) when not followed by
        C([0-9A-Za-z_])) by the node index.
    type: dict
    default: {}
  mtime:
    description: Modification time of every member (seconds since the epoch). Default now.
    type: int
attributes:
  check_mode:
    support: full
    description: Checks everything, writes nothing.
  diff_mode:
    support: none
    description: Nothing on a node changes; the archive is a new file on the controller.
  platform:
    support: full
    platforms: posix
    description: Runs on the controller only.
author:
  - xcluster.multus contributors (@xcluster-multus)
"""

EXAMPLES = r"""
- name: The overlay of one role's files
  xcluster.multus.ovl_archive:
    dest: /tmp/multus.tar
    hosts:
      vm-001:
        index: 1
        sources:
          - name: node_local
            files: "{{ _node_local_files }}"
            directories: "{{ _node_local_dirs }}"
    drop: [/etc/cni/node-local/.index]
  run_once: true
  delegate_to: localhost
"""

RETURN = r"""
dest:
  description: The archive's path.
  returned: always
  type: str
files:
  description: The destinations in the archive (files only).
  returned: always
  type: list
  elements: str
members:
  description: How many members (directories and files) the archive has.
  returned: always
  type: int
size:
  description: The archive's size in bytes.
  returned: when written
  type: int
sha256:
  description: The archive's sha256.
  returned: when written
  type: str
"""
