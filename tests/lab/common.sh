# shellcheck shell=bash
# tests/lab/common.sh - what both lab backends share. Sourced by tests/lab/lab (bash).
#
# THE BACKEND CONTRACT
# tests/lab/lab sources this file, then tests/lab/backend-$LAB.sh (LAB=netns|vm). The backend
# defines these shell functions:
#   backend_check   prerequisites only (tools, kernel features, root); die with a clear message.
#   backend_up      create nodes 1..$LAB_NODES. Node N (name `lab_node_name N`, vm-00N):
#                   - interfaces eth0..eth4 whose other ends are ports of bridges br0..br4 in
#                     the fabric namespace $FABRIC (made by common before backend_up), fabric
#                     side names `lab_port_name N I` (n00Ne0..n00Ne4) by convention;
#                   - addresses and link states as `lab_node_ip_batch N` prints them (iproute2
#                     batch lines: eth0 management, eth1 cluster, eth2..4 DOWN, no addresses);
#                   - hostname vm-00N; dropbear on port 22 with the host key
#                     $STATE/nodes/vm-00N/dropbear_ed25519_host_key, root's authorized_keys
#                     = $STATE/id_ed25519.pub, root's shell /bin/sh, sftp-server at both
#                     /usr/lib/sftp-server and /usr/libexec/sftp-server; NO Python;
#                   - records in $STATE whatever backend_down needs (PIDs, names); calls
#                     `lab_record KIND NAME` for each thing it creates, before creating it.
#                   It need not wait for ssh: common waits, then writes the base CNI config.
#                   Long-running processes it starts must not inherit fd 9 (the lab's
#                   lock, held by `lab up`/`down`): start them with `9>&-`.
#   backend_down    remove everything backend_up made, by recorded PIDs and names (names are
#                   derived from $LAB_PREFIX, so they are known even if $STATE is half-written).
#                   Must succeed on a half-made lab, after a crash, and when run twice, and
#                   must touch nothing it did not create.
#   backend_caps    (optional) print `key=yes|no` lines, e.g. ipvlan=no; they end up in the
#                   inventory as lab_caps.
#   backend_status  (optional) print backend lines for `lab status` (e.g. where a node's
#                   writes land on the host).
#   backend_upper_dir N  (optional) print the host directory where node N's writes to / land
#                   (the netns lab's overlay upper dirs); the self-tests then check it.
#   backend_selftests  (optional) the backend's own checks, run by `lab test` after the shared
#                   ones (tests/lab/selftests.sh); report with _t_ok, _t_fail, _t_check.
# Common (this file) owns: the state dir and lab.env, the fabric namespace with br0..br4, the
# controller veth $MGMT_IF, the route guard (also in ssh_config, for every connection), ssh
# keys, known_hosts, ssh_config, inventory.yml,
# the group_vars link, waiting for ssh and the base CNI config /etc/cni/net.d/10-bridge.conf.
#
# Environment: LAB (netns|vm), LAB_NODES (1..64, default 4), LAB_PREFIX (default xcm, 1..10
# of [a-z0-9], starting with a letter), LAB_NET (slot k, 0..9, default 0),
# LAB_STATE_DIR (default /run/xcluster-multus-lab); the state dir is $LAB_STATE_DIR/$LAB_PREFIX.
# Once a lab is up, its lab.env (not the environment) decides LAB, LAB_NODES and LAB_NET.
#
# Address plan (docs/DEVELOPMENT.md), node N, slot k:
#   eth0 198.19.(200+k).N/24 2001:db8:200:k::N/64 (controller .254 / ::fe on $MGMT_IF)
#   eth1 198.19.250.N/24 2001:db8:250::N/64; eth2..eth4 no addresses, DOWN
#   base CNI config cni-x / cbr0: 198.19.(128+N).0/24, 2001:db8:128:N::/64
#   lab self-tests (temporary, on macvlans over eth2..4): 198.19.24I.N/24, 2001:db8:24I::N/64

