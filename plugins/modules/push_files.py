#!/usr/bin/python
# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# Documentation only: the work is done on the controller by plugins/action/push_files.py.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: push_files
short_description: Put files on a node that has no Python, only what differs, atomically
version_added: "0.1.0"
description:
  - Delivers files (from the controller or given as content) to a node using only the
    connection (C(put_file) and shell commands). No module is sent, so the node needs no
    Python, only C(sh) and the busybox applets C(sha256sum), C(stat), C(mkdir), C(mv),
    C(chmod), C(chown), C(rm), C(rmdir), C(tar), C(cat), C(mktemp), C(sleep).
  - "Round trips per host: one command reads every destination (kind, sha256, mode, owner)
    and lists leftovers of interrupted runs. If nothing differs, that is all. Otherwise the
    files that differ are uploaded (several files: one tar, one C(put_file); one file: the
    file itself) into O(upload_dir), and one more command finalizes. When files from the
    controller (O(files[].src), binaries the same on every host) of at least 1 MiB go together
    with rendered O(files[].content) (configs that differ per host), they are two tars, two
    C(put_file): the controller's files in one, packed once for every host of the run, the
    content in the other."
  - "Records, so that a rerun does not hash what it installed: after installing, the node
    keeps a record per file in O(state_dir): its sha256 and what C(stat) showed right after
    the install (size, inode, device, mtime and ctime with nanoseconds, path). The read step
    hashes a file only when its C(stat) differs from its record; otherwise the record's sha256
    is the file's. Every write to a file, and every change of its mode, owner or links, sets its
    ctime to the current time (and only setting the clock back gives an older one), so a file
    changed in place, even with its size and mtime put back, is hashed and replaced. Records are
    written only once the filesystem's clock has moved past the files' ctimes (a marker written
    beside them says so), so a write in the same clock tick as the install is seen too. Secret
    files get no record (always hashed). A file found right by hashing whose record is missing
    or stale (installed by an overlay or another tool, touched) gets its record with one more
    command, which is no change. Not seen: a write landing between push_files' own rename of
    the file and its C(stat) a few milliseconds later, and one that also sets the clock back."
  - "The finalize step unpacks with the node's own C(tar) into a temporary directory
    C(<dest dir>/.xcm-tmp.XXXXXX) on the same filesystem as the destination, sets mode and
    owner there, then renames each file into place with C(mv -f). A destination is therefore
    always either its old or its new complete content, never half-written. Temporaries are
    removed on exit, and whatever an interrupted run left (C(.xcm-tmp.*) beside the
    destinations, C(.xcm-up.<login user>.*) in O(upload_dir)) is removed by the next run
    (reported in RV(cleaned) and as a change)."
  - Files that differ only in mode or owner are fixed in place, without a transfer.
  - On the controller, the checksum of each source file and the tar of a given set of files
    are made once per run and shared by every host that needs them (in Ansible's local
    temporary directory, removed when the run ends), so many nodes do not cost many packs.
  - Files with O(files[].secret=true) never show their content or checksum in the result,
    in C(--diff) or in C(-vvv) output (the node's answer to the read step is censored, like
    C(no_log), whenever a secret item is present). When a secret file is transferred, the
    upload goes into a new directory in O(upload_dir) that only the login user can enter
    (one more round trip), so that no other user can read it before it is in place.
  - Other files in the destination directories are left alone.
  - "C(become): the upload always goes as the login user to O(upload_dir) (default C(/tmp),
    which every user can write); the read and finalize steps run with C(become), so the new
    files belong to the become user (or to O(files[].owner)), never to the login user. The
    login user must be able to write O(upload_dir); the become user must be able to read
    what the login user uploaded (true for root). Becoming a different unprivileged user is
    not supported."
  - Works with the C(ssh) connection and every C(ssh_transfer_method) (C(sftp), C(scp),
    C(piped), C(smart)), and with the C(local) connection.
options:
  files:
    description:
      - The files to deliver or remove.
      - A O(files[].src) that is a directory stands for every regular file below it
        (symlinks followed), placed under O(files[].dest) with the same relative path.
    type: list
    elements: dict
    default: []
    suboptions:
      src:
        description:
          - Path on the controller of a file or a directory. A relative path is looked up
            like the C(copy) module does (the role's C(files/), then the playbook's).
          - Exactly one of O(files[].src) and O(files[].content) when O(files[].state=present).
        type: path
      content:
        description:
          - The file's content as a string (a config rendered on the controller).
        type: str
      dest:
        description:
          - Absolute path on the node. Its directory is created (C(mkdir -p)) when missing.
          - Names starting with C(.xcm-tmp.) or C(.xcm-up.) are reserved.
        type: str
        required: true
      mode:
        description:
          - Permission bits as a quoted octal string, for example V('0755'). Integers are refused.
          - Default, the source file's permission bits for O(files[].src), V('0644') for
            O(files[].content) (V('0600') when O(files[].secret=true)).
        type: str
      owner:
        description:
          - Owner (name or numeric id). When omitted ownership is not managed; new and
            replaced files belong to the user that runs the finalize step.
        type: str
      group:
        description:
          - Group (name or numeric id); not managed when omitted.
        type: str
      secret:
        description:
          - Never show this file's content or checksum (result, diff, C(-vvv)).
        type: bool
        default: false
      state:
        description:
          - V(absent) removes the file (no O(files[].src) or O(files[].content) then).
        type: str
        choices: [present, absent]
        default: present
  directories:
    description:
      - Directories to create (C(mkdir -p)) and give a mode/owner, or to remove.
      - A string is short for a mapping with only O(directories[].path).
    type: list
    elements: raw
    default: []
    suboptions:
      path:
        description: Absolute path on the node.
        type: str
        required: true
      mode:
        description: Permission bits, a quoted octal string; not managed when omitted.
        type: str
      owner:
        description: Owner; not managed when omitted.
        type: str
      group:
        description: Group; not managed when omitted.
        type: str
      state:
        description:
          - V(absent) removes the directory with everything in it (C(rm -rf)), as
            M(ansible.builtin.file) does.
        type: str
        choices: [present, absent]
        default: present
  upload_dir:
    description:
      - Directory on the node where the login user uploads (a tar or single files) before
        the finalize step moves the content into place. Must be writable by the login user.
    type: str
    default: /tmp
  batch:
    description:
      - When several files differ, send them as one tar (one C(put_file); two, see above). V(false) sends
        each file with its own C(put_file) (slower; kept for comparison and for nodes whose
        C(tar) is broken).
    type: bool
    default: true
  state_dir:
    description:
      - Directory on the node for the records of what was installed (one small file per
        destination, at the destination's path below it, mode 0600, in directories made mode
        0700). V('') keeps no records, and every file present is hashed at every read.
      - Records that cannot be written (a read-only node, no permission) only cost hashing.
    type: str
    default: /var/lib/xcluster-multus/push
  compress:
    description:
      - Compress the tar with gzip (level 1); the node's C(tar) must support C(-z).
        On a LAN this costs more time than it saves (see C(bench/push_files.md)).
    type: bool
    default: false
