# shellcheck shell=bash
# tests/lab/backend-netns.sh - lab nodes as Linux namespaces on this machine (LAB=netns).
# Implements the backend contract described at the top of tests/lab/common.sh.
#
# Node N (vm-00N) is:
#   - network namespace $LAB_PREFIX-vm-00N with veths eth0..eth4 (peers n00Ne0..4 on br0..4
#     in the fabric namespace);
#   - an "init" started by `ip netns exec ... unshare --mount --uts --pid --fork`: it sets the
#     hostname, mounts overlays over /etc /opt /var /usr /root (upper dirs in
#     $STATE/nodes/vm-00N/upper/, so the node's writes are inspectable from the host), binds a
#     private /run and /tmp, hides the host's other top-level trees (/work, /home, /srv, ...)
#     under empty read-only tmpfs, then execs dropbear (PID 1 of the node's PID namespace:
#     when it dies, the kernel kills everything else started on the node);
#   - no Python: overlay whiteouts for every python* in the bin directories, for root's home
#     (all of /root, e.g. /root/.pyenv) and for $LAB_HIDE (extra /usr paths, default the
#     google-cloud-sdk tree that bundles its own Python). LAB_PYTHON=1 keeps the host's
#     python* (for bench/run's peer case: stock modules need Python on the node).
# The netns nodes share the host kernel (no ipvlan, vlan or dummy) and its GNU userland.

LAB_HIDE=${LAB_HIDE:-/usr/lib/google-cloud-sdk}
# Top-level directories a node keeps (the rest is hidden under an empty read-only tmpfs).
_netns_keep_top=" bin boot dev etc lib lib32 lib64 libx32 opt proc root run sbin sys tmp usr var "
_netns_overlays="etc opt var usr root"

_netns_ns() { printf '%s-%s' "$LAB_PREFIX" "$(lab_node_name "$1")"; }

