# shellcheck shell=bash
# tests/lab/k8s.sh - the lab's optional control plane (LAB_K8S=1): a real kube-apiserver and
# etcd for the lab, on both backends. Sourced by tests/lab/lab after common.sh.
#
# WHERE IT RUNS: on the controller (this machine), beside the nodes, not inside a node: a TCG VM
# is far too slow for kube-apiserver, and one place serves both backends the same way. The
# API server listens on the controller's management address of the lab, $MGMT_NET4.254:6443
# (the end of $MGMT_IF on the lab's br0), which every node reaches over its eth0; etcd listens
# on loopback only (client 127.0.0.1:$((32379 + 10k)), peer :$((32380 + 10k)), k = the slot).
# Service range: 198.19.216.0/24 and 2001:db8:216::/112 (docs/DEVELOPMENT.md, address plan);
# nothing routes it (no kube-proxy), it only has to be inside the network rule.
#
# WHAT IT MAKES, all under $STATE/k8s/ (removed by `lab down`):
#   pki/            a CA, the serving cert (SANs: the management address, 127.0.0.1, the
#                   `kubernetes` service address and names), an admin client cert
#                   (O=system:masters), the service-account key pair; made with openssl
#   tokens.csv      the static token of xcluster's shared token kubeconfig (system:masters)
#   admin.kubeconfig        the controller's kubeconfig (client cert)
#   kubeconfig.token        what every node gets at /etc/kubernetes/kubeconfig.token (0600)
#   etcd/, *.log, etcd.pid, kube-apiserver.pid
# The namespaces default and kube-system get ServiceAccount `default` (no controller-manager
# runs to make it; pods cannot be created without it). vm-001 (the control-plane node) gets the
# lab's kubectl at /usr/bin/kubectl, like xcluster's VMs have one.
#
# BINARIES: kube-apiserver and kubectl from tests/artifacts/build-all k8s (cached under
# ~/.cache/xcluster-multus/go/k8s.io/kubernetes@VERSION; built on first use, ~8 min cold),
# or from $LAB_K8S_BIN (a directory holding both, e.g. release binaries, checked against the
# sha256 pinned in $LAB_K8S_SHA256SUMS, default $LAB_K8S_BIN/SHA256SUMS); etcd from Debian's
# etcd-server (scripts/install-deps) or $LAB_K8S_ETCD.
#
# STOPPING: by the recorded PIDs, each checked to still be the process started (its command
# line names this lab's state directory); after a crash between a start and its record, the
# processes whose command line names $STATE/k8s are found in /proc. Nothing else is touched.

K8S_DIR=$STATE/k8s
K8S_VERSION=${LAB_K8S_VERSION:-v1.34.4}
K8S_SVC4=198.19.216.0/24
K8S_SVC6=2001:db8:216::/112
K8S_SVC_IP=198.19.216.1
K8S_PORT=6443

k8s_bin_dir() {
	if [ -n "${LAB_K8S_BIN:-}" ]; then
		echo "$LAB_K8S_BIN"
	else
		echo "${XDG_CACHE_HOME:-$HOME/.cache}/xcluster-multus/go/k8s.io/kubernetes@$K8S_VERSION"
	fi
}
k8s_server() { echo "https://$MGMT_NET4.254:$K8S_PORT"; }
k8s_etcd_port() { echo $((32379 + 10 * LAB_NET)); }
k8s_kubectl() { "$(k8s_bin_dir)/kubectl" --kubeconfig "$K8S_DIR/admin.kubeconfig" "$@"; }