LAB_DIR=${LAB_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
# shellcheck disable=SC2034 # used by selftests.sh and the backends
REPO_DIR=$(cd "$LAB_DIR/../.." && pwd)
LAB_STATE_DIR=${LAB_STATE_DIR:-/run/xcluster-multus-lab}
LAB_PREFIX=${LAB_PREFIX:-xcm}
STATE=$LAB_STATE_DIR/$LAB_PREFIX
FABRIC=$LAB_PREFIX-fabric
MGMT_IF=$LAB_PREFIX-mgmt
LAB_NODES_MAX=64

lab_log() { printf 'lab[%s]: %s\n' "$LAB_PREFIX" "$*" >&2; }
lab_die() { printf 'lab[%s]: ERROR: %s\n' "$LAB_PREFIX" "$*" >&2; exit 1; }

# Load the settings of an existing lab; otherwise take them from the environment.
lab_settings() {
	if [ -f "$STATE/lab.env" ]; then
		local want_lab=${LAB:-}
		# shellcheck disable=SC1091
		. "$STATE/lab.env"
		if [ -n "$want_lab" ] && [ "$want_lab" != "$LAB" ]; then
			lab_log "note: lab $LAB_PREFIX is a LAB=$LAB lab; ignoring LAB=$want_lab"
		fi
	fi
	LAB=${LAB:-netns}
	LAB_NODES=${LAB_NODES:-4}
	LAB_NET=${LAB_NET:-0}
	LAB_K8S=${LAB_K8S:-0}
	case $LAB_K8S in 0 | 1) ;; *) lab_die "LAB_K8S='$LAB_K8S': expected 0 or 1 (1: a real kube-apiserver, tests/lab/k8s.sh)" ;; esac
	case $LAB in netns | vm) ;; *) lab_die "LAB='$LAB': expected netns or vm" ;; esac
	[[ $LAB_PREFIX =~ ^[a-z][a-z0-9]{0,9}$ ]] ||
		lab_die "LAB_PREFIX='$LAB_PREFIX': expected 1-10 characters [a-z0-9], starting with a letter"
	[[ $LAB_NODES =~ ^[1-9][0-9]*$ ]] && [ "$LAB_NODES" -le $LAB_NODES_MAX ] ||
		lab_die "LAB_NODES='$LAB_NODES': expected a number from 1 to $LAB_NODES_MAX"
	[[ $LAB_NET =~ ^([0-9]|auto)$ ]] || lab_die "LAB_NET='$LAB_NET': expected a slot number 0..9 or auto"
	case $LAB_STATE_DIR in
	/*) ;;
	*) lab_die "LAB_STATE_DIR='$LAB_STATE_DIR': expected an absolute path" ;;
	esac
	# ssh control sockets live in $STATE/cp (unix socket paths are limited to 107 bytes).
	[ ${#STATE} -le 56 ] || lab_die "LAB_STATE_DIR='$LAB_STATE_DIR': too long for ssh control sockets (at most $((56 - ${#LAB_PREFIX} - 1)) characters)"
	lab_nets
}

lab_nets() {
	MGMT_NET4=198.19.$((200 + ${LAB_NET/auto/0}))
	MGMT_NET6=2001:db8:200:${LAB_NET/auto/0}
}

# Who uses slot $1: an interface with its controller address, or another lab's lab.env.
lab_slot_users() {
	local k=$1 f
	ip -o -4 address show | awk -v a="198.19.$((200 + k)).254/" 'index($4, a) == 1 {print "interface " $2}'
	for f in "$LAB_STATE_DIR"/*/lab.env; do
		[ -f "$f" ] && [ "$f" != "$STATE/lab.env" ] || continue
		grep -qx "LAB_NET=$k" "$f" && echo "lab $(basename "$(dirname "$f")")"
	done
	return 0
}

# Settle LAB_NET (LAB_NET=auto: the first free slot from 9 down to 0). Caller holds the slots lock.
lab_pick_slot() {
	local k users
	if [ "$LAB_NET" = auto ]; then
		for k in 9 8 7 6 5 4 3 2 1 0; do
			[ -n "$(lab_slot_users $k)" ] || { LAB_NET=$k; break; }
		done
		[ "$LAB_NET" != auto ] || lab_die "LAB_NET=auto: every slot 0..9 is in use"
	else
		users=$(lab_slot_users "$LAB_NET")
		[ -z "$users" ] || lab_die "LAB_NET=$LAB_NET is in use by ${users//$'\n'/, }; choose another LAB_NET (or auto)"
	fi
	lab_nets
}

