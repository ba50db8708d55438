# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""An action's arguments, validated against its module stub's DOCUMENTATION (as ansible.utils
does): the stub's ``options`` become an argument spec (``suboptions`` -> ``options``; type,
elements, default, choices, required, aliases, no_log kept), checked by Ansible's own
ArgumentSpecValidator. The documentation is the only statement of each action's arguments.

Bad input raises ArgSpecError naming the host, the action and what is wrong.
"""

from __future__ import annotations

import importlib

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import UnsupportedError

from . import fastyaml

_KEEP = ("type", "elements", "default", "choices", "required", "aliases", "no_log")
_CACHE = {}


class ArgSpecError(ValueError):
    """Arguments that do not fit the action's documentation."""


def spec_from_options(options):
    """DOCUMENTATION ``options`` (a dict) -> an argument spec."""
    out = {}
    for name, opt in (options or {}).items():
        spec = {k: opt[k] for k in _KEEP if k in opt}
        if "suboptions" in opt:
            spec["options"] = spec_from_options(opt["suboptions"])
        out[name] = spec
    return out


def spec_from_doc(documentation):
    """A DOCUMENTATION string (YAML) -> an argument spec."""
    return spec_from_options(fastyaml.load(documentation).get("options"))


def module_spec(module):
    """The argument spec of this collection's module stub ``plugins/modules/<module>.py``."""
    if module not in _CACHE:
        stub = importlib.import_module(f"ansible_collections.xcluster.multus.plugins.modules.{module}")
        _CACHE[module] = spec_from_doc(stub.DOCUMENTATION)
    return _CACHE[module]


def validate(host, module, args, **kwargs):
    """args checked against the module stub's DOCUMENTATION; -> the validated parameters
    (defaults filled in, values converted to their documented types). kwargs: the
    cross-field rules a DOCUMENTATION cannot state (required_one_of, mutually_exclusive...)."""
    result = ArgumentSpecValidator(module_spec(module), **kwargs).validate(dict(args or {}))
    if result.error_messages:
        msgs = [
            ("unsupported parameters: " if isinstance(e, UnsupportedError) else "") + e.error_message
            for e in result.errors
        ]
        raise ArgSpecError(f"{host}: {module}: " + "; ".join(msgs))
    return result.validated_parameters
