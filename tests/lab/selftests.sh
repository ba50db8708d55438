# shellcheck shell=bash
# tests/lab/selftests.sh - the lab's self-tests against a running lab (`tests/lab/lab test`).
# Sourced by tests/lab/lab after common.sh and the backend. Prints one line per check
# ("ok N - ..." / "not ok N - ..." with details), exits non-zero if any check failed.
# LAB_TEST_FRESH=1 (set by tests/lab/selftest) adds the checks that hold only on a lab nothing
# has changed yet (eth2..4 DOWN, the base CNI config in place).

_t_n=0
_t_failed=0

_t_ok() {
	_t_n=$((_t_n + 1))
	echo "ok $_t_n - $1"
}
_t_fail() {
	_t_n=$((_t_n + 1))
	_t_failed=$((_t_failed + 1))
	echo "not ok $_t_n - $1"
	[ -z "${2:-}" ] || printf '%s\n' "$2" | sed 's/^/#   /'
}
_t_check() { # _t_check DESCRIPTION OUTPUT: ok when OUTPUT is empty
	if [ -z "$2" ]; then _t_ok "$1"; else _t_fail "$1" "$2"; fi
}

# The canonical (as `ip` prints it) IPv6 address of node N on eth0.
_t_mgmt6() { if [ "$LAB_NET" = 0 ]; then printf '2001:db8:200::%s' "$1"; else lab_mgmt6 "$1"; fi; }

_t_ansible_env() {
	[ -x "$REPO_DIR/.venv/bin/ansible" ] && PATH=$REPO_DIR/.venv/bin:$PATH
	export PATH ANSIBLE_CONFIG=${ANSIBLE_CONFIG:-$REPO_DIR/ansible.cfg}
	command -v ansible >/dev/null || lab_die "ansible not found: make venv"
}

_t_route_guard() {
	local out
	if out=$( (lab_route_guard) 2>&1); then _t_ok "route guard: management network goes through $MGMT_IF"; else
		_t_fail "route guard" "$out"
	fi
	# The guard must be able to refuse: against another interface's name it has to fail.
	if out=$( (MGMT_IF=lo lab_route_guard) 2>&1); then
		_t_fail "route guard refuses a route that does not go through the lab's interface" "$out"
	else
		_t_ok "route guard refuses a route that does not go through the lab's interface"
	fi
}

# The same guard is in ssh_config: through a copy whose guard expects another interface, ssh
# must refuse to connect.
_t_ssh_guard() {
	local tmp out
	tmp=$(mktemp -d)
	sed "s/ dev $MGMT_IF / dev lo /" "$STATE/route-guard" >"$tmp/route-guard"
	chmod 755 "$tmp/route-guard"
	sed "s|$STATE/route-guard|$tmp/route-guard|" "$STATE/ssh_config" >"$tmp/ssh_config"
	if out=$(ssh -F "$tmp/ssh_config" vm-001 true 2>&1 </dev/null); then
		_t_fail "ssh_config's route guard refuses to connect when the route is not the lab's" "$out"
	else
		case $out in
		*"lab route guard"*) _t_ok "ssh_config's route guard refuses to connect when the route is not the lab's" ;;
		*) _t_fail "ssh_config's route guard refuses to connect when the route is not the lab's" "$out" ;;
		esac
	fi
	rm -rf "$tmp"
}

_t_fabric() {
	local i want got out=""
	for i in 0 1 2 3 4; do
		want=$LAB_NODES
		[ $i = 0 ] && want=$((LAB_NODES + 1))
		got=$(ip -n "$FABRIC" -o link show master "br$i" 2>/dev/null | wc -l)
		[ "$got" = "$want" ] || out="$out br$i has $got ports, expected $want;"
	done
	_t_check "fabric: br0 has every node and the controller, br1..br4 every node" "$out"
}