lab_node_name() { printf 'vm-%03d' "$1"; }
lab_node_dir() { printf '%s/nodes/%s' "$STATE" "$(lab_node_name "$1")"; }
lab_port_name() { printf 'n%03de%s' "$1" "$2"; }
lab_mgmt4() { printf '%s.%s' "$MGMT_NET4" "$1"; }
lab_mgmt6() { printf '%s::%s' "$MGMT_NET6" "$1"; }
lab_cluster4() { printf '198.19.250.%s' "$1"; }
lab_cluster6() { printf '2001:db8:250::%s' "$1"; }
lab_nodes_seq() { seq 1 "$LAB_NODES"; }

# Node N's side of the network, as iproute2 batch lines (`ip -batch -`, or prefix each with `ip`).
lab_node_ip_batch() {
	local n=$1
	cat <<EOF
link set lo up
address add $(lab_mgmt4 "$n")/24 dev eth0
address add $(lab_mgmt6 "$n")/64 dev eth0 nodad
link set eth0 up
address add $(lab_cluster4 "$n")/24 dev eth1
address add $(lab_cluster6 "$n")/64 dev eth1 nodad
link set eth1 up
link set eth2 down
link set eth3 down
link set eth4 down
EOF
}

# The lab's base CNI config as xcluster has it before multus arrives.
lab_base_cni_conf() {
	local n=$1
	cat <<EOF
{
  "cniVersion": "0.4.0",
  "name": "cni-x",
  "type": "bridge",
  "bridge": "cbr0",
  "isGateway": true,
  "ipMasq": false,
  "ipam": {
    "type": "host-local",
    "ranges": [
      [ { "subnet": "198.19.$((128 + n)).0/24" } ],
      [ { "subnet": "2001:db8:128:$n::/64" } ]
    ]
  }
}
EOF
}

# Append to the record of what this lab created (read by humans and by down).
lab_record() { printf '%s %s\n' "$1" "$2" >>"$STATE/created"; }

# Testing aid: LAB_CRASH_AT=<point> kills the running lab command with SIGKILL at that point,
# so no trap or cleanup runs: the self-tests use it to make a half-made lab.
lab_crash_point() {
	if [ "${LAB_CRASH_AT:-}" = "$1" ]; then
		lab_log "LAB_CRASH_AT=$1: killing myself with SIGKILL"
		kill -KILL $$
	fi
}

lab_common_check() {
	[ "$(id -u)" = 0 ] || lab_die "the lab needs root (network namespaces, bridges)"
	local c
	for c in ip ssh ssh-keygen scp sftp dropbearkey jq flock seq awk; do
		command -v "$c" >/dev/null || lab_die "'$c' not found: install it (see tests/lab/README.md)"
	done
}

# THE ROUTE GUARD: before anything is sent to a node, the management network must be routed
# through this lab's own interface. Refuses (exit 1) otherwise.
lab_route_guard() {
	local fam dst out
	for fam in 4 6; do
		if [ $fam = 4 ]; then dst=$(lab_mgmt4 1); else dst=$(lab_mgmt6 1); fi
		out=$(ip -$fam route get "$dst" 2>&1) ||
			lab_die "route guard: 'ip -$fam route get $dst' failed: $out; refusing to send anything"
		case " $out " in
		*" dev $MGMT_IF "*) ;;
		*) lab_die "route guard: $dst is routed as '$out', not through $MGMT_IF; refusing to send anything" ;;
		esac
	done
}

lab_ssh() {
	local node=$1
	shift
	ssh -F "$STATE/ssh_config" "$node" "$@"
}

