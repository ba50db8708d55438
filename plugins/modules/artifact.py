#!/usr/bin/python
# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# Documentation only: the work is done on the controller by plugins/action/artifact.py.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: artifact
short_description: Find or download, verify and unpack a release archive on the controller
version_added: "0.1.0"
description:
  - Runs entirely on the controller and never contacts the host it runs for (no connection
    is opened). Use it with C(run_once=true) and C(delegate_to=localhost), or in a play on
    C(localhost).
  - "Looks the archive up by its upstream file name in C($HOME/Downloads), then C($ARCHIVE)
    (when set), then each of O(dirs), then the download cache
    C(${XDG_CACHE_HOME:-~/.cache}/xcluster-multus/downloads/). The first file found is used."
  - If none is found and O(download=true), downloads it from O(url) once into the download
    cache (a temporary name first; renamed only after its sha256 matched; a lock file keeps
    concurrent runs from fetching it twice). The cache is per user and outlives runs, so
    tagged re-runs and later plays find it.
  - "Verifies the sha256: against O(checksum) when given, else against the pinned table
    (C(plugins/plugin_utils/checksums.yml), one entry per artifact, architecture and
    version, each naming its source). A download needs a known sha256: with no pinned value
    and no O(checksum) it fails and asks for one. A local archive whose version is pinned
    must match the pinned value (or O(checksum)); a local archive with no known sha256 is
    used with a warning. A mismatch fails naming the file, the expected and the actual sha256."
  - A missing archive fails with the list of every path searched and the URL it can be
    downloaded from.
  - "Unpacks once into C(${XDG_CACHE_HOME:-~/.cache}/xcluster-multus/unpacked/<sha256>/):
    into a temporary directory first, then renamed, so the directory is complete or absent
    even when several processes race (the first rename wins). Members that would land
    outside that directory (absolute paths, C(..), devices, escaping links) are refused.
    The archive's own layout is kept: flat for cni-plugins (C(./bridge), ...), wrapped in a
    directory for multus (C(multus-cni_<version>_linux_<arch>/multus-cni))."
  - Check mode changes nothing on nodes, so this action runs the same in check mode (lookup,
    download into the cache, verification, unpacking), and later tasks in C(--check) get the
    unpacked files. It always reports C(changed=false).
