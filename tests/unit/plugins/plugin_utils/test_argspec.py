# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The actions' arguments are their module stubs' DOCUMENTATION: every documented option is
accepted with its type, choices and default; undocumented ones, wrong types and wrong choices
are refused, naming host and action; no action restates a spec of its own."""

from __future__ import annotations

import importlib
import os
import re

import pytest
import yaml
from ansible_collections.xcluster.multus.plugins.plugin_utils import argspec, artifacts, gobuild

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
ACTIONS = ("push_files", "artifact", "go_build", "ovl_archive")
H = "vm-001"
SAMPLES = {  # a value of each documented type, and one that type refuses (str: Ansible converts all)
    "str": ("text", None),
    "path": ("/some/path", None),
    "int": (7, "seven"),
    "bool": (True, "maybe"),
    "dict": ({"k": "v"}, "not-a-dict"),
    "list": ([], {"a": 1}),
    "raw": ("anything", None),
}
RULES = {"artifact": {"required_one_of": [["archive", "artifact"]]}}  # what the actions add


def doc_options(module):
    stub = importlib.import_module(f"ansible_collections.xcluster.multus.plugins.modules.{module}")
    return yaml.safe_load(stub.DOCUMENTATION)["options"]


def minimal(module):
    """The required options (and what the action's cross-field rules need), sample values."""
    out = {}
    for name, opt in doc_options(module).items():
        if opt.get("required"):
            out[name] = opt["choices"][0] if "choices" in opt else SAMPLES[opt.get("type", "str")][0]
    if module == "artifact":
        out["archive"] = "/a.tgz"
    return out


def cases():
    for module in ACTIONS:
        for name, opt in doc_options(module).items():
            yield module, name, opt


@pytest.mark.parametrize(
    ("module", "name", "opt"), list(cases()), ids=lambda x: x if isinstance(x, str) else ""
)
def test_every_documented_option_is_validated_as_documented(module, name, opt):
    base = minimal(module)
    kind = opt.get("type", "str")
    good, bad = SAMPLES[kind]
    if "choices" in opt:
        good = opt["choices"][-1]
    if kind == "list" and opt.get("elements") == "dict":
        sub = opt.get("suboptions", {})
        good = [{k: (o["choices"][0] if "choices" in o else SAMPLES[o.get("type", "str")][0])
                 for k, o in sub.items() if o.get("required")}]  # fmt: skip
    args = argspec.validate(H, module, {**base, name: good}, **RULES.get(module, {}))
    if kind == "list" and opt.get("elements") == "dict":  # each item gets its suboptions' defaults
        assert args[name] == [{**{k: o.get("default") for k, o in opt["suboptions"].items()}, **good[0]}]
    else:
        assert args[name] == good
    if not opt.get("required"):  # omitted: the documented default (None when none is)
        rest = {k: v for k, v in base.items() if k != name}
        if module == "artifact" and name == "archive":  # one of archive, artifact is required
            rest["artifact"] = "multus"
        args = argspec.validate(H, module, rest, **RULES.get(module, {}))
        assert args.get(name) == opt.get("default"), (name, args.get(name))
    if bad is not None:
        with pytest.raises(argspec.ArgSpecError, match=f"^{H}: {module}: .*{name}"):
            argspec.validate(H, module, {**base, name: bad}, **RULES.get(module, {}))
    if "choices" in opt:
        with pytest.raises(argspec.ArgSpecError, match=f"^{H}: {module}: .*{name}.*one of"):
            argspec.validate(H, module, {**base, name: "no-such-choice"}, **RULES.get(module, {}))
    if opt.get("required"):
        with pytest.raises(
            argspec.ArgSpecError, match=f"^{H}: {module}: missing required arguments: .*{name}"
        ):
            argspec.validate(H, module, {k: v for k, v in base.items() if k != name})
    for sub, so in opt.get("suboptions", {}).items():  # suboptions of list-of-dict options
        if opt.get("elements") != "dict" or "choices" not in so:
            continue
        item = {**good[0], sub: "no-such-choice"}
        with pytest.raises(argspec.ArgSpecError, match=f"{sub}.*one of"):
            argspec.validate(H, module, {**base, name: [item]})


@pytest.mark.parametrize("module", ACTIONS)
def test_undocumented_options_are_refused(module):
    with pytest.raises(
        argspec.ArgSpecError,
        match=f"^{H}: {module}: unsupported parameters: bogus. Supported parameters include: ",
    ):
        argspec.validate(H, module, {**minimal(module), "bogus": 1}, **RULES.get(module, {}))


def test_undocumented_suboptions_are_refused():
    with pytest.raises(
        argspec.ArgSpecError,
        match="unsupported parameters: files.bogus. Supported parameters include: content, dest",
    ):
        argspec.validate(H, "push_files", {"files": [{"dest": "/x", "content": "x", "bogus": 1}]})


def test_cross_field_rule_of_artifact():
    with pytest.raises(argspec.ArgSpecError, match="one of the following is required: archive, artifact"):
        argspec.validate(H, "artifact", {}, **RULES["artifact"])


def test_documented_choices_are_the_codes_own():
    assert doc_options("artifact")["artifact"]["choices"] == sorted(artifacts.ARTIFACTS)
    assert doc_options("go_build")["recipe"]["choices"] == list(gobuild.RECIPES)


@pytest.mark.parametrize("module", ACTIONS)
def test_actions_restate_no_spec_and_validate_against_their_stub(module):
    with open(os.path.join(REPO, "plugins", "action", f"{module}.py")) as f:
        text = f.read()
    assert re.search(rf'argspec\.validate\(\s*host,\s*"{module}",', text)
    assert not re.search(r"_SPEC\b|_VALID_ARGS|argument_spec=", text)