# The fabric namespace: br0 management, br1 cluster, br2..br4 data segments; the controller's
# veth $MGMT_IF into br0.
lab_fabric_up() {
	local i
	! ip link show dev "$MGMT_IF" >/dev/null 2>&1 || lab_die "interface $MGMT_IF exists: run 'lab down' first"
	lab_record netns "$FABRIC"
	ip netns add "$FABRIC"
	ip netns exec "$FABRIC" sh -c 'echo 1 >/proc/sys/net/ipv6/conf/all/disable_ipv6 && echo 1 >/proc/sys/net/ipv6/conf/default/disable_ipv6'
	{
		echo "link set lo up"
		for i in 0 1 2 3 4; do
			echo "link add br$i type bridge mcast_snooping 0"
			echo "link set br$i up"
		done
	} | ip -n "$FABRIC" -batch -
	lab_record link "$MGMT_IF"
	ip link add "$MGMT_IF" type veth peer name mgmt netns "$FABRIC"
	ip -n "$FABRIC" link set mgmt master br0 up
	ip address add "$MGMT_NET4.254/24" dev "$MGMT_IF"
	ip address add "$MGMT_NET6::fe/64" dev "$MGMT_IF" nodad
	ip link set "$MGMT_IF" up
}

lab_fabric_down() {
	if ip link show dev "$MGMT_IF" >/dev/null 2>&1; then
		ip link del dev "$MGMT_IF" 2>/dev/null || true
	fi
	if [ -e "/run/netns/$FABRIC" ]; then
		ip netns del "$FABRIC" || lab_die "could not delete namespace $FABRIC"
	fi
}

lab_keys() {
	local n d pids=() pid
	ssh-keygen -q -t ed25519 -N '' -C "xcluster-multus-lab-$LAB_PREFIX" -f "$STATE/id_ed25519"
	for n in $(lab_nodes_seq); do
		d=$(lab_node_dir "$n")
		mkdir -p "$d"
		(
			dropbearkey -t ed25519 -f "$d/dropbear_ed25519_host_key" >/dev/null 2>&1 ||
				lab_die "dropbearkey failed for $(lab_node_name "$n")"
			printf '%s,%s,%s %s\n' "$(lab_node_name "$n")" "$(lab_mgmt4 "$n")" "$(lab_mgmt6 "$n")" \
				"$(dropbearkey -y -f "$d/dropbear_ed25519_host_key" | awk '/^ssh-/ {print $1, $2}')" \
				>"$d/known_host"
		) &
		pids+=($!)
	done
	for pid in "${pids[@]}"; do wait "$pid" || lab_die "could not make the nodes' host keys"; done
	for n in $(lab_nodes_seq); do cat "$(lab_node_dir "$n")/known_host"; done >"$STATE/known_hosts"
}

lab_ssh_config() {
	local n
	# The route guard again, for every ssh/scp/sftp/ansible connection made through ssh_config.
	cat >"$STATE/route-guard" <<EOF
#!/bin/sh
# Route guard of lab $LAB_PREFIX (generated): exit 0 only if the management network (and the
# address given, if any) is routed through $MGMT_IF.
for a in $(lab_mgmt4 1) $(lab_mgmt6 1) \${1:-}; do
	case \$a in *[!0-9a-f.:]* | '') continue ;; esac
	ip route get "\$a" 2>/dev/null | grep -q " dev $MGMT_IF " ||
		{ echo "lab route guard: \$a is not routed through $MGMT_IF; refusing to connect" >&2; exit 1; }
done
EOF
	chmod 755 "$STATE/route-guard"
	{
		echo "# Generated by tests/lab/lab up. Use: ssh -F $STATE/ssh_config vm-002"
		echo "# The route guard: no connection unless the management network goes through $MGMT_IF."
		printf 'Match !exec "%s %%h"\n  ProxyCommand false\n' "$STATE/route-guard"
		for n in $(lab_nodes_seq); do
			printf 'Host %s\n  HostName %s\n' "$(lab_node_name "$n")" "$(lab_mgmt4 "$n")"
		done
		cat <<EOF
Host *
  User root
  IdentityFile $STATE/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $STATE/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  PasswordAuthentication no
  KbdInteractiveAuthentication no
  BatchMode yes
  Compression no
  ConnectTimeout 5
  LogLevel ERROR
EOF
	} >"$STATE/ssh_config"
}

