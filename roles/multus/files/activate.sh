#!/bin/sh
# xcluster.multus activation: hands the node's CNI over to multus, or gives it back.
# Copyright: xcluster.multus contributors. Apache License 2.0.
#
# Usage: activate [apply|check|restore]
#   apply    (default) move the base CNI config $BASE_CONF to $MOVED_CONF (under multus's
#            confDir) with its network renamed $BASE_NAME -> $NEW_NAME, keeping the original
#            byte for byte in $STATE_DIR; set the links $LINKS up (those it set up are recorded).
#   check    print what apply would change, change nothing.
#   restore  put the original base config back byte for byte (and remove $MOVED_CONF), set the
#            links apply set up down again.
# Output: one line per item, "CHANGED: ..." for a change (apply, restore), "WOULD: ..." (check),
# "OK: ..." when nothing was to be done; errors go to stderr as "activate: ERROR: ...".
# Exit status: 0 done, 1 an error (the other items are still done), 2 usage.
#
# Run by the role over ansible.builtin.raw after install, and by an overlay's init.d .rc at boot:
# POSIX sh and busybox applets only (ip is busybox's or iproute2's), no Ansible, no jq.
# Running it again changes nothing. The role renders the settings below; nothing else in
# this file changes from node to node.

# --- settings (rendered by the role xcluster.multus.multus) ---
BASE_CONF=/etc/cni/net.d/10-bridge.conf
MOVED_CONF=/etc/cni/multus/net.d/bridge.conf
BASE_NAME=cni-x
NEW_NAME=bridge
LINKS='eth2 eth3 eth4'
STATE_DIR=/var/lib/xcluster-multus
# --- end of settings ---

SAVED=$STATE_DIR/base.conf   # the original base config, byte for byte
LINKS_SET=$STATE_DIR/links-up # the links apply set up, one a line
rc=0

say() { printf '%s: %s\n' "$1" "$2"; }
err() {
	printf 'activate: ERROR: %s\n' "$*" >&2
	rc=1
}

# A "name": "<name>" member (any spacing) in a JSON file. Names are [A-Za-z0-9_.-] (the role
# checks), so only '.' needs escaping in the regular expression.
esc() { printf '%s' "$1" | sed 's/[.]/\\./g'; }
has_name() { grep -q "\"name\"[[:space:]]*:[[:space:]]*\"$(esc "$2")\"" "$1"; }

# Move the base config (apply): keep the original, write the renamed copy, then remove it.
move_base() {
	if [ "$BASE_NAME" != "$NEW_NAME" ] && ! has_name "$BASE_CONF" "$BASE_NAME" && ! has_name "$BASE_CONF" "$NEW_NAME"; then
		err "$BASE_CONF has no \"name\": \"$BASE_NAME\" (nor \"$NEW_NAME\"); not moved (set the base network's name)"
		return
	fi
	mkdir -p "$STATE_DIR" "${MOVED_CONF%/*}" || {
		err "cannot create $STATE_DIR or ${MOVED_CONF%/*}"
		return
	}
	if ! { cp -p "$BASE_CONF" "$SAVED.tmp" && mv -f "$SAVED.tmp" "$SAVED"; }; then
		err "cannot keep the original $BASE_CONF in $SAVED"
		return
	fi
	if ! { sed "s/\\(\"name\"[[:space:]]*:[[:space:]]*\"\\)$(esc "$BASE_NAME")\"/\\1$NEW_NAME\"/" "$SAVED" >"$MOVED_CONF.tmp" &&
		chmod 0644 "$MOVED_CONF.tmp" && mv -f "$MOVED_CONF.tmp" "$MOVED_CONF"; }; then
		rm -f "$MOVED_CONF.tmp"
		err "cannot write $MOVED_CONF"
		return
	fi
	rm -f "$BASE_CONF" || {
		err "cannot remove $BASE_CONF"
		return
	}
	say CHANGED "moved $BASE_CONF to $MOVED_CONF (network $BASE_NAME renamed $NEW_NAME)"
}

# The flags of link $1 ("BROADCAST,MULTICAST,UP,LOWER_UP"), empty output if it is missing.
link_flags() {
	out=$(ip -o link show dev "$1" 2>/dev/null) || return 1
	out=${out#*<}
	printf '%s\n' "${out%%>*}"
}
is_up() { case ",$1," in *,UP,*) return 0 ;; esac; return 1; }

# apply, or check ($1): the same walk over the base config and the links; check only says
# what apply would change.
activate() {
	if [ -f "$BASE_CONF" ]; then
		if [ "$1" = check ]; then
			say WOULD "move $BASE_CONF to $MOVED_CONF (network $BASE_NAME renamed $NEW_NAME)"
		else
			move_base
		fi
	elif [ -f "$MOVED_CONF" ]; then
		say OK "base config already at $MOVED_CONF"
	else
		err "no base CNI config: neither $BASE_CONF nor $MOVED_CONF exists"
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
	if [ -f "$SAVED" ]; then
		if mkdir -p "${BASE_CONF%/*}" && cp -p "$SAVED" "$BASE_CONF.tmp" && mv -f "$BASE_CONF.tmp" "$BASE_CONF" &&
			rm -f "$MOVED_CONF" "$SAVED"; then
			say CHANGED "restored $BASE_CONF (removed $MOVED_CONF)"
		else
			err "cannot restore $BASE_CONF from $SAVED"
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
