# shellcheck shell=bash
# tests/lab/backend-vm.sh - lab nodes as qemu VMs, as close to xcluster's as this machine
# allows (LAB=vm). Implements the backend contract described at the top of tests/lab/common.sh.
#
# Node N (vm-00N) is a qemu-system-x86_64 under TCG (this machine's /dev/kvm cannot boot a stock
# kernel) running in the fabric namespace, with
#   - Debian's kernel and the initramfs tests/lab/vm/build-initramfs makes (cached) from this
#     machine's packages: busybox userland (`sh` is busybox ash), iproute2 `ip` (a bare `ip`
#     is iproute2's, as on xcluster), jq, dropbear, sftp-server, the modules for virtio-net,
#     macvlan, ipvlan, bridge, veth (loaded at boot), dummy and 8021q (on demand). No Python.
#   - a small per-VM archive appended to it ($STATE/nodes/vm-00N/root/): hostname, /etc/hosts,
#     the iproute2 batch of `lab_node_ip_batch N`, the lab's host key and authorized_keys;
#   - five virtio NICs eth0..eth4 (MAC 02:00:00:00:0I:NN) on taps n00Ne0..4 (`lab_port_name`),
#     ports of br0..br4 in $FABRIC;
#   - the root filesystem in RAM (tmpfs): what a node writes is gone when it stops.
# The VM's /init is tests/lab/vm/init. Its console goes to $STATE/nodes/vm-00N/console.log.
#
# Environment: LAB_VM_MEM (MiB per VM, default 1024: the root filesystem is in RAM and the
# collection's binaries land there, ~200 MiB and twice that while a push is staged; qemu only
# takes from the host what the guest touches),
# LAB_VM_QEMU (default qemu-system-x86_64), LAB_VM_ACCEL (default tcg,tb-size=32; e.g. kvm
# where /dev/kvm can boot a stock kernel, which this machine's cannot), LAB_VM_KVER and LAB_VM_BUSYBOX (see
# tests/lab/vm/build-initramfs), XDG_CACHE_HOME (the cache of kernel and initramfs).

LAB_VM_MEM=${LAB_VM_MEM:-1024}
LAB_VM_QEMU=${LAB_VM_QEMU:-qemu-system-x86_64}
LAB_VM_ACCEL=${LAB_VM_ACCEL:-tcg,tb-size=32}

# The kernel's command line. The crypto self-tests (cryptomgr, the KDF and encrypted-keys
# initcalls) cost a VM under TCG 1-2 s of CPU per boot and test nothing the lab needs.
_vm_append="console=ttyS0 quiet panic=-1 cryptomgr.notests initcall_blacklist=crypto_kdf108_init,init_encrypted"

_vm_mac() { printf '02:00:00:00:%02x:%02x' "$2" "$1"; }

backend_check() {
	local c
	for c in "$LAB_VM_QEMU" cpio gzip depmod modprobe ldd dpkg-deb; do
		command -v "$c" >/dev/null || lab_die "LAB=vm needs '$c' (apt-get install qemu-system-x86 cpio kmod)"
	done
	[ -c /dev/net/tun ] || lab_die "LAB=vm needs /dev/net/tun (modprobe tun)"
	if ! [[ $LAB_VM_MEM =~ ^[0-9]+$ ]] || [ "$LAB_VM_MEM" -lt 96 ]; then
		lab_die "LAB_VM_MEM='$LAB_VM_MEM': expected MiB per VM, at least 96"
	fi
	[ -x /usr/lib/openssh/sftp-server ] ||
		lab_die "LAB=vm needs /usr/lib/openssh/sftp-server (apt-get install openssh-sftp-server)"
	command -v dropbear >/dev/null || lab_die "LAB=vm needs dropbear (apt-get install dropbear-bin)"
	ls /boot/vmlinuz-* >/dev/null 2>&1 || lab_die "LAB=vm needs a kernel in /boot (apt-get install linux-image-amd64)"
}