lab_caps_yaml() {
	local line
	echo "    lab_caps:"
	if declare -F backend_caps >/dev/null; then
		backend_caps | while IFS='=' read -r key val; do
			[ -n "$key" ] || continue
			case $val in yes) line=true ;; *) line=false ;; esac
			printf '      %s: %s\n' "$key" "$line"
		done
	else
		echo "      {}"
	fi
}

lab_inventory() {
	local n
	{
		cat <<EOF
---
# Generated by tests/lab/lab up (LAB=$LAB, prefix $LAB_PREFIX, slot $LAB_NET, $LAB_NODES nodes).
# Do not edit: group_vars/ beside this file links to tests/lab/group_vars/.
all:
  children:
    xcluster:
      hosts:
EOF
		for n in $(lab_nodes_seq); do
			printf '        %s:\n          ansible_host: %s\n' "$(lab_node_name "$n")" "$(lab_mgmt4 "$n")"
		done
		cat <<EOF
    xcluster_control_plane:
      hosts:
        vm-001:
  vars:
    ansible_user: root
    ansible_ssh_private_key_file: $STATE/id_ed25519
    ansible_ssh_common_args: -F $STATE/ssh_config -o UserKnownHostsFile=$STATE/known_hosts
    ansible_ssh_args: -o ControlMaster=auto -o ControlPersist=60s -o ControlPath=$STATE/cp/%C -o Compression=no -o ServerAliveInterval=5 -o ServerAliveCountMax=3
    ansible_ssh_transfer_method: sftp
    lab_backend: $LAB
    lab_prefix: $LAB_PREFIX
    lab_net: $LAB_NET
    lab_state_dir: $STATE
    lab_k8s: $([ "$LAB_K8S" = 1 ] && echo true || echo false)
EOF
		if [ "$LAB_K8S" = 1 ]; then
			cat <<EOF
    lab_k8s_server: $(k8s_server)
    lab_k8s_admin_kubeconfig: $K8S_DIR/admin.kubeconfig
    lab_k8s_kubectl: $(k8s_bin_dir)/kubectl
EOF
		fi
		lab_caps_yaml
	} >"$STATE/inventory.yml"
	ln -sfn "$LAB_DIR/group_vars" "$STATE/group_vars"
	mkdir -p "$STATE/cp"
	chmod 700 "$STATE/cp"
}

