# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Node index, placeholder substitution and host-local IPAM checks: pure logic.

One truth for xcluster's placeholder rule (docs/DEVELOPMENT.md). The node-local IPAM script
(roles/node_local/files/node-local) implements the same rule in jq; a test proves they agree.

The rule: in every string value of a structure (dict keys are left alone), every ``%`` and
every ``x`` that directly follows a ``.`` and is not followed by ``[0-9A-Za-z_]`` is replaced
by the decimal node index. All placeholders are found in the original string, then replaced
at once (so ``.x%`` gives ``.44`` for index 4).

Nothing here needs Ansible. Bad input raises NodeIndexError naming the host, the value and
what is expected; the filter plugins turn it into AnsibleFilterError.
"""

from __future__ import annotations

import re

try:
    import netaddr
except ImportError:  # pragma: no cover - exercised by a test that hides netaddr
    netaddr = None

DEFAULT_PATTERN = r"^vm-0*([1-9][0-9]*)$"

# '%' anywhere; 'x' right after '.', not followed by [0-9A-Za-z_] (ASCII only, as in jq).
PLACEHOLDER_RE = re.compile(r"%|(?<=\.)x(?![0-9A-Za-z_])")

_DIGITS_RE = re.compile(r"[0-9]+")
_PREFIX_RE = re.compile(r"[0-9]{1,3}")
_RANGE_KEYS = ("subnet", "rangeStart", "rangeEnd", "gateway")


class NodeIndexError(ValueError):
    """Bad input for the node index, the substitution or the range checks."""


def _who(host, index=None):
    if host is None or host == "":
        return f"node index {index}" if index is not None else "node"
    return f"host {host} (index {index})" if index is not None else f"host {host}"


def _require_netaddr():
    if netaddr is None:
        raise NodeIndexError(
            "netaddr is required (pip install netaddr) on the controller to validate host-local IPAM configs"
        )


# ---------------------------------------------------------------------------- node index


def check_index(index, host=None):
    """Return ``index`` as an int >= 1; accept an int or a string of decimal digits."""
    value = index
    if isinstance(index, str) and _DIGITS_RE.fullmatch(index):
        value = int(index, 10)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise NodeIndexError(
            f"{_who(host)}: node index {index!r} is invalid; expected a positive integer "
            "(1, 2, ...) or a string of decimal digits"
        )
    return value


def node_index(hostname, pattern=None, index=None):
    """Node index of ``hostname``: ``index`` if given, else the number ``pattern`` captures.

    ``pattern`` (default ``^vm-0*([1-9][0-9]*)$``) must match the whole hostname; its group
    named ``index``, else its first group, must capture decimal digits with a value >= 1.
    """
    if not isinstance(hostname, str) or not hostname:
        raise NodeIndexError(f"host name {hostname!r} is invalid; expected a non-empty string")
    if index is not None:
        return check_index(index, hostname)
    if pattern is None or pattern == "":
        pattern = DEFAULT_PATTERN
    if not isinstance(pattern, str):
        raise NodeIndexError(
            f"host {hostname}: index pattern {pattern!r} is invalid; expected a regular expression string"
        )
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise NodeIndexError(
            f"host {hostname}: index pattern {pattern!r} is not a valid regular expression ({exc})"
        ) from exc
    if regex.groups < 1:
        raise NodeIndexError(
            f"host {hostname}: index pattern {pattern!r} has no capturing group; expected one group "
            "(or a group named 'index') that captures the node number"
        )
    match = regex.fullmatch(hostname)
    if match is None:
        raise NodeIndexError(
            f"host {hostname}: host name {hostname!r} does not match the index pattern {pattern!r}; "
            "expected a name like vm-001 (index >= 1), or set an explicit index for this host"
        )
    group = "index" if "index" in regex.groupindex else 1
    text = match.group(group)
    if text is None or not _DIGITS_RE.fullmatch(text) or int(text, 10) < 1:
        raise NodeIndexError(
            f"host {hostname}: the index pattern {pattern!r} captured {text!r}; expected decimal "
            "digits with a value >= 1 (vm-000 has no index)"
        )
    return int(text, 10)


# -------------------------------------------------------------------------- substitution


def has_placeholder(value):
    """True if any string value in ``value`` (recursively) holds a placeholder."""
    if isinstance(value, str):
        return PLACEHOLDER_RE.search(value) is not None
    if isinstance(value, dict):
        return any(has_placeholder(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(has_placeholder(v) for v in value)
    return False


def substitute(value, index, host=None):
    """Replace every placeholder in every string of ``value`` by the decimal node index.

    Returns a new structure of plain dicts, lists and strings; numbers, booleans and None are
    kept; dict keys are never changed.
    """
    text = str(check_index(index, host))
    return _subst(value, text, host, "")


def _subst(value, text, host, path):
    if isinstance(value, str):
        return PLACEHOLDER_RE.sub(text, str(value))
    if isinstance(value, dict):
        return {k: _subst(v, text, host, _join(path, k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_subst(v, text, host, f"{path}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    raise NodeIndexError(
        f"{_who(host)}: {path or 'template'} is {value!r} ({type(value).__name__}); expected "
        "a string, number, boolean, null, list or dict"
    )


def _join(path, key):
    return f"{path}.{key}" if path else str(key)


def node_subst(template, index, host=None, validate=True):
    """Substitute the node index into ``template`` and, by default, validate the result.

    ``template`` must hold at least one placeholder. With ``validate`` the result must be a
    host-local IPAM structure (a CNI config with ``ipam``, an ``ipam`` dict, a ``ranges`` list,
    a range set, a range) or an IP address / network string, or a list of those.
    """
    idx = check_index(index, host)
    if not has_placeholder(template):
        raise NodeIndexError(
            f"{_who(host, idx)}: template {template!r} has no placeholder; expected '%' or '.x' "
            "where the node index goes (e.g. 11.0.x.0/24)"
        )
    result = substitute(template, idx, host)
    if validate:
        validate_ipam(result, host=host, index=idx, template=template)
    return result


# ---------------------------------------------------------------------------- validation


class _Ctx:
    """Who and where, for error messages."""

    def __init__(self, host, index):
        self.who = _who(host, index)
        self.index = index
        self.out = []  # the ranges found, see validate_ipam

    def fail(self, path, value, template, expected):
        origin = "" if template is None or template == value else f" (from template {template!r})"
        raise NodeIndexError(f"{self.who}: {path or 'value'} is {value!r}{origin}; expected {expected}")


def validate_ipam(value, host=None, index=None, template=None):
    """Validate a rendered host-local structure; return its ranges as dicts.

    Each returned dict: ``path``, ``family``, ``subnet`` (IPNetwork), ``start`` and
    ``end`` (effective first and last allocatable address, as host-local computes them),
    ``range`` and ``template`` (the rendered and template range dicts; None for a string).
    """
    _require_netaddr()
    ctx = _Ctx(host, index)
    _validate_any(ctx, value, template, "")
    _check_no_overlap_within(ctx, ctx.out)
    return ctx.out


def _validate_any(ctx, value, template, path):
    if isinstance(value, str):
        _validate_string(ctx, value, template, path)
    elif isinstance(value, dict):
        if "ipam" in value:
            _validate_ipam_dict(ctx, value["ipam"], _get(template, "ipam"), _join(path, "ipam"))
        elif "ranges" in value or "subnet" in value:
            _validate_ipam_dict(ctx, value, template, path)
        else:
            ctx.fail(
                path,
                value,
                template,
                "a host-local config: a dict with 'ipam', 'ranges' or 'subnet'",
            )
    elif isinstance(value, list):
        if not value:
            ctx.fail(path, value, template, "a non-empty list")
        if all(isinstance(v, list) for v in value):
            _validate_ranges(ctx, value, template, path)
        elif all(isinstance(v, dict) for v in value):
            _validate_range_set(ctx, value, template, path)
        else:
            for i, v in enumerate(value):
                _validate_any(ctx, v, _get(template, i), f"{path}[{i}]")
    else:
        ctx.fail(path, value, template, "an IP address, a network or a host-local IPAM structure")


def _get(template, key):
    """template[key] if the template has that shape, else None (templates only feed messages)."""
    if isinstance(template, dict):
        return template.get(key)
    if isinstance(template, (list, tuple)) and isinstance(key, int) and key < len(template):
        return template[key]
    return None


def _validate_string(ctx, value, template, path):
    if "/" in value:
        net = _parse_network(ctx, value, template, path)
        start, end = _default_start(net), _default_end(net)
        ctx.out.append(_range_entry(path, net, start=start, end=end, rng=None, template=None))
    else:
        _parse_address(ctx, value, template, path, None)


def _validate_ipam_dict(ctx, ipam, template, path):
    if not isinstance(ipam, dict):
        ctx.fail(path, ipam, template, "a dict (host-local IPAM config)")
    kind = ipam.get("type", "host-local")
    if kind != "host-local":
        ctx.fail(_join(path, "type"), kind, _get(template, "type"), "'host-local' (or no type)")
    found = False
    if "subnet" in ipam:  # old-style single range at the ipam level
        _validate_range(ctx, ipam, template, path)
        found = True
    if "ranges" in ipam:
        _validate_ranges(ctx, ipam["ranges"], _get(template, "ranges"), _join(path, "ranges"))
        found = True
    if not found:
        ctx.fail(path, ipam, template, "'ranges' (a list of range sets) or 'subnet'")
    routes = ipam.get("routes")
    if routes is not None:
        _validate_routes(ctx, routes, _get(template, "routes"), _join(path, "routes"))


def _validate_ranges(ctx, ranges, template, path):
    if not isinstance(ranges, list) or not ranges:
        ctx.fail(path, ranges, template, "a non-empty list of range sets (lists of ranges)")
    for i, rset in enumerate(ranges):
        _validate_range_set(ctx, rset, _get(template, i), f"{path}[{i}]")


def _validate_range_set(ctx, rset, template, path):
    if not isinstance(rset, list) or not rset:
        ctx.fail(path, rset, template, "a range set: a non-empty list of ranges")
    first = len(ctx.out)
    for i, rng in enumerate(rset):
        _validate_range(ctx, rng, _get(template, i), f"{path}[{i}]")
    families = {r["family"] for r in ctx.out[first:]}
    if len(families) > 1:
        ctx.fail(path, rset, template, "ranges of one address family in a range set")


def _validate_range(ctx, rng, template, path):
    if not isinstance(rng, dict):
        ctx.fail(path, rng, template, "a range: a dict with subnet, rangeStart, rangeEnd, gateway")
    if "subnet" not in rng:
        ctx.fail(path, rng, template, "a 'subnet' in every range")
    for key in _RANGE_KEYS:
        if key in rng and not isinstance(rng[key], str):
            ctx.fail(_join(path, key), rng[key], _get(template, key), "a string")
    net = _parse_network(ctx, rng["subnet"], _get(template, "subnet"), _join(path, "subnet"))
    addrs = {}
    for key in ("gateway", "rangeStart", "rangeEnd"):
        if key in rng:
            addrs[key] = _parse_address(ctx, rng[key], _get(template, key), _join(path, key), net)
    start = addrs.get("rangeStart", _default_start(net))
    end = addrs.get("rangeEnd", _default_end(net))
    if start > end:
        ctx.fail(
            _join(path, "rangeEnd" if "rangeEnd" in addrs else "rangeStart"),
            str(addrs.get("rangeEnd", addrs.get("rangeStart"))),
            _get(template, "rangeEnd" if "rangeEnd" in addrs else "rangeStart"),
            f"rangeStart <= rangeEnd (the range is {start}-{end} in {net})",
        )
    ctx.out.append(_range_entry(path, net, start=start, end=end, rng=rng, template=template))


def _range_entry(path, net, *, start, end, rng, template):
    return {
        "path": path,
        "family": net.version,
        "subnet": net,
        "start": start,
        "end": end,
        "range": rng,
        "template": template,
    }


def _validate_routes(ctx, routes, template, path):
    if not isinstance(routes, list):
        ctx.fail(path, routes, template, "a list of routes ({dst, gw})")
    for i, route in enumerate(routes):
        rpath = f"{path}[{i}]"
        rtemplate = _get(template, i)
        if not isinstance(route, dict) or not isinstance(route.get("dst"), str):
            ctx.fail(rpath, route, rtemplate, "a route: a dict with a 'dst' network and an optional 'gw'")
        _parse_network(ctx, route["dst"], _get(rtemplate, "dst"), _join(rpath, "dst"), allow_small=True)
        if "gw" in route:
            if not isinstance(route["gw"], str):
                ctx.fail(_join(rpath, "gw"), route["gw"], _get(rtemplate, "gw"), "an IP address string")
            _parse_address(ctx, route["gw"], _get(rtemplate, "gw"), _join(rpath, "gw"), None)


def _parse_network(ctx, value, template, path, allow_small=False):
    expected = "a network in CIDR form, e.g. 11.0.1.0/24 or 1100::11.0.1.0/120"
    if not isinstance(value, str) or value.count("/") != 1:
        ctx.fail(path, value, template, expected)
    addr_text, prefix_text = value.split("/")
    if not _PREFIX_RE.fullmatch(prefix_text):
        ctx.fail(path, value, template, expected)
    addr = _parse_address(
        ctx, addr_text, None, path, None, whole=value, whole_template=template, expected=expected
    )
    bits = 32 if addr.version == 4 else 128
    prefix = int(prefix_text, 10)
    if prefix > bits:
        ctx.fail(path, value, template, f"a prefix length of at most {bits}")
    net = netaddr.IPNetwork(f"{addr}/{prefix}")
    if net.ip != net.network:
        ctx.fail(path, value, template, f"a network address with no host bits set ({net.cidr})")
    if not allow_small and prefix > bits - 2:
        ctx.fail(path, value, template, f"a network large enough to allocate from (prefix <= {bits - 2})")
    return net


def _parse_address(ctx, value, template, path, net, *, whole=None, whole_template=None, expected=None):
    shown = value if whole is None else whole
    shown_template = template if whole is None else whole_template
    expected = expected or "an IPv4 or IPv6 address"
    if not isinstance(value, str):
        ctx.fail(path, shown, shown_template, expected)
    try:
        addr = netaddr.IPAddress(value, flags=netaddr.INET_PTON)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        if PLACEHOLDER_RE.search(value):
            expected += " (a placeholder is left over)"
        elif shown_template is not None and has_placeholder(shown_template) and (ctx.index or 0) > 255:
            expected += (
                f" (node index {ctx.index} is too large for where it lands: an IPv4 octet holds "
                "0-255, an IPv6 group 4 hex digits)"
            )
        ctx.fail(path, shown, shown_template, expected)
    if net is not None:
        if addr.version != net.version:
            ctx.fail(path, value, template, f"an IPv{net.version} address like its subnet {net}")
        if addr not in net:
            ctx.fail(path, value, template, f"an address inside its subnet {net}")
    return addr


def _default_start(net):
    return netaddr.IPAddress(int(net.network) + 1, net.version)


def _default_end(net):
    last = int(net.last)
    if net.version == 4:
        last -= 1
    return netaddr.IPAddress(last, net.version)


def _check_no_overlap_within(ctx, ranges):
    for i, a in enumerate(ranges):
        for b in ranges[i + 1 :]:
            if a["family"] == b["family"] and a["start"] <= b["end"] and b["start"] <= a["end"]:
                raise NodeIndexError(
                    f"{ctx.who}: {a['path'] or 'range'} ({a['start']}-{a['end']}) overlaps "
                    f"{b['path'] or 'range'} ({b['start']}-{b['end']}); expected disjoint ranges "
                    "(host-local refuses overlapping ranges)"
                )


# ----------------------------------------------------------------------- inventory check


def check_inventory(indexes, configs, host_configs=None):
    """Render every host's node-local configs and check them across the inventory.

    ``indexes`` maps host -> node index; ``configs`` maps config name -> template (for every
    host); ``host_configs`` optionally maps host -> {config name -> template} to add or
    override per host. Raises on duplicate indexes, invalid templates or results, and on
    effective ranges of the same config name that overlap between two hosts.
    Returns host -> {config name -> rendered config}.
    """
    if not isinstance(indexes, dict) or not indexes:
        raise NodeIndexError(f"indexes {indexes!r} are invalid; expected a dict host -> node index")
    if not isinstance(configs, dict):
        raise NodeIndexError(f"configs {configs!r} are invalid; expected a dict name -> template")
    host_configs = {} if host_configs is None else host_configs
    if not isinstance(host_configs, dict):
        raise NodeIndexError(
            f"host_configs {host_configs!r} are invalid; expected a dict host -> {{name -> template}}"
        )
    unknown = sorted(set(host_configs) - set(indexes), key=str)
    if unknown:
        raise NodeIndexError(
            f"host_configs name hosts {unknown} that have no index; expected hosts from indexes "
            f"{sorted(indexes, key=str)}"
        )
    owner = {}
    for host in sorted(indexes, key=str):
        idx = check_index(indexes[host], host)
        if idx in owner:
            raise NodeIndexError(
                f"hosts {owner[idx]} and {host} both have node index {idx}; expected a different "
                "index for every host (rename the host or set its index explicitly)"
            )
        owner[idx] = host

    rendered = {}
    spans = {}  # config name -> list of (family, start, end, host, range entry)
    for host in sorted(indexes, key=str):
        idx = check_index(indexes[host], host)
        mine = dict(configs)
        extra = host_configs.get(host, {})
        if not isinstance(extra, dict):
            raise NodeIndexError(
                f"host {host}: host_configs entry {extra!r} is invalid; expected a dict name -> template"
            )
        mine.update(extra)
        rendered[host] = {}
        for name in sorted(mine, key=str):
            template = mine[name]
            try:
                value = node_subst(template, idx, host=host, validate=False)
                entries = validate_ipam(value, host=host, index=idx, template=template)
            except NodeIndexError as exc:
                raise NodeIndexError(f"node-local config {name!r}: {exc}") from exc
            rendered[host][name] = value
            for e in entries:
                spans.setdefault(name, []).append((e["family"], int(e["start"]), int(e["end"]), host, e))

    for name in sorted(spans, key=str):
        _check_spans(name, spans[name], indexes)
    return rendered


def _check_spans(name, spans, indexes):
    """Raise if two hosts' spans overlap; one message covering each overlapping range."""
    spans.sort(key=lambda s: (s[0], s[1], s[2]))
    found = {}  # (path a, path b) -> first overlapping pair
    widest = None
    for span in spans:
        if widest is not None and widest[0] == span[0] and span[1] <= widest[2] and widest[3] != span[3]:
            found.setdefault((widest[4]["path"], span[4]["path"]), (widest, span))
        if widest is None or widest[0] != span[0] or span[2] > widest[2]:
            widest = span
    if found:
        parts = [_overlap_message(a, b, indexes) for a, b in found.values()]
        raise NodeIndexError(
            f"node-local config {name!r}: the ranges of two hosts overlap; expected every host's "
            "range to be its own. " + " ".join(parts)
        )