backend_caps() {
	printf '%s\n' ipvlan=yes vlan=yes dummy=yes macvlan=yes busybox=yes
}

backend_status() {
	local n d pid rss cpu
	for n in $(lab_nodes_seq); do
		d=$(lab_node_dir "$n")
		pid=$(cat "$d/qemu.pid" 2>/dev/null || echo '?')
		rss=$(awk '/^VmRSS:/ {printf "%dMiB", $2 / 1024}' "/proc/$pid/status" 2>/dev/null || true)
		cpu=$(awk '{printf "%.1fs", ($14 + $15) / 100}' "/proc/$pid/stat" 2>/dev/null || true)
		printf '%s qemu-pid=%s rss=%s cpu=%s console=%s/console.log\n' \
			"$(lab_node_name "$n")" "$pid" "${rss:-?}" "${cpu:-?}" "$d"
	done
}

# The per-VM archive's tree: identity, network, keys.
_vm_node_tree() {
	local n=$1 d r e name
	d=$(lab_node_dir "$n")
	r=$d/root
	name=$(lab_node_name "$n")
	rm -rf "$r"
	mkdir -p "$r/etc/lab" "$r/etc/dropbear" "$r/root/.ssh"
	echo "$name" >"$r/etc/hostname"
	{
		printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n'
		for e in $(lab_nodes_seq); do printf '%s\t%s\n' "$(lab_mgmt4 "$e")" "$(lab_node_name "$e")"; done
	} >"$r/etc/hosts"
	lab_node_ip_batch "$n" >"$r/etc/lab/ip.batch"
	cp "$d/dropbear_ed25519_host_key" "$r/etc/dropbear/dropbear_ed25519_host_key"
	cp "$STATE/id_ed25519.pub" "$r/root/.ssh/authorized_keys"
	printf 'PATH=/usr/sbin:/usr/bin:/sbin:/bin\nexport PATH\nPS1="%s# "\n' "$name" >"$r/root/.profile"
	chmod 700 "$r/root" "$r/root/.ssh"
	chmod 600 "$r/etc/dropbear/dropbear_ed25519_host_key" "$r/root/.ssh/authorized_keys"
	# LAB_OVLS: overlays (tars) /init unpacks in this order, then it runs their init.d .rc's
	local t k=0
	for t in ${LAB_OVLS:-}; do
		k=$((k + 1))
		mkdir -p "$r/etc/lab/ovl"
		cp "$t" "$r/etc/lab/ovl/$(printf %02d $k).tar" || lab_die "LAB_OVLS: cannot read $t"
	done
}

backend_up() {
	local n i d name kernel="" initrd="" line nics pid
	while read -r line; do
		case $line in KERNEL=*) kernel=${line#KERNEL=} ;; INITRD=*) initrd=${line#INITRD=} ;; esac
	done < <("$LAB_DIR/vm/build-initramfs" 9>&-)
	if [ -z "$kernel" ] || [ -z "$initrd" ]; then
		lab_die "tests/lab/vm/build-initramfs failed (see above)"
	fi
	# Taps (names recorded before they exist), all in one batch.
	for n in $(lab_nodes_seq); do
		for i in 0 1 2 3 4; do lab_record tap "$FABRIC/$(lab_port_name "$n" $i)"; done
	done
	for n in $(lab_nodes_seq); do
		for i in 0 1 2 3 4; do
			echo "tuntap add dev $(lab_port_name "$n" $i) mode tap"
			echo "link set $(lab_port_name "$n" $i) master br$i up"
		done
	done | ip -n "$FABRIC" -batch - || lab_die "could not create the VMs' taps"
	for n in $(lab_nodes_seq); do
		d=$(lab_node_dir "$n")
		name=$(lab_node_name "$n")
		_vm_node_tree "$n"
		{ cat "$initrd" && (cd "$d/root" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet); } \
			>"$d/initrd" || lab_die "$name: could not make its initramfs"
		nics=()
		for i in 0 1 2 3 4; do
			nics+=(-netdev "tap,id=n$i,ifname=$(lab_port_name "$n" $i),script=no,downscript=no"
				-device "virtio-net-pci,netdev=n$i,mac=$(_vm_mac "$n" $i)")
		done
		# -daemonize returns once the VM runs (errors come back here); the PID is in qemu.pid.
		# A qemu started but not yet recorded (crash right here) is found by backend_down
		# through the fabric namespace it runs in.
		date +%s.%N >"$d/started"
		ip netns exec "$FABRIC" "$LAB_VM_QEMU" -name "$name,process=$LAB_PREFIX-$name" \
			-accel "$LAB_VM_ACCEL" -cpu max -smp 1 -m "$LAB_VM_MEM" \
			-nodefaults -no-user-config -display none -no-reboot \
			-serial "file:$d/console.log" \
			-kernel "$kernel" -initrd "$d/initrd" -append "$_vm_append" \
			"${nics[@]}" -daemonize -pidfile "$d/qemu.pid" \
			</dev/null >"$d/qemu.log" 2>&1 9>&- ||
			lab_die "$name: qemu failed: $(tail -n 5 "$d/qemu.log")"
		pid=$(cat "$d/qemu.pid" 2>/dev/null) || lab_die "$name: qemu wrote no $d/qemu.pid"
		lab_record pid "$pid $name"
		# qemu has read the initramfs into the guest's memory.
		rm -f "$d/initrd"
		if [ "$n" = 2 ]; then lab_crash_point node-2; fi
	done
}

