# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""yaml.safe_load and safe_load_all with libyaml's parser when PyYAML has it (a tenth of the
time: the actions parse the checksum table, argument specs and manifests in every worker, for
every host). The same safe constructors: plain data only."""

from __future__ import annotations

import yaml

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load(stream):
    """yaml.safe_load(stream)."""
    return yaml.load(stream, Loader=_LOADER)  # noqa: S506 (a safe loader)


def load_all(stream):
    """yaml.safe_load_all(stream)."""
    return yaml.load_all(stream, Loader=_LOADER)  # noqa: S506 (a safe loader)
