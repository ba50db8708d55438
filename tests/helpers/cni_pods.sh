#!/bin/sh
# tests/helpers/cni_pods.sh: the container runtime's part for pods that exist as Pod objects in
# the lab's API server (no kubelet runs them): run on a lab node over ssh (`sh -s -- ARGS` with
# this file on stdin; POSIX sh, busybox, jq, iproute2). Copyright: xcluster.multus contributors.
# Apache License 2.0.
#
# Usage: cni_pods.sh ADD|DEL [PARALLEL [CONF]]   pods on stdin, one "NAMESPACE NAME UID" a line
#        cni_pods.sh LINKS                       the node's links (ip -j link)
# ADD/DEL: for the pods concurrently (one background job per pod; PARALLEL > 0: in waves of
# PARALLEL jobs, each wave waited for; 0 or none: all at once), what the runtime does:
# the installed multus (CONF's binDir/type; CONF defaults to the node's own
# /etc/cni/net.d/10-multus.conf, read as it is, its kubeconfig included) with CNI_COMMAND, the
# pod's network namespace /run/netns/NAME (made before ADD, removed after DEL), CNI_IFNAME eth0,
# container id xcm-NAME and CNI_ARGS naming the pod (namespace, name, UID, infra container id).
# Output: one JSON line per pod: {"pod", "rc", "out" (multus's stdout), "err" (the end of its stderr),
# "addr" (ip -j addr in the pod after ADD)}; then "XCM-PODS-DONE <seconds>".
set -u
cmd=${1:?usage: cni_pods.sh ADD|DEL|LINKS [CONF]}
if [ "$cmd" = LINKS ]; then
  ip -j link show
  exit 0
fi
parallel=${2:-0}
conf=${3:-/etc/cni/net.d/10-multus.conf}
bin=$(jq -r '.binDir + "/" + .type' "$conf") || exit 1
path=$(jq -r '.binDir' "$conf")
work=/tmp/xcm-pods.$cmd
rm -rf "$work" && mkdir -p "$work" || exit 1
start=$(date +%s)
names=""
n=0
while read -r ns name uid; do
  [ -n "$name" ] || continue
  names="$names $name"
  if [ "$parallel" -gt 0 ] && [ "$n" -ge "$parallel" ]; then
    wait
    n=0
  fi
  n=$((n + 1))
  (
    id=xcm-$name
    if [ "$cmd" = ADD ]; then
      ip netns add "$name" && ip netns exec "$name" ip link set lo up
    fi
    CNI_COMMAND=$cmd CNI_CONTAINERID=$id CNI_NETNS=/run/netns/$name CNI_IFNAME=eth0 CNI_PATH=$path \
      CNI_ARGS="IgnoreUnknown=true;K8S_POD_NAMESPACE=$ns;K8S_POD_NAME=$name;K8S_POD_UID=$uid;K8S_POD_INFRA_CONTAINER_ID=$id" \
      "$bin" <"$conf" >"$work/$name.out" 2>"$work/$name.err"
    echo $? >"$work/$name.rc"
    if [ "$cmd" = ADD ]; then
      ip netns exec "$name" ip -j addr show >"$work/$name.addr" 2>&1
    else
      ip netns del "$name" 2>/dev/null
      echo '[]' >"$work/$name.addr"
    fi
  ) &
done
wait
end=$(date +%s)
for name in $names; do
  tail -c 4000 "$work/$name.err" >"$work/$name.err4k"
  jq -cn --arg pod "$name" --argjson rc "$(cat "$work/$name.rc")" --rawfile out "$work/$name.out" \
    --rawfile err "$work/$name.err4k" --rawfile addr "$work/$name.addr" \
    '{pod: $pod, rc: $rc, out: $out, err: $err, addr: $addr}'
done
rm -rf "$work"
echo "XCM-PODS-DONE $((end - start))"