# PIDs of live (not zombie) processes whose network namespace is net:[inode] $1.
_vm_pids_in_netns() {
	{ find /proc/[0-9]*/ns/net -maxdepth 0 -printf '%l %p\n' 2>/dev/null || true; } |
		awk -v id="net:[$1]" '$1 == id { split($2, p, "/"); print p[3] }' |
		while read -r p; do _vm_alive "$p" && echo "$p"; done
}

# True if PID $1 exists and is not a zombie (this machine's init may never reap our qemus).
_vm_alive() {
	local st
	st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "$st" != Z ]
}

# The recorded qemu PIDs that are still ours: alive, and started with our pidfile.
_vm_recorded_pids() {
	local f pid
	for f in "$STATE"/nodes/vm-[0-9][0-9][0-9]/qemu.pid; do
		[ -f "$f" ] || continue
		pid=$(cat "$f" 2>/dev/null) || continue
		[[ $pid =~ ^[0-9]+$ ]] || continue
		_vm_alive "$pid" || continue
		tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-pidfile $f " && echo "$pid"
	done
}

backend_down() {
	local ino="" pids="" round l
	[ -e "/run/netns/$FABRIC" ] && ino=$(stat -L -c %i "/run/netns/$FABRIC")
	# SIGTERM, up to 2 s to go, then SIGKILL.
	for round in $(seq 1 60); do
		pids=$({ _vm_recorded_pids; [ -z "$ino" ] || _vm_pids_in_netns "$ino"; } | sort -u | tr '\n' ' ')
		[ -n "${pids// /}" ] || break
		# shellcheck disable=SC2086
		case $round in 1) kill -TERM $pids 2>/dev/null ;; 41) kill -KILL $pids 2>/dev/null ;; esac
		sleep 0.05
	done
	[ -z "${pids// /}" ] || lab_die "qemu processes still running after SIGKILL: $pids"
	# The taps (the fabric namespace itself is common's).
	if [ -n "$ino" ]; then
		for l in $(ip -n "$FABRIC" -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' |
			grep -E '^n[0-9]{3}e[0-4]$'); do
			ip -n "$FABRIC" link del dev "$l" || lab_die "could not delete tap $l in $FABRIC"
		done
	fi
}

# ---------------------------------------------------------------------------------------------
# The VM lab's own self-tests, run by `lab test` after the shared ones (selftests.sh calls
# backend_selftests when the backend defines it; it provides _t_ok, _t_fail, _t_check).
# Addresses: the lab self-test range 198.19.240.0/21 (common.sh): 198.19.24I.N/24 and
# 2001:db8:24I::N/64 directly on ethI (I = 2, 3, 4), 198.19.240.N/24 and 2001:db8:240::N/64 on
# an ipvlan over eth2. All are removed afterwards and each ethI is left as it was.