notes:
  - Check mode is supported. The read step runs, nothing is uploaded or changed, and the
    result says what would change.
  - "Diff mode is supported, as M(ansible.builtin.copy) and M(ansible.builtin.template) show it:
    a text file (UTF-8 without NUL bytes, old and new content at most C(MAX_FILE_SIZE_FOR_DIFF)
    bytes) shows a unified diff of its content, headers the destination and the source (plus an
    entry for mode/owner when they change too); the node's old content of those files is read in
    one more command (one more round trip, only with C(--diff)). Other files (binaries, large
    files) show sha256, size, mode and owner before and after. Secret files never show content,
    checksum or size and are never read back."
  - "A failed upload says why: the node's O(upload_dir) is full (with the room left and the room
    needed), the connection timed out, the connection was closed, or the node refused the file.
    Its partial upload is removed at once when the node still answers (one more command); when
    the connection is gone it stays in O(upload_dir) and the next run removes it (RV(cleaned)).
    A finalize step that fails says so too (for example a full disk at the destination), and
    removes its temporaries and the upload on exit."
  - "Round trips: 1 when nothing differs; 3 when files differ (read, upload, finalize), 4 when
    secret files are among them; 2 for mode/owner-only changes or removals, and when only
    records are written; with O(batch=false), one upload per file."
  - On a LAN, ssh compression (Ansible's default C(ssh_args) contain C(-C)) slows large
    transfers down; this collection's C(ansible.cfg) leaves it out.
attributes:
  check_mode:
    support: full
    description: Reads the node, reports what would change, changes and transfers nothing.
  diff_mode:
    support: full
    description: A unified diff of text files' content; sha256, size, mode and owner of other files.
  platform:
    support: full
    platforms: posix
    description: Any POSIX node with sh and the busybox (or GNU) applets listed above.
author:
  - xcluster.multus contributors (@xcluster-multus)
"""

EXAMPLES = r"""
- name: Install the CNI plugins unpacked on the controller
  xcluster.multus.push_files:
    files:
      - src: "{{ _cni_plugins_unpacked }}/"
        dest: /opt/cni/bin/
        mode: "0755"

- name: A rendered config and a secret kubeconfig
  xcluster.multus.push_files:
    directories:
      - path: /etc/cni/net.d/whereabouts.d
        mode: "0755"
    files:
      - content: "{{ _whereabouts_conf | to_nice_json }}"
        dest: /etc/cni/net.d/whereabouts.d/whereabouts.conf
      - content: "{{ _kubeconfig }}"
        dest: /etc/cni/net.d/whereabouts.d/whereabouts.kubeconfig
        secret: true

- name: Uninstall
  xcluster.multus.push_files:
    files:
      - dest: /opt/cni/bin/multus
        state: absent
    directories:
      - path: /etc/cni/node-local
        state: absent
"""

RETURN = r"""
changed_files:
  description: Destinations whose content, mode or owner changed, or that were removed.
  returned: always
  type: list
  elements: str
  sample: ["/opt/cni/bin/bridge"]
transferred:
  description: Destinations whose content was uploaded (would be, in check mode).
  returned: always
  type: list
  elements: str
attributes_fixed:
  description: Destinations whose mode/owner only were fixed, without a transfer.
  returned: always
  type: list
  elements: str
removed:
  description: Destinations removed (O(files[].state=absent)).
  returned: always
  type: list
  elements: str
directories:
  description: Directories created, fixed or removed.
  returned: always
  type: list
  elements: str
cleaned:
  description: Leftovers of interrupted runs removed (or to be removed, in check mode).
  returned: always
  type: list
  elements: str
hashed:
  description: Files the node hashed (their C(stat) did not match a record, or they are secret).
  returned: always
  type: list
  elements: str
bytes_transferred:
  description: Bytes uploaded (the tars' sizes, or the sum of the single files). 0 in check mode.
  returned: always
  type: int
  sample: 0
round_trips:
  description: Connection round trips used (commands plus uploads).
  returned: always
  type: int
  sample: 1
transport:
  description: V(tar) (tars for several files), V(files) (one put per file) or null (nothing uploaded).
  returned: always
  type: str
"""
