#!/bin/sh
# xcluster.multus activation: hands the node's CNI over to multus, or gives it back.
# Copyright: xcluster.multus contributors. Apache License 2.0.
#
# Usage: activate [apply|check|restore]
#   apply    (default) find the base CNI config: $BASE_CONF, or when it is empty the config the
#            runtime would pick, the first *.conf, *.conflist or *.json in $NET_DIR by name
#            ($MULTUS_CONF excluded); move it under multus's confDir $MOVED_DIR as
#            $NEW_NAME.<its extension> with its network renamed $NEW_NAME (when $BASE_NAME is set
#            its network must be $BASE_NAME or $NEW_NAME), keeping the original byte for byte in
#            $STATE_DIR; ONLY THEN install multus's config $CONF_SRC as $MULTUS_CONF (so multus is
#            never active without its base network); check that $MULTUS_CONF is the config the
#            runtime picks (never two active configs); set the links $LINKS up (those it set up
#            are recorded).
#   check    print what apply would change, change nothing.
#   restore  remove $MULTUS_CONF, then put the original base config back byte for byte (and
#            remove the moved copy), set the links apply set up down again.
# Output: one line per item, "CHANGED: ..." for a change (apply, restore), "WOULD: ..." (check),
# "OK: ..." when nothing was to be done; errors go to stderr as "activate: ERROR: ...".
# Exit status: 0 done, 1 an error (the other items are still done), 2 usage.
#
# Run by the role over ansible.builtin.raw after install, and by an overlay's init.d .rc at boot:
# POSIX sh and busybox applets only (ip is busybox's or iproute2's), jq when the node has it.
# Running it again changes nothing. The role renders the settings below; nothing else in
# this file changes from node to node.

# --- settings (rendered by the role xcluster.multus.multus) ---
NET_DIR=/etc/cni/net.d
BASE_CONF=''
BASE_NAME=''
MOVED_DIR=/etc/cni/multus/net.d
NEW_NAME=bridge
CONF_SRC=/usr/lib/xcluster-multus/10-multus.conf
MULTUS_CONF=/etc/cni/net.d/10-multus.conf
LINKS='eth2 eth3 eth4'
STATE_DIR=/var/lib/xcluster-multus
# --- end of settings ---

SAVED=$STATE_DIR/base.conf    # the original base config, byte for byte
SAVED_PATH=$STATE_DIR/base.path # where it was
MOVED_PATH=$STATE_DIR/moved.path # where its renamed copy is
LINKS_SET=$STATE_DIR/links-up  # the links apply set up, one a line
rc=0

say() { printf '%s: %s\n' "$1" "$2"; }
err() {
	printf 'activate: ERROR: %s\n' "$*" >&2
	rc=1
}