# Per node, in parallel: hostname, addresses, link states, base CNI config.
_t_nodes() {
	local n name dir pids=() out="" fresh=${LAB_TEST_FRESH:-}
	dir=$(mktemp -d)
	for n in $(lab_nodes_seq); do
		name=$(lab_node_name "$n")
		lab_ssh "$name" "bad=
fail() { bad=1; echo \"$name: \$*\"; }
[ \"\$(hostname)\" = $name ] || fail \"hostname is \$(hostname)\"
a=\$(ip -o address show dev eth0) || fail 'no eth0'
case \"\$a\" in *' $(lab_mgmt4 "$n")/24 '*) ;; *) fail 'eth0 lacks $(lab_mgmt4 "$n")/24' ;; esac
case \"\$a\" in *' $(_t_mgmt6 "$n")/64 '*) ;; *) fail 'eth0 lacks $(_t_mgmt6 "$n")/64' ;; esac
a=\$(ip -o address show dev eth1) || fail 'no eth1'
case \"\$a\" in *' $(lab_cluster4 "$n")/24 '*) ;; *) fail 'eth1 lacks $(lab_cluster4 "$n")/24' ;; esac
case \"\$a\" in *' $(lab_cluster6 "$n")/64 '*) ;; *) fail 'eth1 lacks $(lab_cluster6 "$n")/64' ;; esac
for i in 2 3 4; do
	ip link show dev eth\$i >/dev/null 2>&1 || { fail \"no eth\$i\"; continue; }
	[ -z \"\$(ip -o address show dev eth\$i scope global)\" ] || fail \"eth\$i has an address\"
	if [ -n '$fresh' ] && ip -o link show dev eth\$i | grep -q '[<,]UP[,>]'; then fail \"eth\$i is up\"; fi
done
for f in /usr/lib/sftp-server /usr/libexec/sftp-server; do [ -x \$f ] || fail \"no \$f\"; done
command -v jq >/dev/null || fail 'no jq'
f=/etc/cni/net.d/10-bridge.conf
if [ -n '$fresh' ] || [ -e \$f ]; then
	jq -e '.name == \"cni-x\" and .type == \"bridge\" and .bridge == \"cbr0\" and
		.ipam.ranges[0][0].subnet == \"198.19.$((128 + n)).0/24\" and
		.ipam.ranges[1][0].subnet == \"2001:db8:128:$n::/64\"' \$f >/dev/null 2>&1 || fail \"\$f is not the lab's base config\"
fi
[ -z \"\$bad\" ]" </dev/null >"$dir/$n" 2>&1 &
		pids+=($!)
	done
	for n in "${pids[@]}"; do wait "$n" || true; done
	out=$(cat "$dir"/*)
	rm -rf "$dir"
	_t_check "every node answers over ssh with its own hostname, addresses, eth2..4 without addresses${fresh:+ and DOWN}, sftp-server at both paths, jq, base CNI config" "$out"
}

_t_no_python() {
	local n name out="" o
	for n in $(lab_nodes_seq); do
		name=$(lab_node_name "$n")
		o=$(lab_ssh "$name" 'for p in python python3 python3.11 python3.12 python3.13 python2 pip pip3 pydoc3; do
	command -v "$p" && echo "found $p"; done
for f in /usr/bin/python3 /usr/bin/python3.11 /usr/local/bin/python3 /usr/libexec/platform-python \
	/root/.pyenv /root/.pyenv/shims/python3 /root/.ansible/test /root/.cargo /work/main /work/main/.venv/bin/python \
	/usr/lib/google-cloud-sdk; do
	[ -e "$f" ] && echo "visible: $f"; done
[ -z "$(ls -A /work 2>/dev/null)" ] || echo "/work is not empty"
exit 0' </dev/null 2>&1) || o="ssh failed: $o"
		[ -z "$o" ] || out="$out$name: $o"$'\n'
	done
	_t_check "no Python on any node (command -v python3 and friends fail; pyenv, /work, the venv invisible)" "${out%$'\n'}"
	# The thorough one, on vm-001: no python* program in any bin directory and no python* ELF
	# executable anywhere in its filesystem.
	o=$(lab_ssh vm-001 'elf=$(printf "\177ELF")
find / \( -path /proc -o -path /sys -o -path /dev \) -prune -o -name "python*" ! -type d -print 2>/dev/null |
while read -r f; do
	case $f in */bin/* | */sbin/*) echo "$f"; continue ;; esac
	[ -f "$f" ] && [ -x "$f" ] && [ "$(head -c 4 "$f")" = "$elf" ] && echo "$f"
done; exit 0' </dev/null 2>&1)
	_t_check "vm-001: no python* in any bin directory, no python* ELF executable anywhere (find /)" "$o"
}

_t_isolation() {
	local tok out="" n name up f
	tok=lab-selftest-$$-$RANDOM
	if ! out=$(lab_ssh vm-001 "for d in /root /etc /opt /var /tmp; do echo $tok >\$d/$tok; done" </dev/null 2>&1); then
		_t_fail "vm-001 can write /root /etc /opt /var /tmp" "$out"
		return
	fi
	for n in $(seq 2 "$LAB_NODES"); do
		name=$(lab_node_name "$n")
		out="$out$(lab_ssh "$name" "for d in /root /etc /opt /var /tmp; do [ ! -e \$d/$tok ] || echo \"$name sees \$d/$tok\"; done" </dev/null 2>&1)"
	done
	for f in /root /etc /opt /var /tmp; do
		[ ! -e "$f/$tok" ] || out="$out the host sees $f/$tok;"
	done
	_t_check "a file written on vm-001 is absent on the other nodes and on the host" "$out"
	if declare -F backend_upper_dir >/dev/null; then
		up=$(backend_upper_dir 1)
		out=""
		for f in root etc opt var; do
			[ "$(cat "$up/$f/$tok" 2>/dev/null)" = "$tok" ] || out="$out $up/$f/$tok missing;"
		done
		_t_check "vm-001's writes are inspectable on the host in $up" "$out"
	fi
	out=$(lab_ssh vm-001 "for d in /root /etc /opt /var /tmp; do rm -f \$d/$tok; done" </dev/null 2>&1)
	_t_check "vm-001 removes its test files" "$out"
}

_t_ansible() {
	local out rc n name bad="" inv=$STATE/inventory.yml probe
	_t_ansible_env
	out=$(ansible -i "$inv" xcluster -o -m ansible.builtin.raw -a hostname 2>&1) && rc=0 || rc=$?
	for n in $(lab_nodes_seq); do
		name=$(lab_node_name "$n")
		printf '%s\n' "$out" | grep -q "^$name | CHANGED | rc=0 | (stdout) $name" || bad="$bad $name"
	done
	if [ $rc = 0 ] && [ -z "$bad" ]; then _t_ok "ansible -m ansible.builtin.raw works on every node"; else
		_t_fail "ansible -m ansible.builtin.raw works on every node (rc=$rc, wrong:$bad)" "$out"
	fi
	out=$(ansible -i "$inv" xcluster -o -m ansible.builtin.ping 2>&1) && rc=0 || rc=$?
	bad=""
	for n in $(lab_nodes_seq); do
		name=$(lab_node_name "$n")
		printf '%s\n' "$out" | grep "^$name | FAILED" | grep -qi 'interpreter.*not found' || bad="$bad $name"
	done
	if [ $rc != 0 ] && [ -z "$bad" ]; then
		_t_ok "ansible -m ansible.builtin.ping fails on every node: no Python interpreter"
	else
		_t_fail "ansible -m ansible.builtin.ping fails on every node: no Python interpreter (rc=$rc, wrong:$bad)" "$out"
	fi
	probe=$(mktemp)
	printf '#!/bin/sh\necho "script-ran-on-$(hostname)"\n' >"$probe"
	out=$(ansible -i "$inv" xcluster -o -m ansible.builtin.script -a "$probe" 2>&1) && rc=0 || rc=$?
	rm -f "$probe"
	bad=""
	for n in $(lab_nodes_seq); do
		name=$(lab_node_name "$n")
		printf '%s\n' "$out" | grep "^$name | CHANGED" | grep -q "script-ran-on-$name" || bad="$bad $name"
	done
	if [ $rc = 0 ] && [ -z "$bad" ]; then _t_ok "ansible -m ansible.builtin.script (sftp transfer) works on every node"; else
		_t_fail "ansible -m ansible.builtin.script works on every node (rc=$rc, wrong:$bad)" "$out"
	fi
}

# eth2..4 of vm-001 and vm-002 reach each other at L2: a macvlan over each (the interface set
# up for the test if it was down, and put back as it was), an address from 198.19.240.0/21.
_t_l2() {
	local i a b out setup cleanup
	if [ "$LAB_NODES" -lt 2 ]; then
		_t_ok "eth2..4 L2 between two nodes # SKIP one node only"
		return
	fi
	for i in 2 3 4; do
		for b in 1 2; do
			setup="set -e
if ip -o link show dev eth$i | grep -q '[<,]UP[,>]'; then echo 1; else echo 0; fi >/tmp/lab-l2-eth$i.was-up
ip link set eth$i up
ip link add lt$i link eth$i type macvlan mode bridge
ip address add 198.19.24$i.$b/24 dev lt$i
ip address add 2001:db8:24$i::$b/64 dev lt$i nodad
ip link set lt$i up"
			out=$(lab_ssh "$(lab_node_name $b)" "$setup" </dev/null 2>&1) || break
		done
		if [ -z "$out" ]; then
			out=$(lab_ssh vm-001 "ping -c 1 -W 3 198.19.24$i.2 >/dev/null || echo 'no IPv4 reply over eth$i'
ping -c 1 -W 3 2001:db8:24$i::2 >/dev/null || echo 'no IPv6 reply over eth$i'" </dev/null 2>&1)
		fi
		cleanup="ip link del lt$i 2>/dev/null
[ \"\$(cat /tmp/lab-l2-eth$i.was-up 2>/dev/null)\" = 1 ] || ip link set eth$i down
rm -f /tmp/lab-l2-eth$i.was-up
[ -z \"\$(ip -o address show dev eth$i scope global)\" ] || echo 'eth$i kept an address'"
		for a in 1 2; do
			out="$out$(lab_ssh "$(lab_node_name $a)" "$cleanup" </dev/null 2>&1)"
		done
		_t_check "vm-001 and vm-002 reach each other at L2 over eth$i (macvlan, IPv4 and IPv6), eth$i left as it was" "$out"
	done
}

_t_transfer() {
	local tmp tok sum last out
	tmp=$(mktemp -d)
	tok=lab-selftest-$$-$RANDOM
	last=$(lab_node_name "$LAB_NODES")
	head -c 262144 /dev/urandom >"$tmp/payload"
	sum=$(sha256sum <"$tmp/payload" | cut -d' ' -f1)
	out=$(scp -F "$STATE/ssh_config" -q "$tmp/payload" "vm-001:/tmp/$tok.scp" 2>&1 &&
		lab_ssh vm-001 "sha256sum /tmp/$tok.scp; rm -f /tmp/$tok.scp" </dev/null 2>&1) || true
	case $out in "$sum "*) _t_ok "scp to vm-001" ;; *) _t_fail "scp to vm-001" "$out" ;; esac
	out=$(printf 'put %s /tmp/%s.sftp\nget /tmp/%s.sftp %s\nrm /tmp/%s.sftp\n' \
		"$tmp/payload" "$tok" "$tok" "$tmp/back" "$tok" | sftp -F "$STATE/ssh_config" -q -b - "$last" 2>&1) || true
	if [ -f "$tmp/back" ] && [ "$(sha256sum <"$tmp/back" | cut -d' ' -f1)" = "$sum" ]; then
		_t_ok "sftp put and get on $last"
	else
		_t_fail "sftp put and get on $last" "$out"
	fi
	rm -rf "$tmp"
}

lab_selftests() {
	local start
	start=$(date +%s.%N)
	echo "# lab self-tests: lab $LAB_PREFIX, LAB=$LAB, $LAB_NODES nodes, slot $LAB_NET"
	_t_route_guard
	lab_route_guard # nothing goes to a node unless the guard holds
	_t_ssh_guard
	_t_fabric
	_t_nodes
	_t_no_python
	_t_isolation
	_t_ansible
	_t_l2
	_t_transfer
	# The backend's own checks (e.g. the VM lab's busybox userland, ipvlan), same reporting.
	if declare -F backend_selftests >/dev/null; then backend_selftests; fi
	echo "1..$_t_n"
	echo "# $((_t_n - _t_failed)) passed, $_t_failed failed in $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')s"
	[ "$_t_failed" = 0 ]
}
