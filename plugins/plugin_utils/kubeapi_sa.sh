# shellcheck shell=sh
# A component's own ServiceAccount (plugins/plugin_utils/kubeapi.py, serviceaccount_command):
# run with sh -s on the control-plane host, where kubectl and an admin kubeconfig are (xcluster's
# shared token kubeconfig by default). Arguments:
#   ACTION   apply (RBAC applied, a token reused or created), check (nothing applied or created:
#            apply --dry-run=server, the current token reused when still good) or delete (RBAC
#            deleted; the ServiceAccount's tokens die with it)
#   RBAC     a file holding the ServiceAccount, ClusterRole and ClusterRoleBinding (removed here)
#   KUBECTL KUBECONFIG TIMEOUT   how to run kubectl (KUBECONFIG empty: kubectl's default)
#   NS SA HOURS                  the ServiceAccount and the token's lifetime asked for (hours)
#   CURRENT  the component's kubeconfig on this host (from an earlier run): its token is reused
#            while it authenticates as NS/SA and more than half of HOURS is left (and not more
#            than HOURS: a shorter lifetime asked for takes effect at once)
# Output: CHANGED:/WOULD: lines, then XCM-SA-SERVER, -CA, -INSECURE, -TOKEN, -EXP, -STATE lines
# (the token is a secret: the task that runs this hides its output). Errors: XCM-SA-ERROR, rc 1.
act=$1 rbac=$2 kc=$3 kcfg=$4 tmo=$5 ns=$6 sa=$7 hours=$8 cur=$9
trap 'rm -f "$rbac"' EXIT
k() {
	if [ -n "$kcfg" ]; then
		"$kc" --kubeconfig="$kcfg" --request-timeout="${tmo}s" "$@"
	else
		"$kc" --request-timeout="${tmo}s" "$@"
	fi
}
die() {
	echo "XCM-SA-ERROR: $*"
	exit 1
}
last() { printf '%s\n' "$1" | tail -n 1; }
# claims TOKEN: the JWT's payload (base64url without padding) as JSON text.
claims() {
	p=$(printf '%s' "$1" | cut -d. -f2 | tr '_-' '/+')
	while [ $((${#p} % 4)) -ne 0 ]; do p="$p="; done
	printf '%s' "$p" | base64 -d 2>/dev/null
}
claim_num() { printf '%s' "$1" | sed -n "s/.*\"$2\":\([0-9][0-9]*\).*/\1/p"; }
claim_str() { printf '%s' "$1" | sed -n "s/.*\"$2\":\"\([^\"]*\)\".*/\1/p"; }

command -v "$kc" >/dev/null 2>&1 || die "no $kc on this host"
out=$(k get --raw /readyz 2>&1) ||
	die "the API server does not answer $kc${kcfg:+ --kubeconfig=$kcfg}: $(last "$out")"

if [ "$act" = delete ]; then
	out=$(k delete --ignore-not-found --wait=false -f "$rbac" 2>&1) || die "kubectl delete of the RBAC: $(last "$out")"
	printf '%s\n' "$out" | awk '/ deleted/ {print "CHANGED: " $0}'
	exit 0
fi

if [ "$act" = check ]; then
	out=$(k apply --dry-run=server -f "$rbac" 2>&1) || die "kubectl apply --dry-run=server of the RBAC: $(last "$out")"
	printf '%s\n' "$out" | awk '$2 == "created" || $2 == "configured" {print "WOULD: " $2 " " $1}'
else
	out=$(k apply -f "$rbac" 2>&1) || die "kubectl apply of the RBAC: $(last "$out")"
	printf '%s\n' "$out" | awk '$2 == "created" || $2 == "configured" {print "CHANGED: " $2 " " $1}'
fi

view() { k config view --raw --minify --flatten -o "jsonpath={.clusters[0].cluster.$1}" 2>/dev/null; }
server=$(view server)
[ -n "$server" ] || die "no server in the kubeconfig of $kc${kcfg:+ ($kcfg)}"
now=$(date +%s)
tok="" exp="" state=""
if [ -f "$cur" ]; then
	old=$(sed -n 's/^ *token: *//p' "$cur" | head -n 1 | tr -d "\"'")
	if [ -n "$old" ]; then
		c=$(claims "$old")
		exp=$(claim_num "$c" exp)
		if [ "$(claim_str "$c" sub)" = "system:serviceaccount:$ns:$sa" ] && [ -n "$exp" ] &&
			[ $((exp - now)) -gt $((hours * 1800)) ] && [ $((exp - now)) -le $((hours * 3600 + 300)) ] &&
			"$kc" --kubeconfig="$cur" --request-timeout="${tmo}s" get --raw /api >/dev/null 2>&1; then
			tok=$old state=reused
		fi
	fi
fi
if [ -z "$tok" ]; then
	if [ "$act" = check ]; then
		echo "WOULD: create a token for serviceaccount $ns/$sa (${hours}h)"
		exp="" state=would-create
	else
		err=$(mktemp) || die "mktemp failed"
		if ! tok=$(k create token "$sa" -n "$ns" --duration="${hours}h" 2>"$err"); then
			out=$(cat "$err")
			rm -f "$err"
			die "kubectl create token $sa -n $ns --duration=${hours}h: $(last "$out")"
		fi
		rm -f "$err"
		exp=$(claim_num "$(claims "$tok")" exp)
		echo "CHANGED: new token for serviceaccount $ns/$sa"
		state=created
	fi
fi
echo "XCM-SA-SERVER $server"
echo "XCM-SA-CA $(view certificate-authority-data)"
echo "XCM-SA-INSECURE $(view insecure-skip-tls-verify)"
echo "XCM-SA-TOKEN $tok"
echo "XCM-SA-EXP $exp"
echo "XCM-SA-NOW $now"
echo "XCM-SA-STATE $state"