def _overlap_message(a, b, indexes):
    ea, eb = a[4], b[4]

    def show(host, e):
        rng = e["range"] or {}
        what = f"{rng.get('rangeStart', e['start'])}-{rng.get('rangeEnd', e['end'])} in {e['subnet']}"
        if e["range"] is not None and "rangeEnd" not in rng:
            what += " (no rangeEnd: it runs to the end of the subnet)"
        return f"{host} {e['path'] or 'range'} {what}"

    msg = f"{show(a[3], ea)} overlaps {show(b[3], eb)}."
    fix = _suggest_range_end(ea, eb, indexes[a[3]], indexes[b[3]])
    if fix is not None:
        return msg + f" Fix: add rangeEnd: {fix} next to rangeStart: {ea['template']['rangeStart']}."
    return msg + " Fix: make subnet, rangeStart and rangeEnd depend on the node index ('%' or '.x')."


_START_RE = re.compile(r"^(.*(?:%|\.x))((?:\.0)+)$")


def _suggest_range_end(ea, eb, index_a, index_b):
    """A rangeEnd template that makes both ranges disjoint, or None."""
    template = ea["template"]
    if not isinstance(template, dict) or "rangeEnd" in template:
        return None
    start = template.get("rangeStart")
    match = _START_RE.match(start) if isinstance(start, str) else None
    if match is None:
        return None
    end = match.group(1) + ".255" * (len(match.group(2)) // 2)
    fixed = dict(template, rangeEnd=end)
    try:
        ra = validate_ipam(substitute(fixed, index_a))
        rb = validate_ipam(substitute(dict(eb["template"] or {}, rangeEnd=end), index_b))
    except NodeIndexError:
        return None
    (a,), (b,) = ra, rb
    if a["start"] <= b["end"] and b["start"] <= a["end"]:
        return None
    return end