# Prerequisites; builds kube-apiserver and kubectl once when they are missing.
k8s_check() {
	local bin etcd=${LAB_K8S_ETCD:-etcd}
	command -v openssl >/dev/null || lab_die "LAB_K8S=1: openssl not found (scripts/install-deps)"
	command -v "$etcd" >/dev/null ||
		lab_die "LAB_K8S=1: etcd not found (Debian package etcd-server: scripts/install-deps; or LAB_K8S_ETCD=PATH)"
	bin=$(k8s_bin_dir)
	if [ -n "${LAB_K8S_BIN:-}" ]; then
		# Given binaries (e.g. the release's from dl.k8s.io) are checked against the sha256 the
		# user pins: LAB_K8S_SHA256SUMS (sha256sum format; default $LAB_K8S_BIN/SHA256SUMS).
		local sums=${LAB_K8S_SHA256SUMS:-$LAB_K8S_BIN/SHA256SUMS} line f
		[ -f "$sums" ] || lab_die "LAB_K8S_BIN=$LAB_K8S_BIN: no $sums (pin the binaries' sha256: 'HASH  kube-apiserver' lines)"
		for f in kube-apiserver kubectl; do
			[ -x "$bin/$f" ] || lab_die "LAB_K8S_BIN=$LAB_K8S_BIN: no executable $f there"
			line=$(grep -E "^[0-9a-f]{64}  \*?$f\$" "$sums") || lab_die "$sums: no sha256 for $f"
			[ "$(sha256sum <"$bin/$f" | cut -c1-64)" = "${line:0:64}" ] ||
				lab_die "$bin/$f: sha256 $(sha256sum <"$bin/$f" | cut -c1-64) is not the pinned ${line:0:64} ($sums)"
		done
	fi
	if [ ! -x "$bin/kube-apiserver" ] || [ ! -x "$bin/kubectl" ]; then
		[ -z "${LAB_K8S_BIN:-}" ] || lab_die "LAB_K8S_BIN=$LAB_K8S_BIN: no kube-apiserver and kubectl there"
		lab_log "LAB_K8S=1: building kube-apiserver and kubectl $K8S_VERSION once (about 8 min cold, cached in $bin)"
		XCM_K8S_VERSION=$K8S_VERSION nice -n 10 "$REPO_DIR/tests/artifacts/build-all" k8s 9>&- ||
			lab_die "LAB_K8S=1: the build of kube-apiserver/kubectl failed (see above)"
	fi
}

# openssl helpers: k8s_cert NAME SUBJECT [EXTFILE-LINES]: an EC key and a cert signed by the CA.
k8s_cert() {
	local name=$1 subj=$2 ext=$3 p=$K8S_DIR/pki
	openssl ecparam -name prime256v1 -genkey -noout -out "$p/$name.key" 2>/dev/null
	openssl req -new -key "$p/$name.key" -subj "$subj" -out "$p/$name.csr" 2>/dev/null
	printf '%s\n' "$ext" >"$p/$name.ext"
	openssl x509 -req -in "$p/$name.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial \
		-days 7 -sha256 -extfile "$p/$name.ext" -out "$p/$name.crt" 2>/dev/null ||
		lab_die "LAB_K8S=1: openssl could not sign $name"
}

