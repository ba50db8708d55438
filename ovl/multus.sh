#!/bin/sh
##
## multus.sh --
##
##   Help script for the xcluster ovl "multus" made by the xcluster.multus collection
##   (xcadmin k8s_test multus <test> runs "multus.sh test <test>").
##
## Commands;
##
##   env
##     Print the environment the tests use.
##   test --list
##     List the tests.
##   test [--no-stop] [test...] > logfile
##     Run tests (default: basic) in an xcluster environment ($XCLUSTER, xctest, the
##     network-topology ovl): the cluster is started with this ovl (the archive ./tar makes),
##     the checks run from here over ssh to the VMs (192.168.0.N), as xcluster's own do.
##
## Tests;
##
##   basic (default)
##     start, then the collection's basic check (playbooks/basic.yml) on every cluster VM: a
##     pod namespace gets eth0 + net1 (ipvlan), net2 (macvlan), net3 (host-device) from the
##     installed multus, pings across the nodes; then every alpine pod has net1, net2, net3.
##   start_empty
##     Start on multilan with this ovl; the CRD and the NADs applied on vm-001 with kubectl
##     (/etc/kubernetes/multus/multus-crd*.yaml, whereabouts' CRDs when present).
##   start
##     start_empty, then the multus-alpine DaemonSet (/etc/kubernetes/multus/multus-alpine.yaml).
##   start_server
##     start_empty, then multus-service: multus-service-controller on vm-002, multus-proxy on
##     every cluster VM, the server Deployment and the Service (/etc/kubernetes/multus-service/).
##
set -u
prg=${0##*/}
dir=$(dirname "$(readlink -f "$0")")
me=$dir/$prg
root=${dir%/*}

die() {
	echo "ERROR: $*" >&2
	exit 1
}
help() {
	grep '^##' "$me" | cut -c3-
	exit 0
}
log() { echo "$prg: $*" >&2; }

# What every test needs: xcluster itself. Without it, say what to use instead.
need_xcluster() {
	if [ -z "${XCLUSTER:-}" ] || [ ! -x "$XCLUSTER" ]; then
		die "$prg test needs an xcluster environment: \$XCLUSTER (the xc script, executable) is not set.
  In xcluster: . ./Envsettings.k8s, then: xcadmin k8s_test multus basic > \$log
  Without xcluster, the same checks run on the collection's own lab:
    tests/lab/lab up && ansible-playbook -i /run/xcluster-multus-lab/xcm/inventory.yml $root/site.yml &&
    ansible-playbook -i /run/xcluster-multus-lab/xcm/inventory.yml $root/playbooks/basic.yml
  or booted from overlays as xcluster does: make demo LAB=vm OVL=1"
	fi
	eval "$("$XCLUSTER" env)" || die "$XCLUSTER env failed"
	xctest=$("$XCLUSTER" ovld test)/default/usr/lib/xctest
	[ -r "$xctest" ] || die "no $xctest (xcluster's ovl/test): cannot run xcluster tests"
	command -v ansible-playbook >/dev/null 2>&1 || [ -x "$root/.venv/bin/ansible-playbook" ] ||
		die "ansible-playbook not found (make venv in $root, or install ansible-core): the checks are Ansible playbooks"
	# shellcheck source=/dev/null
	. "$xctest"
}

cmd_env() {
	echo "__nvm=${__nvm:-4}"
	echo "__cniver=${__cniver:-v1.0.1}"
	echo "__multus_ver=${__multus_ver:-}"
	echo "WHEREABOUTS_DIR=${WHEREABOUTS_DIR:-${GOPATH:-$HOME/go}/src/github.com/k8snetworkplumbingwg/whereabouts}"
	echo "XCLUSTER=${XCLUSTER:-}"
}

# ssh to cluster VM $1 (a number) as xcluster's tests do: root, no host key check (dropbear's
# keys change on every start).
vm() {
	n=$1
	shift
	ssh -q -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
		"root@192.168.0.$n" "$@"
}

# An inventory of the started cluster VMs for the collection's playbooks.
inventory() {
	inv=$(mktemp "${TMPDIR:-/tmp}/xcm-inv.XXXXXX") || die mktemp
	{
		echo "all:"
		echo "  children:"
		echo "    xcluster:"
		echo "      hosts:"
		i=1
		while [ "$i" -le "${__nvm:-4}" ]; do
			printf '        vm-%03d: {ansible_host: 192.168.0.%d}\n' "$i" "$i"
			i=$((i + 1))
		done
		echo "    xcluster_control_plane:"
		echo "      hosts:"
		echo "        vm-001:"
		echo "  vars:"
		echo "    ansible_user: root"
		echo "    ansible_ssh_common_args: -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
		echo "    ansible_ssh_transfer_method: sftp"
	} >"$inv"
	echo "$inv"
}

playbook() {
	ap=$root/.venv/bin/ansible-playbook
	[ -x "$ap" ] || ap=$(command -v ansible-playbook)
	ANSIBLE_CONFIG=${ANSIBLE_CONFIG:-$root/ansible.cfg} "$ap" "$@"
}

yamld=/etc/kubernetes/multus
test_start_empty() {
	tlog "=== multus: start with the xcluster.multus overlay"
	export TOPOLOGY=multilan-router
	# shellcheck source=/dev/null
	. "$("$XCLUSTER" ovld network-topology)/$TOPOLOGY/Envsettings"
	xcluster_start network-topology multus
	i=1
	while [ "$i" -le "${__nvm:-4}" ]; do
		vm "$i" "ls /etc/cni/net.d; grep CNI_INFO /etc/profile" | grep -q 'CNI_INFO=multus+' ||
			tdie "vm-$i: the overlay's rc did not activate multus"
		i=$((i + 1))
	done
	vm 1 "set -e; kubectl apply -f $yamld/multus-crd.yaml
		kubectl wait --for condition=established --timeout=60s crd/network-attachment-definitions.k8s.cni.cncf.io
		for f in $yamld/multus-crd-*.yaml; do kubectl apply -f \$f; done
		for f in /etc/kubernetes/whereabouts/*ippools.yaml /etc/kubernetes/whereabouts/*overlappingrangeipreservations.yaml; do
			[ ! -r \$f ] || kubectl apply -f \$f; done" || tdie "applying the manifests on vm-001"
}
test_start() {
	test_start_empty
	vm 1 "kubectl apply -f $yamld/multus-alpine.yaml" || tdie "the alpine DaemonSet"
}
test_start_server() {
	test_start_empty
	vm 2 "multus-service-controller --kubeconfig /etc/kubernetes/kubeconfig.token >/var/log/multus-service-controller.log 2>&1 &" ||
		tdie "multus-service-controller on vm-002"
	i=1
	while [ "$i" -le "${__nvm:-4}" ]; do
		vm "$i" "multus-proxy --kubeconfig /etc/kubernetes/kubeconfig.token \
			--container-runtime-endpoint unix:///var/run/crio/crio.sock >/var/log/multus-proxy.log 2>&1 &" ||
			tdie "multus-proxy on vm-$i"
		i=$((i + 1))
	done
	vm 1 "kubectl apply -f /etc/kubernetes/multus-service/deployment.yaml &&
		kubectl apply -f /etc/kubernetes/multus-service/svc.yaml" || tdie "multus-service manifests"
}
test_basic() {
	tlog "=== multus: basic test"
	test_start
	inv=$(inventory)
	playbook -i "$inv" "$root/playbooks/basic.yml" >&2 || tdie "playbooks/basic.yml failed (above)"
	vm 1 "kubectl rollout status ds/multus-alpine --timeout=180s && for p in \$(kubectl get pods -l app=multus-alpine -o name); do
		for d in net1 net2 net3; do kubectl exec \$p -- ip link show dev \$d >/dev/null || exit 1; done; done" ||
		tdie "an alpine pod lacks net1, net2 or net3"
	rm -f "$inv"
	[ "${__no_stop:-}" = yes ] || xcluster_stop
}

cmd_test() {
	if [ "${__list:-}" = yes ]; then
		grep '^test_[a-z_]*()' "$me" | cut -d'(' -f1 | sed -e 's,^test_,,'
		return 0
	fi
	need_xcluster
	begin=$(date +%s)
	[ $# -gt 0 ] || set -- basic
	for t in "$@"; do
		grep -q "^test_$t()" "$me" || die "no test '$t' (multus.sh test --list)"
		"test_$t"
	done
	tlog "Xcluster test ended. Total time $(($(date +%s) - begin)) sec"
}

[ $# -gt 0 ] || help
case $1 in -h | --help | help) help ;; esac
cmd=$1
shift
grep -q "^cmd_$cmd()" "$me" || die "Invalid command [$cmd]"
# --option[=value] becomes __option (xcluster's convention), before the arguments
while [ $# -gt 0 ]; do
	case $1 in
	--*=*)
		o=$(echo "${1%%=*}" | sed -e 's,^--,__,; s,-,_,g')
		eval "$o=\${1#*=}"
		;;
	--*)
		o=$(echo "$1" | sed -e 's,^--,__,; s,-,_,g')
		eval "$o=yes"
		;;
	*) break ;;
	esac
	case $o in __[a-z]*) ;; *) die "bad option $1" ;; esac
	case $o in *[!a-z0-9_]*) die "bad option $1" ;; esac
	shift
done
"cmd_$cmd" "$@"