backend_check() {
	local c
	for c in unshare nsenter setsid dropbear mount mknod stat; do
		command -v "$c" >/dev/null || lab_die "LAB=netns needs '$c'"
	done
	grep -qw overlay /proc/filesystems || lab_die "LAB=netns needs overlayfs (modprobe overlay)"
	[ -x /usr/lib/openssh/sftp-server ] ||
		lab_die "LAB=netns needs /usr/lib/openssh/sftp-server (apt-get install openssh-sftp-server)"
	local t
	for t in $_netns_overlays tmp; do
		case $STATE/ in
		/$t/*) lab_die "LAB_STATE_DIR=$LAB_STATE_DIR lies under /$t, which the nodes overlay; use another place (default /run/xcluster-multus-lab)" ;;
		esac
	done
}

backend_caps() {
	printf '%s\n' ipvlan=no vlan=no dummy=no macvlan=yes busybox=no
}

backend_upper_dir() { printf '%s/upper' "$(lab_node_dir "$1")"; }

backend_status() {
	local n d pid
	for n in $(lab_nodes_seq); do
		d=$(lab_node_dir "$n")
		pid=$(cat "$d/init.pid" 2>/dev/null || echo '?')
		printf '%s netns=%s init-pid=%s writes-to=%s/upper/{%s} run=%s/run tmp=%s/tmp\n' \
			"$(lab_node_name "$n")" "$(_netns_ns "$n")" "$pid" "$d" "${_netns_overlays// /,}" "$d" "$d"
	done
}

# Whiteout (hide) host path P in the node whose upper dirs are under $1: P must lie in one of
# the overlaid trees.
_netns_whiteout() {
	local up=$1 p=$2 rel
	[ -e "$p" ] || [ -L "$p" ] || return 0
	rel=${p#/}
	mkdir -p "$up/$(dirname "$rel")"
	mknod "$up/$rel" c 0 0
}

# What every node's upper dirs start with, made once per lab in $STATE/template (whiteouts are
# character devices 0/0; `cp -a` copies them): users, hosts, authorized key, profile, sftp
# links, and the whiteouts that hide root's home, /opt and every Python.
_netns_template() {
	local up=$STATE/template/upper t e
	for t in $_netns_overlays; do mkdir -p "$up/$t"; done
	chmod 700 "$up/root"
	{
		printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n'
		for e in $(lab_nodes_seq); do printf '%s\t%s\n' "$(lab_mgmt4 "$e")" "$(lab_node_name "$e")"; done
	} >"$up/etc/hosts"
	awk -F: -v OFS=: '$1 == "root" {$7 = "/bin/sh"} {print}' /etc/passwd >"$up/etc/passwd"
	mkdir -p "$up/etc/dropbear"
	# root's home: nothing of the host's (e.g. /root/.pyenv), only the lab key and a profile.
	for e in /root/* /root/.[!.]* /root/..?* /root/.ssh/* /root/.ssh/.[!.]*; do
		case $e in /root/.ssh | /root/.profile | /root/.ssh/authorized_keys) ;; *) _netns_whiteout "$up" "$e" ;; esac
	done
	mkdir -p "$up/root/.ssh"
	chmod 700 "$up/root/.ssh"
	cp "$STATE/id_ed25519.pub" "$up/root/.ssh/authorized_keys"
	chmod 600 "$up/root/.ssh/authorized_keys"
	# /opt starts empty, as on a fresh VM.
	for e in /opt/* /opt/.[!.]*; do _netns_whiteout "$up" "$e"; done
	# No Python: every interpreter name in the bin directories, and $LAB_HIDE (unless LAB_PYTHON=1).
	[ "${LAB_PYTHON:-0}" = 1 ] || for e in /usr/bin/python* /usr/sbin/python* /usr/local/bin/python* /usr/local/sbin/python* \
		/usr/libexec/python* /usr/bin/pydoc* /usr/bin/pip* /usr/local/bin/pip* $LAB_HIDE; do
		case $e in /usr/*) _netns_whiteout "$up" "$e" ;; *) lab_die "LAB_HIDE='$e': expected paths under /usr" ;; esac
	done
	# dropbear looks for /usr/lib/sftp-server (Debian) or /usr/libexec/sftp-server (xcluster).
	mkdir -p "$up/usr/libexec" "$up/usr/lib"
	ln -s /usr/lib/openssh/sftp-server "$up/usr/libexec/sftp-server"
	[ -e /usr/lib/sftp-server ] || ln -s /usr/lib/openssh/sftp-server "$up/usr/lib/sftp-server"
	# The top-level trees a node does not see.
	_netns_covers=""
	for t in /*; do
		[ -d "$t" ] && [ ! -L "$t" ] || continue
		case $_netns_keep_top in *" ${t#/} "*) continue ;; esac
		_netns_covers="$_netns_covers $t"
	done
}

_netns_prepare_fs() {
	local n=$1 d up name
	d=$(lab_node_dir "$n")
	up=$d/upper
	name=$(lab_node_name "$n")
	cp -a "$STATE/template/upper" "$up"
	mkdir -p "$d/run" "$d/tmp" "$d/work/etc" "$d/work/opt" "$d/work/var" "$d/work/usr" "$d/work/root"
	chmod 1777 "$d/tmp"
	echo "$name" >"$up/etc/hostname"
	printf 'PATH=/usr/sbin:/usr/bin:/sbin:/bin\nexport PATH\nPS1="%s# "\n' "$name" >"$up/root/.profile"
	cp -p "$d/dropbear_ed25519_host_key" "$up/etc/dropbear/dropbear_ed25519_host_key"
}

# The node's init script (POSIX sh, runs as PID 1 of the node's PID namespace).
_netns_init_script() {
	local n=$1 d t run_last
	d=$(lab_node_dir "$n")
	echo "set -e"
	echo "hostname $(lab_node_name "$n")"
	for t in $_netns_overlays; do
		echo "mount -t overlay lab-$t -o lowerdir=/$t,upperdir=$d/upper/$t,workdir=$d/work/$t /$t"
	done
	# The bind whose target holds the state dir goes last (it hides the state dir's path).
	case $STATE/ in
	/tmp/*) run_last=tmp ;;
	*) run_last=run ;;
	esac
	if [ $run_last = run ]; then
		echo "mount --bind $d/tmp /tmp"
		echo "mount --bind $d/run /run"
	else
		echo "mount --bind $d/run /run"
		echo "mount --bind $d/tmp /tmp"
	fi
	for t in $_netns_covers; do
		echo "mount -t tmpfs -o ro,size=4k,mode=755 lab-hidden $t"
	done
	echo "exec dropbear -F -E -s -j -k -p 22 -P /run/dropbear.pid -r /etc/dropbear/dropbear_ed25519_host_key"
}

backend_up() {
	local n ns i name d
	_netns_template
	# Namespaces first (names recorded before they exist), then every veth in one batch.
	for n in $(lab_nodes_seq); do
		ns=$(_netns_ns "$n")
		lab_record netns "$ns"
		ip netns add "$ns"
	done
	for n in $(lab_nodes_seq); do
		ns=$(_netns_ns "$n")
		for i in 0 1 2 3 4; do
			echo "link add $(lab_port_name "$n" $i) type veth peer name eth$i netns $ns"
			echo "link set $(lab_port_name "$n" $i) master br$i up"
		done
	done | ip -n "$FABRIC" -batch - || lab_die "could not create the node veths"
	for n in $(lab_nodes_seq); do
		ns=$(_netns_ns "$n")
		name=$(lab_node_name "$n")
		d=$(lab_node_dir "$n")
		lab_node_ip_batch "$n" | ip -n "$ns" -batch - || lab_die "$name: could not configure its interfaces"
		_netns_prepare_fs "$n"
		_netns_init_script "$n" >"$d/init.sh"
		setsid ip netns exec "$ns" unshare --mount --uts --pid --fork --mount-proc --propagation private \
			-- /bin/sh "$d/init.sh" </dev/null >"$d/init.log" 2>&1 9>&- &
		echo $! >"$d/init.pid"
		lab_record pid "$! $name"
		[ "$n" = 2 ] && lab_crash_point node-2
	done
	# Record the node inits' namespaces (PID 1 inside is the child of the recorded unshare).
	for n in $(lab_nodes_seq); do
		_netns_record_init "$n" || lab_die "$(lab_node_name "$n") did not start: $(tail -n 5 "$(lab_node_dir "$n")/init.log")"
	done
}

# Wait for node N's init (dropbear, PID 1 of the node's PID namespace) and record its PID.
_netns_record_init() {
	local n=$1 d pid child="" i
	d=$(lab_node_dir "$n")
	pid=$(cat "$d/init.pid")
	for i in $(seq 1 500); do
		child=$(cat "/proc/$pid/task/$pid/children" 2>/dev/null || true)
		child=${child%% *}
		if [ -n "$child" ] && [ "$(readlink "/proc/$child/exe" 2>/dev/null)" = "$(command -v dropbear)" ]; then
			echo "$child" >"$d/node.pid"
			return 0
		fi
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.02
		: "$i"
	done
	return 1
}

# Kill every process whose network namespace is one of the named lab node namespaces. The
# node inits are among them, and each is PID 1 of its node's PID namespace, so everything
# started on a node over ssh (pods' processes included) dies with it.
_netns_kill_all() {
	local ns ids="" pids round sig
	for ns in "$@"; do
		ids="$ids net:[$(stat -L -c %i "/run/netns/$ns")]"
	done
	[ -n "$ids" ] || return 0
	for round in $(seq 1 40); do
		pids=$(_netns_pids_in "$ids")
		[ -n "$pids" ] || return 0
		if [ "$round" -le 20 ]; then sig=TERM; else sig=KILL; fi
		# shellcheck disable=SC2086
		kill -$sig $pids 2>/dev/null || true
		sleep 0.05
	done
	lab_die "processes still in lab namespaces after SIGKILL: $(_netns_pids_in "$ids")"
}

# PIDs whose network namespace id ("net:[inode]") is one of $1.
_netns_pids_in() {
	{ find /proc/[0-9]*/ns/net -maxdepth 0 -printf '%l %p\n' 2>/dev/null || true; } |
		awk -v ids=" $1 " -v self=$$ 'index(ids, " " $1 " ") { split($2, p, "/"); if (p[3] != self) print p[3] }' |
		sort -u | tr '\n' ' '
}

backend_down() {
	local nss=() ns
	# Node namespaces by name: the recorded ones and any <prefix>-vm-NNN left by a crash.
	for ns in /run/netns/"$LAB_PREFIX"-vm-[0-9][0-9][0-9]; do
		[ -e "$ns" ] && nss+=("${ns##*/}")
	done
	_netns_kill_all "${nss[@]}"
	for ns in "${nss[@]}"; do
		ip netns del "$ns" || lab_die "could not delete namespace $ns"
	done
}
