# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The one shape of the collection's op filters (``x | xcluster.multus.plan('push', ...)``,
``basic``, ``kubeapi``): a table {op: fn(data, kw)} over plugin_utils functions, and the errors
a user reads, each naming the filter and the op."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError


def op_filter(name, ops, errors):
    """The filter function ``name(data, op, **kw)`` over ``ops``; ``errors``: the exception
    classes of its plugin_utils module (bad input), raised as "<name> <op>: <message>"."""

    def run(data, op, **kw):
        if op not in ops:
            raise AnsibleFilterError(f"{name}: unknown op {op!r}; expected one of {sorted(ops)}")
        try:
            return ops[op](data, kw)
        except errors as exc:
            raise AnsibleFilterError(f"{name} {op}: {exc}") from exc
        except KeyError as exc:
            raise AnsibleFilterError(f"{name} {op}: needs the argument {exc}") from exc

    return run
