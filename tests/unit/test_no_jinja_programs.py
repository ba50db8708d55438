# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Issue 15 item 3: no Jinja programs in task YAML. The logic lives in Python (plugins/plugin_utils,
behind thin filters and actions) and node-side shell in files shellcheck reads; task YAML under
roles/ and playbooks/ holds plain expressions ({{ ... }}) only, never a Jinja statement ({% ... %}).
Templates (roles/*/templates/*.j2) are Jinja by nature and not task YAML."""

from __future__ import annotations

import pathlib

REPO = pathlib.Path(__file__).resolve().parents[2]

# path -> (number of '{%' allowed, why). Every entry needs a reason; an entry that is no longer
# needed fails the test so that it is removed.
ALLOWED = {}


def task_yaml():
    """Every YAML file under roles/ and playbooks/ except the roles' templates."""
    for top in ("roles", "playbooks"):
        for path in sorted((REPO / top).rglob("*")):
            if path.suffix in {".yml", ".yaml"} and "templates" not in path.relative_to(REPO).parts:
                yield path


def statements(path, root=REPO):
    """The lines of ``path`` that hold a Jinja statement, as 'path:line: text' (path from ``root``)."""
    rel = path.relative_to(root).as_posix()
    return [
        f"{rel}:{n}: {line.strip()}"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "{%" in line
    ]


def test_the_check_sees_the_task_files():
    names = {p.relative_to(REPO).as_posix() for p in task_yaml()}
    assert {
        "playbooks/basic.yml",
        "playbooks/tasks/basic_api.yml",
        "roles/multus/tasks/configure.yml",
    } <= names
    assert not any("/templates/" in n for n in names)


def test_statements_finds_one(tmp_path):
    # the check itself can fail: a file with a statement is found, line by line
    (tmp_path / "t.yml").write_text("- ansible.builtin.raw: >-\n    {%- for x in y %}{{ x }}{% endfor %}\n")
    assert statements(tmp_path / "t.yml", tmp_path) == ["t.yml:2: {%- for x in y %}{{ x }}{% endfor %}"]
    (tmp_path / "ok.yml").write_text("- ansible.builtin.raw: echo {{ x | quote }}\n")
    assert statements(tmp_path / "ok.yml", tmp_path) == []


def test_no_jinja_statements_in_task_yaml():
    found = {}
    for path in task_yaml():
        lines = statements(path)
        if lines:
            found[path.relative_to(REPO).as_posix()] = lines
    wrong = []
    for rel, lines in found.items():
        allowed = ALLOWED.get(rel, (0, ""))[0]
        count = sum(line.split(":", 2)[2].count("{%") for line in lines)
        if count > allowed:
            wrong += [f"{line} (a Jinja statement: put the logic in plugins/plugin_utils)" for line in lines]
    stale = [
        f"{rel}: allowed {n} ({why}), has none: remove the entry"
        for rel, (n, why) in ALLOWED.items()
        if rel not in found
    ]
    assert not wrong, "\n".join(wrong)
    assert not stale, "\n".join(stale)
    assert all(why for _, why in ALLOWED.values())