k8s_pki() {
	local p=$K8S_DIR/pki
	mkdir -m 700 "$p"
	openssl ecparam -name prime256v1 -genkey -noout -out "$p/ca.key" 2>/dev/null
	openssl req -x509 -new -key "$p/ca.key" -subj "/CN=xcluster-multus-lab-$LAB_PREFIX-ca" -days 7 \
		-sha256 -out "$p/ca.crt" 2>/dev/null || lab_die "LAB_K8S=1: openssl could not make the CA"
	k8s_cert apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$MGMT_NET4.254,IP:$MGMT_NET6::fe,IP:127.0.0.1,IP:$K8S_SVC_IP,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost"
	k8s_cert admin "/O=system:masters/CN=xcluster-multus-lab-admin" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
	openssl ecparam -name prime256v1 -genkey -noout -out "$p/sa.key" 2>/dev/null
	openssl ec -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
	# xcluster's shared token: one static token for every node (system:masters, as xcluster's).
	printf '%s,xcluster,xcluster,system:masters\n' "$(openssl rand -hex 24)" >"$K8S_DIR/tokens.csv"
	chmod 600 "$p"/*.key "$K8S_DIR/tokens.csv"
}

# k8s_kubeconfig USER-LINES: a kubeconfig for the lab's API server with the given user block.
k8s_kubeconfig() {
	cat <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: xcluster-lab
    cluster:
      server: $(k8s_server)
      certificate-authority-data: $(base64 -w0 "$K8S_DIR/pki/ca.crt")
users:
  - name: xcluster
    user:
$1
contexts:
  - name: xcluster
    context:
      cluster: xcluster-lab
      user: xcluster
current-context: xcluster
EOF
}

k8s_kubeconfigs() {
	(
		umask 077
		k8s_kubeconfig "      client-certificate-data: $(base64 -w0 "$K8S_DIR/pki/admin.crt")
      client-key-data: $(base64 -w0 "$K8S_DIR/pki/admin.key")" >"$K8S_DIR/admin.kubeconfig"
		k8s_kubeconfig "      token: $(cut -d, -f1 "$K8S_DIR/tokens.csv")" >"$K8S_DIR/kubeconfig.token"
	)
}

# k8s_start NAME CMD...: start a daemon in its own session, log in $K8S_DIR/NAME.log, record its PID.
k8s_start() {
	local name=$1
	shift
	lab_record k8s-process "$name"
	setsid "$@" </dev/null >"$K8S_DIR/$name.log" 2>&1 8>&- 9>&- &
	echo $! >"$K8S_DIR/$name.pid"
}

k8s_up() {
	local t0 bin p=$K8S_DIR/pki port n pids=() pid deadline rss
	t0=$(date +%s.%N)
	bin=$(k8s_bin_dir)
	port=$(k8s_etcd_port)
	lab_record dir "$K8S_DIR"
	mkdir -m 700 "$K8S_DIR"
	k8s_pki
	k8s_kubeconfigs
	k8s_start etcd "${LAB_K8S_ETCD:-etcd}" --name "$LAB_PREFIX" --data-dir "$K8S_DIR/etcd" \
		--listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
		--listen-peer-urls "http://127.0.0.1:$((port + 1))" \
		--initial-advertise-peer-urls "http://127.0.0.1:$((port + 1))" \
		--initial-cluster "$LAB_PREFIX=http://127.0.0.1:$((port + 1))" \
		--listen-metrics-urls "" --quota-backend-bytes 1073741824
	lab_crash_point k8s-etcd
	k8s_start kube-apiserver "$bin/kube-apiserver" \
		--etcd-servers "http://127.0.0.1:$port" --etcd-prefix "/xcluster-multus-lab" \
		--bind-address "$MGMT_NET4.254" --advertise-address "$MGMT_NET4.254" --secure-port $K8S_PORT \
		--tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" \
		--client-ca-file "$p/ca.crt" --token-auth-file "$K8S_DIR/tokens.csv" \
		--service-account-issuer https://kubernetes.default.svc.cluster.local \
		--service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
		--authorization-mode RBAC --endpoint-reconciler-type none --allow-privileged \
		--service-cluster-ip-range "$K8S_SVC4,$K8S_SVC6" \
		--cert-dir "$K8S_DIR/cert-dir" --profiling=false --enable-priority-and-fairness=false
	lab_crash_point k8s-apiserver
	deadline=$((SECONDS + ${LAB_K8S_TIMEOUT:-90}))
	until k8s_kubectl get --raw /readyz >/dev/null 2>&1; do
		for n in etcd kube-apiserver; do
			kill -0 "$(cat "$K8S_DIR/$n.pid")" 2>/dev/null ||
				lab_die "LAB_K8S=1: $n exited; its log $K8S_DIR/$n.log ends: $(tail -n 5 "$K8S_DIR/$n.log")"
		done
		[ $SECONDS -lt $deadline ] ||
			lab_die "LAB_K8S=1: kube-apiserver not ready after ${LAB_K8S_TIMEOUT:-90}s (log $K8S_DIR/kube-apiserver.log)"
		sleep 0.3
	done
	lab_log "k8s: kube-apiserver $K8S_VERSION ready at $(k8s_server) in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')s"
	# No controller-manager: make the ServiceAccounts pods need (idempotent: apply).
	for n in default kube-system; do
		printf 'apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: default, namespace: %s}\n' "$n"
		echo ---
	done | k8s_kubectl apply -f - >/dev/null || lab_die "LAB_K8S=1: could not create the default ServiceAccounts"
	# Every node: the token kubeconfig (0600); vm-001 also kubectl.
	for n in $(lab_nodes_seq); do
		(
			lab_ssh "$(lab_node_name "$n")" 'umask 077; mkdir -p /etc/kubernetes &&
				cat >/etc/kubernetes/kubeconfig.token.tmp && mv -f /etc/kubernetes/kubeconfig.token.tmp /etc/kubernetes/kubeconfig.token' \
				<"$K8S_DIR/kubeconfig.token" || lab_die "$(lab_node_name "$n"): could not write /etc/kubernetes/kubeconfig.token"
		) &
		pids+=($!)
	done
	# /usr/bin: in every PATH (dropbear's default has no /usr/local/bin).
	(
		lab_ssh "$(lab_node_name 1)" 'mkdir -p /usr/bin && cat >/usr/bin/kubectl.tmp &&
			chmod 755 /usr/bin/kubectl.tmp && mv -f /usr/bin/kubectl.tmp /usr/bin/kubectl' \
			<"$bin/kubectl" || lab_die "vm-001: could not install kubectl"
	) &
	pids+=($!)
	for pid in "${pids[@]}"; do wait "$pid" || lab_die "LAB_K8S=1: could not give the nodes their kubeconfig"; done
	rss=$(for n in etcd kube-apiserver; do awk '/^VmRSS/ {print $2}' "/proc/$(cat "$K8S_DIR/$n.pid")/status"; done |
		awk '{s += $1} END {printf "%d", s / 1024}')
	lab_log "k8s: up in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')s; etcd + kube-apiserver RSS ${rss} MB; admin kubeconfig $K8S_DIR/admin.kubeconfig"
}

# k8s_ours PID: true if PID runs this lab's etcd or kube-apiserver: its command line has the
# argument $K8S_DIR/etcd (etcd's data dir) or $K8S_DIR/cert-dir (kube-apiserver's). Read in
# bash, so no helper process (whose own arguments would name them) is ever taken for one.
k8s_ours() {
	local a args=()
	mapfile -d '' args 2>/dev/null <"/proc/$1/cmdline" || return 1
	for a in "${args[@]}"; do
		[ "$a" = "$K8S_DIR/etcd" ] || [ "$a" = "$K8S_DIR/cert-dir" ] && return 0
	done
	return 1
}

# The PIDs of this lab's control-plane processes: the recorded ones, and any other whose
# command line names them (started, then the lab crashed before the PID was written).
k8s_pids() {
	local f pid c
	for f in "$K8S_DIR"/*.pid; do
		[ -f "$f" ] || continue
		pid=$(cat "$f")
		[[ $pid =~ ^[0-9]+$ ]] && k8s_ours "$pid" && echo "$pid"
	done
	for c in /proc/[0-9]*; do
		k8s_ours "${c#/proc/}" && echo "${c#/proc/}"
	done
	return 0
}

# k8s_alive PID: the process exists and is not a zombie.
k8s_alive() {
	local st
	st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "$st" != Z ]
}

k8s_down() {
	local pid pids=() deadline
	for pid in $(k8s_pids | sort -u); do
		kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
	done
	# TERM, then KILL after 10 s; gone = no process or a zombie (their parent, the lab command
	# that started them, may be gone, and reaping is then init's business).
	deadline=$((SECONDS + 10))
	for pid in "${pids[@]}"; do
		while k8s_alive "$pid"; do
			if [ $SECONDS -ge $deadline ]; then
				kill -KILL "$pid" 2>/dev/null || true
				deadline=$((SECONDS + 5))
			fi
			sleep 0.1
		done
	done
	[ ${#pids[@]} = 0 ] || lab_log "k8s: stopped ${#pids[@]} control-plane process(es): ${pids[*]}"
	rm -rf "$K8S_DIR"
}

k8s_status() {
	local n pid
	for n in etcd kube-apiserver; do
		pid=$(cat "$K8S_DIR/$n.pid" 2>/dev/null || echo none)
		if kill -0 "$pid" 2>/dev/null; then echo "k8s: $n pid $pid running"; else echo "k8s: $n NOT running"; fi
	done
	if k8s_kubectl get --raw /readyz >/dev/null 2>&1; then echo "k8s: $(k8s_server) ready"; else echo "k8s: $(k8s_server) NOT ready"; fi
}