# ssh to a node through a shared connection ($STATE/cp, closed by `lab down`): a new ssh
# handshake costs a VM under TCG about a second of CPU.
_vm_ssh() {
	ssh -F "$STATE/ssh_config" -o ControlMaster=auto -o "ControlPath=$STATE/cp/%C" \
		-o ControlPersist=60s "$@"
}

# Run sh script $1 on every node in parallel, as `sh -s -- ARGS` ($2...); print
# "vm-00N: line" for each line of output. In the script and ARGS, @N@ is the node's index.
_vm_on_all() {
	local script=$1 n name dir pids=() pid
	shift
	dir=$(mktemp -d)
	for n in $(lab_nodes_seq); do
		name=$(lab_node_name "$n")
		{ printf '%s\n' "$script" | sed "s/@N@/$n/g" |
			_vm_ssh "$name" sh -s -- "${@//@N@/$n}" >"$dir/$n" 2>&1 ||
			echo "exit status $?" >>"$dir/$n"; } &
		pids+=($!)
	done
	for pid in "${pids[@]}"; do wait "$pid" || true; done
	for n in $(lab_nodes_seq); do
		sed "s/^/$(lab_node_name "$n"): /" "$dir/$n"
	done
	rm -rf "$dir"
}

# The userland the collection relies on is busybox's (with iproute2 ip and jq), and it does
# what the collection's node commands need (tests/lab/vm/userland-check).
_vm_t_userland() {
	local py tmp sum out n name
	py=python3
	[ -x "$REPO_DIR/.venv/bin/python" ] && py=$REPO_DIR/.venv/bin/python
	tmp=$(mktemp -d)
	head -c 65536 /dev/urandom >"$tmp/payload"
	sum=$(sha256sum <"$tmp/payload" | cut -d' ' -f1)
	"$py" - "$tmp" <<'PY'
import io
import sys
import tarfile

d = sys.argv[1]
for name, mode in (("plain.tar", "w"), ("gz.tar", "w:gz")):
    with tarfile.open(f"{d}/{name}", mode) as t:
        for m, data in (("m0", open(f"{d}/payload", "rb").read()), ("m1", b'{"a": [1, 2]}\n')):
            info = tarfile.TarInfo(m)
            info.mode, info.size = 0o600, len(data)
            t.addfile(info, io.BytesIO(data))
PY
	out=""
	for n in $(lab_nodes_seq); do
		name=$(lab_node_name "$n")
		if ! _vm_ssh "$name" 'cat >/tmp/lab-ul.tar' <"$tmp/plain.tar" >/dev/null 2>&1 ||
			! _vm_ssh "$name" 'cat >/tmp/lab-ul.tgz' <"$tmp/gz.tar" >/dev/null 2>&1; then
			out="$out$name: upload failed"$'\n'
		fi
	done
	rm -rf "$tmp"
	out="$out$(_vm_on_all "$(cat "$LAB_DIR/vm/userland-check")" "$sum" "$MGMT_NET4.@N@")"
	_t_check "busybox userland (sh, sha256sum, stat -c, tar -x of tarfile tar/tgz, mktemp -d, chmod, chown, mv -f), iproute2 ip (ip -j) and jq on every VM; ping -6; a GNU-only flag fails" "$out"
}

# Link types the netns lab cannot have: ipvlan (mode l2 on eth2), vlan and dummy (the last two
# loaded on demand by the kernel through busybox modprobe), created and removed on every VM.
_vm_t_links() {
	_t_check "ipvlan (mode l2 on eth2), vlan and dummy links can be created and removed on every VM" "$(_vm_on_all '
ip link add link eth2 name ipv0 type ipvlan mode l2 || echo "cannot create ipvlan"
ip -d link show dev ipv0 2>/dev/null | grep -q "ipvlan.*mode l2" || echo "ipv0 is not an ipvlan in mode l2"
ip link del ipv0 || echo "cannot remove ipv0"
ip link add link eth2 name eth2.7 type vlan id 7 && ip link del eth2.7 || echo "vlan failed"
ip link add lab-d0 type dummy && ip link del lab-d0 || echo "dummy failed"
! ip link show dev ipv0 >/dev/null 2>&1 || echo "ipv0 is still there"')"
}