options:
  archive:
    description:
      - The archive's file name, for example V(cni-plugins-linux-amd64-v1.0.1.tgz) or
        V(multus-cni_3.8_linux_amd64.tar.gz). Upstream names tell the artifact, version and
        architecture; another name needs O(url) to be downloaded and is checked against
        O(checksum) only.
      - One of O(archive) and O(artifact) is required.
    type: str
  artifact:
    description:
      - The artifact whose upstream archive name is built from O(version) and O(arch).
    type: str
    choices: [cni-plugins, multus]
  version:
    description:
      - Release version, with or without the leading V(v) (V(v1.0.1), V(4.3.0), V(3.8)).
      - Default with O(artifact), the newest version pinned in the table for O(arch).
    type: str
  arch:
    description:
      - Architecture in the archive's name. Default V(amd64) with O(artifact).
    type: str
  checksum:
    description:
      - The archive's sha256 (V(sha256:<hex>) or V(<hex>)), or the absolute path (or
        V(file://) URL) of a C(sha256sum)-style file with a line for the archive.
      - When given it replaces the pinned value (for archives you built or mirror yourself).
    type: str
  url:
    description:
      - "Where to download the archive from when it is not found locally. A template:
        V({version}) (release tag), V({bare}) (version without V(v)), V({arch}) and
        V({archive}) are filled in. Set it to use a mirror, for example
        V(https://mirror.example/cni/{archive})."
      - Default, the upstream release URL of the artifact (GitHub releases).
    type: str
  dirs:
    description:
      - More directories to search, after C($HOME/Downloads) and C($ARCHIVE).
    type: list
    elements: path
    default: []
  download:
    description:
      - Whether to download the archive when it is not found locally. With V(false) a
        missing archive fails (offline use).
    type: bool
    default: true
  unpack:
    description:
      - Whether to unpack the archive into the cache.
    type: bool
    default: true
  cache_dir:
    description:
      - The cache directory (C(downloads/) and C(unpacked/) below it).
      - "Default C(${XDG_CACHE_HOME:-~/.cache}/xcluster-multus) of the user running Ansible."
    type: path
  timeout:
    description:
      - Seconds to wait for the download server.
    type: int
    default: 60
notes:
  - The pinned table is updated with C(scripts/update-checksums) from the upstream
    C(.sha256) / C(checksums.txt) files.
extends_documentation_fragment:
  - xcluster.multus.controller_only
author:
  - xcluster.multus contributors (@xcluster-multus)
"""

EXAMPLES = r"""
- name: The CNI plugins archive (local, or downloaded and checked against the pinned sha256)
  xcluster.multus.artifact:
    artifact: cni-plugins
    version: v1.0.1
  run_once: true
  delegate_to: localhost
  check_mode: false
  register: _cni_plugins_artifact

- name: Use the unpacked files
  ansible.builtin.debug:
    msg: "{{ _cni_plugins_artifact.root }}/bridge"

- name: Multus v3.8 from a mirror, with its checksum given
  xcluster.multus.artifact:
    archive: multus-cni_3.8_linux_amd64.tar.gz
    url: "https://mirror.example/multus/{archive}"
    checksum: "sha256:{{ multus_checksum }}"
  run_once: true
  delegate_to: localhost
  register: _multus_artifact
  # _multus_artifact.root ~ /multus-cni: the binary

- name: Offline, from configured directories only
  xcluster.multus.artifact:
    archive: cni-plugins-linux-amd64-v1.0.1.tgz
    dirs: [/srv/archives]
    download: false
  run_once: true
  delegate_to: localhost
"""

RETURN = r"""
archive:
  description: The archive's file name.
  returned: always
  type: str
  sample: multus-cni_3.8_linux_amd64.tar.gz
artifact:
  description: The artifact (null for a name that is not an upstream one).
  returned: always
  type: str
  sample: multus
version:
  description: The release version (tag form).
  returned: always
  type: str
  sample: v3.8
arch:
  description: The architecture.
  returned: always
  type: str
  sample: amd64
path:
  description: The archive file used.
  returned: always
  type: str
found_in:
  description:
    - Where it was found, V($HOME/Downloads), V($ARCHIVE), V(dirs), V(download cache), or
      V(download) (this run downloaded it).
  returned: always
  type: str
sha256:
  description: The archive's sha256.
  returned: always
  type: str
checksum_origin:
  description: What it was verified against (the pinned table and its source, the user's checksum), or null.
  returned: always
  type: str
url:
  description: The download URL (filled-in template), null when none is known.
  returned: always
  type: str
searched:
  description: Every path looked at, in order.
  returned: always
  type: list
  elements: str
downloaded:
  description: Whether this run downloaded the archive.
  returned: always
  type: bool
unpacked:
  description: The directory the archive is unpacked in (C(unpacked/<sha256>)).
  returned: when O(unpack=true)
  type: str
unpacked_now:
  description: Whether this run unpacked it (false when it already was).
  returned: when O(unpack=true)
  type: bool
layout:
  description: V(flat) (files at the top, cni-plugins) or V(wrapped) (all under one directory, multus).
  returned: when O(unpack=true)
  type: str
root:
  description: The directory holding the files (the wrapping directory for a wrapped archive).
  returned: when O(unpack=true)
  type: str
members:
  description: Paths of the files relative to RV(unpacked), as in the archive.
  returned: when O(unpack=true)
  type: list
  elements: str
  sample: [multus-cni_3.8_linux_amd64/LICENSE, multus-cni_3.8_linux_amd64/multus-cni]
files:
  description: Paths of the files relative to RV(root).
  returned: when O(unpack=true)
  type: list
  elements: str
  sample: [LICENSE, multus-cni]
"""
