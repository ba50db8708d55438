#!/bin/sh
# xcluster.multus basic check: the pod's ADD and DEL as the kubelet (or the container runtime)
# runs multus, its addresses once IPv6 duplicate address detection is over, and the ping matrix.
# Copyright: xcluster.multus contributors. Apache License 2.0.
#
# Usage: basic.sh add NETNS CONF BIN LOG CONF_JSON
#        basic.sh del NETNS CONF BIN CONTAINER_ID CNI_DIR HOST_DEVICE HOST_DEVICE_UP
#        basic.sh addrs NETNS DAD_WAIT
#        basic.sh ping NETNS COUNT WAIT [NET HOST ADDR]...
#        basic.sh pods-apply KUBECONFIG NAMESPACE PODS_JSON
#        basic.sh pods-delete KUBECONFIG NAMESPACE NETNS
#   add    a leftover pod of an interrupted run (NETNS exists) is deleted first; CONF_JSON
#          written to CONF, the pod's netns made (lo up), multus BIN run with CNI_COMMAND=ADD;
#          prints the CNI result, or "ADD failed: ..." with multus's stderr and the end of LOG.
#   del    multus DEL (when CONF exists), the netns and CONF removed; fails, saying what, when
#          DEL fails or a lease of CONTAINER_ID is left (/var/lib/cni/networks, CNI_DIR);
#          HOST_DEVICE set up again when HOST_DEVICE_UP is 1 (it was up before the pod).
#   addrs  waits up to DAD_WAIT seconds for the pod's tentative IPv6 addresses, then prints
#          `ip -j addr show` in the pod.
#   ping   pings each ADDR from the pod; one JSON line per target:
#          {"net":NET,"to":HOST,"addr":ADDR,"ok":true|false}.
#   pods-apply   (kubectl, on the control-plane host) the check's Pods of an earlier run
#          deleted, PODS_JSON applied; prints the Pods (get -o json) with their UIDs.
#   pods-delete  (kubectl) fails, saying which, when whereabouts' IPPools still hold an
#          allocation of a Pod NAMESPACE/NETNS-* (prints IPPOOLS-CHECKED when it looked);
#          the check's Pods deleted.
# The check's Pods carry the label app=xcm-basic.
# CNI_NETNS, CNI_IFNAME, CNI_CONTAINERID, CNI_PATH and CNI_ARGS come from the environment.
# Run over ansible.builtin.raw (`sh -s -- ARGS` with this file on stdin) by playbooks/basic.yml
# and playbooks/tasks/basic_api.yml: POSIX sh, iproute2's ip and busybox applets only.

add() {
  ns=$1 conf=$2 bin=$3 log=$4 json=$5
  if [ -e "/run/netns/$ns" ]; then
    [ -f "$conf" ] && CNI_COMMAND=DEL "$bin" <"$conf" >/dev/null 2>&1
    ip netns del "$ns"
  fi
  printf '%s\n' "$json" >"$conf" || exit 1
  if ! { ip netns add "$ns" && ip netns exec "$ns" ip link set lo up; }; then
    exit 1
  fi
  if ! out=$(CNI_COMMAND=ADD "$bin" <"$conf" 2>/tmp/xcm-basic.err); then
    echo "ADD failed: $out"
    cat /tmp/xcm-basic.err
    tail -n 20 "$log" 2>/dev/null
    exit 1
  fi
  printf '%s\n' "$out"
}

del() {
  ns=$1 conf=$2 bin=$3 cid=$4 cni_dir=$5 dev=$6 up=$7 rc=0
  if [ -f "$conf" ]; then
    if ! out=$(CNI_COMMAND=DEL "$bin" <"$conf" 2>/tmp/xcm-basic.err); then
      echo "DEL failed: $out"
      cat /tmp/xcm-basic.err
      rc=1
    fi
  fi
  ip netns del "$ns" 2>/dev/null
  rm -f "$conf" /tmp/xcm-basic.err
  left=$(grep -rl "$cid" /var/lib/cni/networks 2>/dev/null
    find "$cni_dir" -name "*$cid*" 2>/dev/null)
  [ -z "$left" ] || { echo "left after DEL: $left"; rc=1; }
  if [ "$up" = 1 ]; then
    ip link set dev "$dev" up || rc=1
  fi
  exit "$rc"
}

addrs() {
  ns=$1 i=0 n=$(($2 * 5))
  while [ "$i" -lt "$n" ] && [ -n "$(ip netns exec "$ns" ip -6 addr show tentative)" ]; do
    sleep 0.2
    i=$((i + 1))
  done
  ip netns exec "$ns" ip -j addr show
}

pings() {
  ns=$1 count=$2 wait=$3
  shift 3
  while [ "$#" -ge 3 ]; do
    net=$1 host=$2 addr=$3
    shift 3
    ok=false
    ip netns exec "$ns" ping -c "$count" -W "$wait" "$addr" >/dev/null 2>&1 && ok=true
    printf '{"net":"%s","to":"%s","addr":"%s","ok":%s}\n' "$net" "$host" "$addr" "$ok"
  done
}

k() {  # kubectl with the check's kubeconfig and timeout
  kubectl --kubeconfig="$kubeconfig" --request-timeout=20s "$@"
}

pods_apply() {
  kubeconfig=$1 namespace=$2 pods=$3
  k -n "$namespace" delete pod -l app=xcm-basic --force --grace-period=0 --ignore-not-found >/dev/null 2>&1
  printf '%s\n' "$pods" | k apply -f - >/dev/null || exit 1
  k -n "$namespace" get pods -l app=xcm-basic -o json
}

pods_delete() {
  kubeconfig=$1 namespace=$2 netns=$3 rc=0
  if k get crd ippools.whereabouts.cni.cncf.io >/dev/null 2>&1; then
    left=$(k get ippools.whereabouts.cni.cncf.io -A -o json |
      grep -o "\"podref\": *\"$namespace/$netns-[^\"]*\"")
    [ -z "$left" ] || { echo "whereabouts allocations left after DEL: $left"; rc=1; }
    echo "IPPOOLS-CHECKED"
  fi
  k -n "$namespace" delete pod -l app=xcm-basic --force --grace-period=0 --ignore-not-found >/dev/null 2>&1 || rc=1
  exit "$rc"
}

cmd=${1:-}
[ "$#" -gt 0 ] && shift
case $cmd in
  add) add "$@" ;;
  del) del "$@" ;;
  addrs) addrs "$@" ;;
  ping) pings "$@" ;;
  pods-apply) pods_apply "$@" ;;
  pods-delete) pods_delete "$@" ;;
  *) echo "basic.sh: unknown command '$cmd'; expected add, del, addrs, ping, pods-apply or pods-delete" >&2; exit 2 ;;
esac