# Every VM reaches every other one over device $1, with addresses $2.N/24 and $3::N/64, IPv4
# (ping) and IPv6 (ping -6). $1 is ethI, or ipv0: an ipvlan (l2) over eth2 moved into a network
# namespace "lab-pod" on the VM, as multus gives a pod its net1.
_vm_t_mesh() {
	local dev=$1 net4=$2 net6=$3 lower=$1 ip=ip run="" setup pings="" cleanup e out
	if [ "$dev" = ipv0 ]; then
		lower=eth2 ip="ip -n lab-pod" run="ip netns exec lab-pod "
	fi
	setup="set -e
if ip -o link show dev $lower | grep -q '[<,]UP[,>]'; then echo 1; else echo 0; fi >/tmp/lab-mesh-$lower.was-up
ip link set $lower up"
	[ "$dev" = ipv0 ] && setup="$setup
ip netns add lab-pod
ip link add link eth2 name ipv0 type ipvlan mode l2
ip link set ipv0 netns lab-pod
$ip link set lo up"
	setup="$setup
$ip address add $net4.@N@/24 dev $dev
$ip -6 address add $net6::@N@/64 dev $dev nodad
$ip link set $dev up"
	for e in $(lab_nodes_seq); do
		pings="$pings
[ $e = @N@ ] || ${run}ping -c 1 -W 3 $net4.$e >/dev/null || ${run}ping -c 1 -W 3 $net4.$e >/dev/null || echo 'no IPv4 reply from $net4.$e'
[ $e = @N@ ] || ${run}ping -6 -c 1 -W 3 $net6::$e >/dev/null || ${run}ping -6 -c 1 -W 3 $net6::$e >/dev/null || echo 'no IPv6 reply from $net6::$e'"
	done
	cleanup="ip address del $net4.@N@/24 dev $dev 2>/dev/null
ip -6 address del $net6::@N@/64 dev $dev 2>/dev/null
[ $dev != ipv0 ] || ip netns del lab-pod
[ \"\$(cat /tmp/lab-mesh-$lower.was-up 2>/dev/null)\" = 1 ] || ip link set $lower down
rm -f /tmp/lab-mesh-$lower.was-up
[ -z \"\$(ip -o address show dev $lower scope global)\" ] || echo '$lower kept an address'
[ -z \"\$(ip netns list)\" ] || echo 'a network namespace is left: '\$(ip netns list)
! ip link show dev ipv0 >/dev/null 2>&1 || echo 'ipv0 is still there'"
	out=$(_vm_on_all "$setup")
	[ -n "$out" ] || out=$(_vm_on_all "$pings")
	out="$out$(_vm_on_all "$cleanup")"
	if [ "$dev" = ipv0 ]; then
		_t_check "every VM reaches every other from a pod namespace over an ipvlan (l2) on eth2, IPv4 and IPv6; removed, eth2 left as it was" "$out"
	else
		_t_check "every VM reaches every other over $dev, IPv4 and IPv6 (ping, ping -6); $dev left as it was" "$out"
	fi
}

backend_selftests() {
	_vm_t_userland
	_vm_t_links
	if [ "$LAB_NODES" -lt 2 ]; then
		_t_ok "VM mesh over eth2..4 # SKIP one node only"
		return
	fi
	_vm_t_mesh eth2 198.19.242 2001:db8:242
	_vm_t_mesh eth3 198.19.243 2001:db8:243
	_vm_t_mesh eth4 198.19.244 2001:db8:244
	_vm_t_mesh ipv0 198.19.240 2001:db8:240
}