# Wait until every node answers over ssh with its own hostname, then write its base CNI
# config (not with LAB_OVLS: the nodes booted from overlays, whose bridge rc wrote it).
# Nodes are handled in parallel.
lab_wait_and_configure() {
	local n name deadline=$((SECONDS + ${LAB_SSH_TIMEOUT:-60})) pids=() failed=0 pid
	local write='mkdir -p /etc/cni/net.d && cat >/etc/cni/net.d/10-bridge.conf'
	[ -z "${LAB_OVLS:-}" ] || write='cat >/dev/null'
	for n in $(lab_nodes_seq); do
		name=$(lab_node_name "$n")
		lab_base_cni_conf "$n" >"$(lab_node_dir "$n")/10-bridge.conf"
		(
			while :; do
				out=$(lab_ssh "$name" "test \"\$(hostname)\" = $name || { echo \"hostname is \$(hostname)\"; exit 3; }
					$write" \
					<"$(lab_node_dir "$n")/10-bridge.conf" 2>&1) && exit 0
				rc=$?
				[ $rc = 3 ] && lab_die "$name: wrong node behind $(lab_mgmt4 "$n"): $out"
				[ $SECONDS -lt $deadline ] || lab_die "$name: no ssh after ${LAB_SSH_TIMEOUT:-60}s: $out"
				sleep 0.1
			done
		) &
		pids+=($!)
	done
	for pid in "${pids[@]}"; do
		wait "$pid" || failed=1
	done
	[ $failed = 0 ] || lab_die "not every node came up (see above)"
}

# Close the ssh control masters Ansible opened through this lab's inventory.
lab_close_control_masters() {
	local s
	[ -d "$STATE/cp" ] || return 0
	for s in "$STATE"/cp/*; do
		[ -S "$s" ] || continue
		ssh -o ControlPath="$s" -O exit lab-node >/dev/null 2>&1 || true
		rm -f "$s"
	done
}

lab_up() {
	local start
	start=$(date +%s.%N)
	lab_common_check
	backend_check
	[ "$LAB_K8S" = 0 ] || k8s_check
	mkdir -p "$LAB_STATE_DIR/.locks"
	if [ -e "$STATE" ] || [ -e "/run/netns/$FABRIC" ]; then
		lab_die "lab $LAB_PREFIX exists (state $STATE or namespace $FABRIC): run 'lab down' first"
	fi
	mkdir -m 755 "$STATE"
	: >"$STATE/created"
	# A failed up leaves nothing behind (a SIGKILLed one is cleaned by 'lab down').
	trap 'rc=$?; trap - EXIT; if [ $rc != 0 ] && [ -z "${LAB_KEEP_ON_FAIL:-}" ]; then lab_log "up failed; tearing down"; lab_down >&2 || true; fi; exit $rc' EXIT
	# The slot is chosen and taken (lab.env, controller address) under one machine-wide lock.
	exec 8>"$LAB_STATE_DIR/.locks/.slots"
	flock -w 60 8 || lab_die "could not take $LAB_STATE_DIR/.locks/.slots"
	lab_pick_slot
	printf 'LAB=%s\nLAB_NODES=%s\nLAB_NET=%s\nLAB_K8S=%s\n' "$LAB" "$LAB_NODES" "$LAB_NET" "$LAB_K8S" >"$STATE/lab.env"
	lab_fabric_up
	exec 8>&-
	lab_crash_point fabric
	lab_keys
	backend_up
	lab_crash_point nodes
	lab_route_guard
	lab_ssh_config
	lab_inventory
	lab_wait_and_configure
	[ "$LAB_K8S" = 0 ] || k8s_up
	trap - EXIT
	lab_log "up: $LAB_NODES nodes (LAB=$LAB, slot $LAB_NET) in $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')s"
	lab_log "inventory: $STATE/inventory.yml; ssh: ssh -F $STATE/ssh_config vm-001"
}

lab_down() {
	if [ ! -e "$STATE" ] && [ ! -e "/run/netns/$FABRIC" ] && ! ip link show dev "$MGMT_IF" >/dev/null 2>&1 &&
		! ls /run/netns/"$LAB_PREFIX"-vm-* >/dev/null 2>&1; then
		lab_log "down: nothing to do (no lab $LAB_PREFIX)"
		return 0
	fi
	lab_close_control_masters
	k8s_down
	backend_down
	lab_fabric_down
	if [ -z "${LAB_KEEP_STATE:-}" ]; then
		rm -rf "$STATE"
	fi
	lab_log "down: lab $LAB_PREFIX removed"
}

lab_status() {
	local n name rc=0 pidinfo
	if [ ! -f "$STATE/lab.env" ]; then
		echo "lab $LAB_PREFIX: down (no $STATE/lab.env)"
		return 1
	fi
	echo "lab $LAB_PREFIX: LAB=$LAB nodes=$LAB_NODES slot=$LAB_NET state=$STATE"
	echo "inventory: $STATE/inventory.yml"
	echo "ssh: ssh -F $STATE/ssh_config vm-001"
	if ! (lab_route_guard) 2>/dev/null; then
		echo "route guard: FAILS (management network not through $MGMT_IF)"
		return 1
	fi
	for n in $(lab_nodes_seq); do
		name=$(lab_node_name "$n")
		if lab_ssh "$name" true </dev/null >/dev/null 2>&1; then pidinfo=ssh-ok; else
			pidinfo=ssh-FAILS
			rc=1
		fi
		printf '%s %s %s\n' "$name" "$(lab_mgmt4 "$n")" "$pidinfo"
	done
	if declare -F backend_status >/dev/null; then backend_status; fi
	[ "$LAB_K8S" = 0 ] || k8s_status
	return $rc
}