# The CNI configs in $NET_DIR the runtime reads, by name (the C locale's order, as libcni's
# sorted file names), one a line; multus's own config excluded when $1 is "base".
configs() {
	for f in "$NET_DIR"/*; do
		[ -f "$f" ] || continue
		case $f in *.conf | *.conflist | *.json) ;; *) continue ;; esac
		[ "$1" = base ] && [ "$f" = "$MULTUS_CONF" ] && continue
		printf '%s\n' "$f"
	done | LC_ALL=C sort
}

# The network name of a CNI config: jq's .name when the node has jq, else the first
# "name": "..." member (the top-level one in every config xcluster's CNIs write).
net_name() {
	if command -v jq >/dev/null 2>&1; then
		jq -r '.name // empty' "$1" 2>/dev/null
	else
		sed -n 's/.*"name"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$1" | head -n 1
	fi
}

# The base config apply would move (empty: none).
find_base() {
	if [ -n "$BASE_CONF" ]; then
		[ -f "$BASE_CONF" ] && printf '%s\n' "$BASE_CONF"
	else
		configs base | head -n 1
	fi
}

# Move the base config $1 (apply): keep the original, write the renamed copy, then remove it.
move_base() {
	base=$1
	name=$(net_name "$base")
	if [ -z "$name" ] || ! printf '%s' "$name" | grep -q '^[A-Za-z0-9_.-]*$'; then
		err "$base has no network name of [A-Za-z0-9_.-] (found \"$name\"); not moved"
		return 1
	fi
	if [ -n "$BASE_NAME" ] && [ "$name" != "$BASE_NAME" ] && [ "$name" != "$NEW_NAME" ]; then
		err "$base has no \"name\": \"$BASE_NAME\" (nor \"$NEW_NAME\"; found \"$name\"); not moved (set the base network's name)"
		return 1
	fi
	moved=$MOVED_DIR/$NEW_NAME.${base##*.}
	mkdir -p "$STATE_DIR" "$MOVED_DIR" || {
		err "cannot create $STATE_DIR or $MOVED_DIR"
		return 1
	}
	if ! { cp -p "$base" "$SAVED.tmp" && mv -f "$SAVED.tmp" "$SAVED" &&
		printf '%s\n' "$base" >"$SAVED_PATH" && printf '%s\n' "$moved" >"$MOVED_PATH"; }; then
		err "cannot keep the original $base in $STATE_DIR"
		return 1
	fi
	# Only the first "name" member with this value is renamed (the network's; a plugin of a list
	# keeps its own); the name is matched literally.
	if ! { awk -v n="$name" -v to="$NEW_NAME" '
		!done && match($0, /"name"[[:space:]]*:[[:space:]]*"/) {
			rest = substr($0, RSTART + RLENGTH)
			if (index(rest, n "\"") == 1) {
				$0 = substr($0, 1, RSTART - 1) "\"name\": \"" to "\"" substr(rest, length(n) + 2)
				done = 1
			}
		}
		{ print }' "$SAVED" >"$moved.tmp" &&
		chmod 0644 "$moved.tmp" && mv -f "$moved.tmp" "$moved"; }; then
		rm -f "$moved.tmp"
		err "cannot write $moved"
		return 1
	fi
	rm -f "$base" || {
		err "cannot remove $base"
		return 1
	}
	say CHANGED "moved $base to $moved (network $name renamed $NEW_NAME)"
}

# multus's config, installed only once its base network is in place.
install_conf() {
	if [ ! -f "$CONF_SRC" ]; then
		err "no $CONF_SRC (multus's config): $MULTUS_CONF not written"
	elif cmp -s "$CONF_SRC" "$MULTUS_CONF"; then
		say OK "$MULTUS_CONF is multus's config"
	elif [ "$1" = check ]; then
		say WOULD "write $MULTUS_CONF"
	elif mkdir -p "${MULTUS_CONF%/*}" && cp "$CONF_SRC" "$MULTUS_CONF.tmp" && chmod 0644 "$MULTUS_CONF.tmp" &&
		mv -f "$MULTUS_CONF.tmp" "$MULTUS_CONF"; then
		say CHANGED "wrote $MULTUS_CONF"
	else
		rm -f "$MULTUS_CONF.tmp"
		err "cannot write $MULTUS_CONF"
	fi
}

# The link flags of $1 ("BROADCAST,MULTICAST,UP,LOWER_UP"); fails when the link is missing.
link_flags() {
	out=$(ip -o link show dev "$1" 2>/dev/null) || return 1
	out=${out#*<}
	printf '%s\n' "${out%%>*}"
}
is_up() { case ",$1," in *,UP,*) return 0 ;; esac; return 1; }

# apply, or check ($1): the same walk over the base config and the links; check only says
# what apply would change.
activate() {
	base=$(find_base)
	moved=''
	[ -f "$MOVED_PATH" ] && moved=$(cat "$MOVED_PATH")
	ready=no
	if [ -n "$base" ]; then
		if [ "$1" = check ]; then
			say WOULD "move $base to $MOVED_DIR/$NEW_NAME.${base##*.} (network $(net_name "$base") renamed $NEW_NAME)"
			ready=yes
		elif move_base "$base"; then
			ready=yes
		fi
	elif [ -n "$moved" ] && [ -f "$moved" ]; then
		say OK "base config already at $moved"
		ready=yes
	else
		found=$(for f in "$NET_DIR"/*; do [ -e "$f" ] && printf '%s ' "${f##*/}"; done)
		err "no base CNI config: ${BASE_CONF:-no *.conf, *.conflist or *.json in $NET_DIR} (found: ${found:-nothing}), nothing moved before${moved:+ (and no $moved)}; $MULTUS_CONF not written"
	fi
	[ "$ready" = yes ] && install_conf "$1"
	if [ "$1" != check ] && [ -f "$MULTUS_CONF" ]; then
		first=$(configs all | head -n 1)
		[ "$first" = "$MULTUS_CONF" ] ||
			err "$first comes before $MULTUS_CONF by name: the runtime would use it, not multus (rename or remove it)"
	fi
	for l in $LINKS; do
		if ! f=$(link_flags "$l"); then
			err "link $l does not exist"
		elif is_up "$f"; then
			say OK "link $l is up"
		elif [ "$1" = check ]; then
			say WOULD "set link $l up"
		elif ip link set dev "$l" up; then
			mkdir -p "$STATE_DIR" && { grep -qx "$l" "$LINKS_SET" 2>/dev/null || echo "$l" >>"$LINKS_SET"; }
			say CHANGED "link $l set up"
		else
			err "cannot set link $l up"
		fi
	done
}

restore() {
	if [ -f "$MULTUS_CONF" ]; then
		if rm -f "$MULTUS_CONF"; then
			say CHANGED "removed $MULTUS_CONF"
		else
			err "cannot remove $MULTUS_CONF"
		fi
	fi
	if [ -f "$SAVED" ] && [ -f "$SAVED_PATH" ]; then
		base=$(cat "$SAVED_PATH")
		moved=$(cat "$MOVED_PATH" 2>/dev/null)
		if mkdir -p "${base%/*}" && cp -p "$SAVED" "$base.tmp" && mv -f "$base.tmp" "$base" &&
			rm -f "${moved:-$SAVED}" "$SAVED" "$SAVED_PATH" "$MOVED_PATH"; then
			say CHANGED "restored $base (removed $moved)"
		else
			err "cannot restore $base from $SAVED"
		fi
	else
		say OK "nothing to restore (no $SAVED)"
	fi
	if [ -f "$LINKS_SET" ]; then
		while read -r l; do
			[ -n "$l" ] || continue
			if ip link set dev "$l" down 2>/dev/null; then
				say CHANGED "link $l set down"
			else
				say OK "link $l is gone"
			fi
		done <"$LINKS_SET"
		rm -f "$LINKS_SET"
	fi
}

case ${1:-apply} in
apply | check) activate "${1:-apply}" ;;
restore) restore ;;
*)
	echo "usage: ${0##*/} [apply|check|restore]" >&2
	exit 2
	;;
esac
exit $rc
